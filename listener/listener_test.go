package listener

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/logtest"
	"github.com/airlockproxy/airlock/internal/tlstest"
)

// testInterval is the file check interval of the tests' listeners.
const testInterval = 20 * time.Millisecond

// server is a listener under test with an HTTP server on it.
type server struct {
	addr  string
	files config.TLS
	log   *logtest.Buffer
	hits  atomic.Int64 // requests the handler saw
}

// start copies pair (and clientCA, if set) into a temp dir, the files the
// listener reads, and serves HTTP on a listener made with o.
func start(t *testing.T, pair *tlstest.Pair, clientCA *tlstest.CA, o Options) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{log: &logtest.Buffer{}}
	s.files = config.TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	pair.WriteTo(t, s.files.CertFile, s.files.KeyFile)
	if clientCA != nil {
		s.files.ClientCAFile = filepath.Join(dir, "client-ca.crt")
		writeFile(t, s.files.ClientCAFile, clientCA.PEM)
	}
	o.TLS, o.CheckInterval = s.files, testInterval
	o.Logger = slog.New(slog.NewTextHandler(s.log, nil))
	ln, err := Listen("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.hits.Add(1)
			io.WriteString(w, r.Proto)
		}),
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientConfig trusts ca and presents pair, if set.
func clientConfig(ca *tlstest.CA, pair *tlstest.Pair) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	c := &tls.Config{RootCAs: pool}
	if pair != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
			return &cert, err
		}
	}
	return c
}

// get GETs / from s over HTTPS with c and returns the protocol the
// handler saw.
func (s *server) get(c *tls.Config) (string, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.Clone(), ForceAttemptHTTP2: true, DisableKeepAlives: true}}
	resp, err := hc.Get("https://" + s.addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// serial shakes hands with s and returns the serial of its certificate.
func (s *server) serial(t *testing.T, c *tls.Config) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", s.addr, c)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// alert shakes hands with s and reads: under TLS 1.3 the server's verdict
// on a client certificate arrives after the client's side of the
// handshake is done. Nothing is written, so that the server's close
// cannot turn into a reset that hides the alert.
func (s *server) alert(c *tls.Config) error {
	conn, err := tls.Dial("tcp", s.addr, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// waitSerial shakes hands until s shows want; the files are looked at
// once per interval, on a handshake.
func (s *server) waitSerial(t *testing.T, c *tls.Config, want *big.Int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := s.serial(t, c)
		if got.Cmp(want) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server still shows serial %s, want %s; log:\n%s", got, want, s.log.String())
		}
		time.Sleep(testInterval / 2)
	}
}

// TestHandshake: a client trusting the CA gets the certificate over TLS
// 1.2 or later; the registry listener speaks HTTP/1.1 only, the admin
// listener (HTTP2) also HTTP/2; plain HTTP on the port is not served.
func TestHandshake(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server(t, "127.0.0.1")
	for _, tc := range []struct {
		name  string
		http2 bool
		proto string
	}{
		{"registry", false, "HTTP/1.1"},
		{"admin", true, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, pair, nil, Options{HTTP2: tc.http2})
			proto, err := s.get(clientConfig(ca, nil))
			if err != nil {
				t.Fatal(err)
			}
			if proto != tc.proto {
				t.Errorf("request served over %s, want %s", proto, tc.proto)
			}
			conn, err := tls.Dial("tcp", s.addr, clientConfig(ca, nil))
			if err != nil {
				t.Fatal(err)
			}
			st := conn.ConnectionState()
			conn.Close()
			if st.Version < tls.VersionTLS12 || st.PeerCertificates[0].SerialNumber.Cmp(pair.Cert.SerialNumber) != 0 {
				t.Errorf("version %x, serial %s; want TLS 1.2+ and serial %s", st.Version, st.PeerCertificates[0].SerialNumber, pair.Cert.SerialNumber)
			}
			// Control: a client that does not trust the CA refuses it.
			if _, err := tls.Dial("tcp", s.addr, &tls.Config{}); err == nil || !strings.Contains(err.Error(), "unknown authority") {
				t.Errorf("handshake without the CA: %v, want unknown authority", err)
			}
			resp, err := http.Get("http://" + s.addr + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("plain HTTP answered %s, want 400", resp.Status)
				}
			}
			if n := s.hits.Load(); n != 1 {
				t.Errorf("handler saw %d requests, want only the HTTPS one", n)
			}
		})
	}
}

// TestOldVersionsRefused: TLS 1.0 and 1.1 clients are refused.
func TestOldVersionsRefused(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	s := start(t, ca.Server(t, "127.0.0.1"), nil, Options{})
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c := clientConfig(ca, nil)
		c.MinVersion, c.MaxVersion = v, v
		conn, err := tls.Dial("tcp", s.addr, c)
		if err == nil {
			conn.Close()
			t.Fatalf("%s handshake succeeded", tls.VersionName(v))
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("%s handshake: %v, want a protocol version alert", tls.VersionName(v), err)
		}
	}
	// Control: the same client allowed TLS 1.2 gets through.
	c := clientConfig(ca, nil)
	c.MaxVersion = tls.VersionTLS12
	if got := s.serial(t, c); got == nil {
		t.Fatal("no certificate over TLS 1.2")
	}
}

// TestReload: certificate files rewritten in place, and replaced by a
// rename, are served at a following handshake without a restart.
func TestReload(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	first := ca.Server(t, "127.0.0.1")
	s := start(t, first, nil, Options{})
	c := clientConfig(ca, nil)
	if got := s.serial(t, c); got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("serial %s, want %s", got, first.Cert.SerialNumber)
	}

	second := ca.Server(t, "127.0.0.1")
	second.WriteTo(t, s.files.CertFile, s.files.KeyFile)
	s.waitSerial(t, c, second.Cert.SerialNumber)

	// A rename over the files, as Kubernetes secret volumes and most
	// deployment tools do it.
	third := ca.Server(t, "127.0.0.1")
	dir := t.TempDir()
	third.WriteTo(t, filepath.Join(dir, "c"), filepath.Join(dir, "k"))
	if err := os.Rename(filepath.Join(dir, "k"), s.files.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "c"), s.files.CertFile); err != nil {
		t.Fatal(err)
	}
	s.waitSerial(t, c, third.Cert.SerialNumber)
	if n := strings.Count(s.log.String(), "TLS certificate reloaded"); n != 2 {
		t.Errorf("%d reloads logged, want 2:\n%s", n, s.log.String())
	}
}

// TestBrokenRewriteKeepsPair: files that do not load leave the previous
// pair serving, logged once; once they load, they serve.
func TestBrokenRewriteKeepsPair(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	good := ca.Server(t, "127.0.0.1")
	other := ca.Server(t, "127.0.0.1")
	for _, tc := range []struct {
		name   string
		mangle func(t *testing.T, f config.TLS)
		want   string
	}{
		{"half-written certificate", func(t *testing.T, f config.TLS) {
			writeFile(t, f.CertFile, other.CertPEM[:len(other.CertPEM)/2])
		}, "failed to find any PEM data in certificate input"},
		{"key of another certificate", func(t *testing.T, f config.TLS) {
			// The certificate is rewritten first; its key has not come yet.
			writeFile(t, f.CertFile, other.CertPEM)
		}, "private key does not match public key"},
		{"empty key", func(t *testing.T, f config.TLS) {
			writeFile(t, f.KeyFile, nil)
		}, "failed to find any PEM data in key input"},
		{"certificate removed", func(t *testing.T, f config.TLS) {
			if err := os.Remove(f.CertFile); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, good, nil, Options{})
			c := clientConfig(ca, nil)
			tc.mangle(t, s.files)
			// Enough handshakes to span several check intervals.
			for end := time.Now().Add(8 * testInterval); time.Now().Before(end); time.Sleep(testInterval / 4) {
				if got := s.serial(t, c); got.Cmp(good.Cert.SerialNumber) != 0 {
					t.Fatalf("serial %s after a broken rewrite, want the previous %s", got, good.Cert.SerialNumber)
				}
			}
			log := s.log.String()
			if n := strings.Count(log, "do not load"); n != 1 || !strings.Contains(log, tc.want) {
				t.Errorf("refused reload logged %d times, want once with %q:\n%s", n, tc.want, log)
			}
			// The rotation completes: the new pair serves.
			other.WriteTo(t, s.files.CertFile, s.files.KeyFile)
			s.waitSerial(t, c, other.Cert.SerialNumber)
		})
	}
}

// TestMutualTLS: with client_ca_file set, only clients with a certificate
// from that CA get an answer; the others are refused at the handshake.
func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	nodes := tlstest.NewCA(t, "nodes CA")
	stranger := tlstest.NewCA(t, "another CA")
	pair := ca.Server(t, "127.0.0.1")
	for _, http2 := range []bool{false, true} {
		s := start(t, pair, nodes, Options{HTTP2: http2})
		for _, tc := range []struct {
			name   string
			client *tlstest.Pair
			ok     bool
		}{
			{"no certificate", nil, false},
			{"certificate from another CA", stranger.Client(t, "node-x"), false},
			{"certificate from the server's own CA", ca.Client(t, "node-y"), false},
			{"certificate from the client CA", nodes.Client(t, "node-1"), true},
		} {
			c := clientConfig(ca, tc.client)
			_, err := s.get(c)
			switch {
			case tc.ok && err != nil:
				t.Errorf("http2=%v %s: %v", http2, tc.name, err)
			case !tc.ok && err == nil:
				t.Errorf("http2=%v %s: answered, want refused", http2, tc.name)
			case !tc.ok:
				// HTTP/2's client hides the alert: look at it on TLS.
				if err := s.alert(c); err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
					t.Errorf("http2=%v %s: %v, want a TLS alert from the server", http2, tc.name, err)
				}
			}
		}
		if n := s.hits.Load(); n != 1 {
			t.Errorf("http2=%v: handler saw %d requests, want only the one with a certificate", http2, n)
		}
		if !strings.Contains(s.log.String(), "client_certificates=required") {
			t.Errorf("the log does not say client certificates are required:\n%s", s.log.String())
		}
	}
}

// TestRefusalReachesClient: an HTTP/1.1 client without a certificate
// reads why it was refused (the server's alert), not a bare reset; the
// CLI and registry clients show that message to the operator.
func TestRefusalReachesClient(t *testing.T) {
	ca, nodes := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "nodes CA")
	s := start(t, ca.Server(t, "127.0.0.1"), nodes, Options{})
	tr := &http.Transport{TLSClientConfig: clientConfig(ca, nil), DisableKeepAlives: true}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	for i := 0; i < 20; i++ {
		resp, err := hc.Get("https://" + s.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			t.Fatal("answered without a client certificate")
		}
		if !strings.Contains(err.Error(), "remote error: tls: certificate required") {
			t.Fatalf("attempt %d: %v, want the server's alert", i, err)
		}
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("handler saw %d requests", n)
	}
}

// TestClientCAReload: a rewritten client CA file decides from then on.
func TestClientCAReload(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	oldNodes, newNodes := tlstest.NewCA(t, "old nodes"), tlstest.NewCA(t, "new nodes")
	s := start(t, ca.Server(t, "127.0.0.1"), oldNodes, Options{})
	oldClient, newClient := clientConfig(ca, oldNodes.Client(t, "n1")), clientConfig(ca, newNodes.Client(t, "n2"))
	if _, err := s.get(oldClient); err != nil {
		t.Fatalf("client of the configured CA: %v", err)
	}
	writeFile(t, s.files.ClientCAFile, newNodes.PEM)
	waitFor(t, "the new client CA to be accepted", func() bool { _, err := s.get(newClient); return err == nil })
	if _, err := s.get(oldClient); err == nil {
		t.Error("a client of the replaced CA is still accepted")
	}
	// A CA file with no certificate is refused; the new CA stays.
	writeFile(t, s.files.ClientCAFile, []byte("not a certificate\n"))
	time.Sleep(3 * testInterval)
	for i := 0; i < 3; i++ {
		if _, err := s.get(newClient); err != nil {
			t.Fatalf("after a broken CA file: %v", err)
		}
		time.Sleep(testInterval)
	}
	if !strings.Contains(s.log.String(), "no PEM certificate") {
		t.Errorf("the broken CA file was not logged:\n%s", s.log.String())
	}
}

// TestListenErrors: bad files fail at start, naming the config key, and
// the port is not held.
func TestListenErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server(t, "127.0.0.1")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		tls  config.TLS
		want string
	}{
		{"missing certificate", config.TLS{CertFile: missing, KeyFile: pair.KeyFile}, "admin.tls: stat " + missing},
		{"key of another pair", config.TLS{CertFile: pair.CertFile, KeyFile: ca.Server(t, "x").KeyFile}, "private key does not match"},
		{"CA file without certificates", config.TLS{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: pair.KeyFile}, "admin.tls.client_ca_file: " + pair.KeyFile + ": no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := Listen("127.0.0.1:0", Options{TLS: tc.tls, Field: "admin.tls", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				ln.Close()
				t.Fatal("listened")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestConnectionLimit: max_connections counts TLS connections from
// accept, handshake included: a client that connects and says nothing
// holds its slot until it goes.
func TestConnectionLimit(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	s := start(t, ca.Server(t, "127.0.0.1"), nil, Options{MaxConnections: 1})
	idle, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := clientConfig(ca, nil)
	// The dialer's timeout bounds the handshake too, and closes the
	// connection when it expires (an http.Transport would keep dialing).
	if conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 300 * time.Millisecond}, "tcp", s.addr, c); err == nil {
		conn.Close()
		t.Fatal("a second connection was served while the first held the only slot")
	}
	idle.Close()
	waitFor(t, "the slot to be free", func() bool { _, err := s.get(c); return err == nil })
}

// TestConcurrentHandshakesDuringRotation is for the race detector:
// handshakes from many goroutines while the files are rewritten.
func TestConcurrentHandshakesDuringRotation(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pairs := []*tlstest.Pair{ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")}
	s := start(t, pairs[0], nil, Options{})
	c := clientConfig(ca, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				conn, err := tls.Dial("tcp", s.addr, c)
				if err != nil {
					t.Errorf("handshake during rotation: %v", err)
					return
				}
				conn.Close()
			}
		}()
	}
	for i := 0; i < 10; i++ {
		// Rename, so that a handshake never reads a half-written file.
		p := pairs[i%2]
		dir := t.TempDir()
		p.WriteTo(t, filepath.Join(dir, "c"), filepath.Join(dir, "k"))
		os.Rename(filepath.Join(dir, "k"), s.files.KeyFile)
		os.Rename(filepath.Join(dir, "c"), s.files.CertFile)
		time.Sleep(testInterval)
	}
	close(stop)
	wg.Wait()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(testInterval / 2)
	}
}
