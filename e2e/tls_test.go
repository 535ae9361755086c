package e2e

// Native TLS on airlock's listeners (tls, admin.tls; package listener):
// real clients pulling over TLS with a test CA, the gate deciding as over
// plain HTTP, client certificates (mTLS) refusing clients without one,
// certificates rotated on disk and picked up without a restart, and the
// airlock CLI approving through an https, mTLS admin listener.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/tlstest"
)

// listenerTLS is the tls: section of one airlock listener and what the
// harness needs to call it: the CA that issued its certificate and, with
// a client CA, a client certificate of that CA.
type listenerTLS struct {
	// CertFile, KeyFile and ClientCAFile are the config keys.
	CertFile, KeyFile, ClientCAFile string
	// CA issued the server certificate; the harness trusts it.
	CA *tlstest.CA
	// Pair is the server certificate first written to CertFile.
	Pair *tlstest.Pair
	// Client is the harness's own client certificate (with ClientCAFile).
	Client *tlstest.Pair
}

// serverTLS issues a server certificate from ca for 127.0.0.1, localhost
// and hosts into files of its own (a test may rewrite them). With
// clientCA set, the listener requires client certificates from it.
func serverTLS(t testing.TB, ca, clientCA *tlstest.CA, hosts ...string) *listenerTLS {
	t.Helper()
	dir := t.TempDir()
	l := &listenerTLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CA: ca}
	l.Pair = ca.Server(t, append([]string{"127.0.0.1", "localhost"}, hosts...)...)
	l.Pair.WriteTo(t, l.CertFile, l.KeyFile)
	if clientCA != nil {
		l.ClientCAFile = clientCA.CertFile
		l.Client = clientCA.Client(t, "e2e-harness")
	}
	return l
}

// yaml is the tls: section, indented for its place in the config.
func (l *listenerTLS) yaml(indent string) string {
	if l == nil {
		return ""
	}
	s := fmt.Sprintf("%stls:\n%s  cert_file: %q\n%s  key_file: %q\n", indent, indent, l.CertFile, indent, l.KeyFile)
	if l.ClientCAFile != "" {
		s += fmt.Sprintf("%s  client_ca_file: %q\n", indent, l.ClientCAFile)
	}
	return s
}

func (l *listenerTLS) scheme() string {
	if l == nil {
		return "http"
	}
	return "https"
}

// tlsConfig trusts the CA and presents the harness's client certificate.
func (l *listenerTLS) tlsConfig(t testing.TB) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(l.CA.Cert)
	c := &tls.Config{RootCAs: pool}
	if l.Client != nil {
		pair, err := tls.X509KeyPair(l.Client.CertPEM, l.Client.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// httpClient is the harness's client for the listener.
func (l *listenerTLS) httpClient(t testing.TB) *http.Client {
	if l == nil {
		return httpClient
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = l.tlsConfig(t)
	return &http.Client{Timeout: httpClient.Timeout, Transport: tr}
}

// cliEnv is what the airlock CLI needs to reach an admin listener with l.
func (l *listenerTLS) cliEnv() []string {
	if l == nil {
		return nil
	}
	env := []string{"AIRLOCK_CACERT=" + l.CA.CertFile}
	if l.Client != nil {
		env = append(env, "AIRLOCK_CLIENT_CERT="+l.Client.CertFile, "AIRLOCK_CLIENT_KEY="+l.Client.KeyFile)
	}
	return env
}

// certDir writes a certs.d-style directory (dockerd, podman --cert-dir):
// ca.crt, and client.cert and client.key when client is set.
func certDir(t *testing.T, dir string, ca *tlstest.CA, client *tlstest.Pair) string {
	t.Helper()
	if ca != nil {
		writeFile(t, filepath.Join(dir, "ca.crt"), string(ca.PEM))
	}
	if client != nil {
		writeFile(t, filepath.Join(dir, "client.cert"), string(client.CertPEM))
		writeFile(t, filepath.Join(dir, "client.key"), string(client.KeyPEM))
	}
	return dir
}

// awaitApproval GETs repo:v1's manifest through al with the harness's
// client (a 403: the pull starts the pipeline) and waits until image
// awaits approval.
func awaitApproval(t *testing.T, al *Airlock, repo, image string) {
	t.Helper()
	if r := al.getManifest(t, repo, "v1"); r.Status != http.StatusForbidden {
		t.Fatalf("manifest in quarantine: %d %s", r.Status, r.Body)
	}
	al.waitState(t, image, stateTimeout, "awaiting-approval")
}

// tlsHosts is a hosts.toml for docker.io with airlock's https URL as the
// server (no fallback), its CA and, if set, a client certificate. ctr
// tries the [host] entry, then the server itself: both get them.
func tlsHosts(al *Airlock, caFile string, client *tlstest.Pair) string {
	var tlsKeys string
	if caFile != "" {
		tlsKeys += fmt.Sprintf("ca = %q\n", caFile)
	}
	if client != nil {
		tlsKeys += fmt.Sprintf("client = [[%q, %q]]\n", client.CertFile, client.KeyFile)
	}
	return fmt.Sprintf("server = %q\n%s\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  %s",
		al.URL, tlsKeys, al.URL, strings.ReplaceAll(tlsKeys, "\n", "\n  "))
}

// tlsUnknownCA is what a client shows when the server's certificate is
// not from a CA it trusts.
var tlsUnknownCA = []string{"x509", "unknown authority"}

// TestClientTLSContainerd: ctr pulls from an https airlock through a
// hosts.toml with `ca`: refused in quarantine and after revoke, pulled and
// unpacked when approved. Without `ca` it refuses airlock's certificate.
// With client_ca_file set, the hosts.toml `client` pair gets the image and
// a ctr without one is refused at the handshake.
func TestClientTLSContainerd(t *testing.T) {
	c := startContainerd(t)
	up := registrytest.NewUpstream(t)
	ca := tlstest.NewCA(t, "airlock e2e CA")
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true, TLS: serverTLS(t, ca, nil), AdminTLS: serverTLS(t, ca, nil)})
	if !strings.HasPrefix(al.URL, "https://") || !strings.HasPrefix(al.AdminURL, "https://") {
		t.Fatalf("airlock at %s and %s, want https", al.URL, al.AdminURL)
	}
	if !strings.Contains(al.Log(), `"scheme":"https"`) {
		t.Errorf("airlock does not log that it serves https:\n%s", al.logTail(20))
	}
	const ns = "airlock-e2e-tls"

	t.Run("ca", func(t *testing.T) {
		hosts := t.TempDir()
		writeHosts(t, hosts, "docker.io", tlsHosts(al, ca.CertFile, nil))
		d := up.PushImage(t, "library/ctr-tls:v1", registrytest.Image(t, 2, 4096, types.OCIManifestSchema1))
		ref := "docker.io/library/ctr-tls:v1"
		runGate(t, al, gateCase{
			image:       "docker.io/library/ctr-tls@" + d.String(),
			pull:        func(t *testing.T, step string) (string, error) { return c.pull(t, ns, hosts, ref) },
			quarantined: ctrQuarantined,
			revoked:     ctrRevoked,
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, al.Host+"/v2/library/ctr-tls/manifests/v1?ns=docker.io") || !strings.Contains(out, "unpacking linux/amd64 "+d.String()) {
					t.Errorf("ctr did not pull and unpack %s from %s:\n%s", d, al.URL, out)
				}
			},
		})
	})

	t.Run("no-ca", func(t *testing.T) {
		hosts := t.TempDir()
		writeHosts(t, hosts, "docker.io", tlsHosts(al, "", nil))
		up.PushImage(t, "library/ctr-tls-noca:v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
		out, err := c.pull(t, ns, hosts, "docker.io/library/ctr-tls-noca:v1")
		mustFail(t, "ctr pull without the CA", out, err, tlsUnknownCA...)
	})

	t.Run("mtls", func(t *testing.T) {
		nodes := tlstest.NewCA(t, "cluster nodes CA")
		mal := startAirlock(t, up, options{Policy: "manual", NoHold: true, TLS: serverTLS(t, ca, nodes)})
		d := up.PushImage(t, "library/ctr-mtls:v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
		image := "docker.io/library/ctr-mtls@" + d.String()
		ref := "docker.io/library/ctr-mtls:v1"
		// The harness (with its certificate) asks first: quarantine.
		awaitApproval(t, mal, "library/ctr-mtls", image)
		mal.action(t, "approve", image, "e2e: mtls")

		node := nodes.Client(t, "node-1")
		withCert, noCert, otherCert := t.TempDir(), t.TempDir(), t.TempDir()
		writeHosts(t, withCert, "docker.io", tlsHosts(mal, ca.CertFile, node))
		writeHosts(t, noCert, "docker.io", tlsHosts(mal, ca.CertFile, nil))
		writeHosts(t, otherCert, "docker.io", tlsHosts(mal, ca.CertFile, ca.Client(t, "not-a-node")))

		out, err := c.pull(t, ns+"-nocert", noCert, ref)
		mustFail(t, "ctr pull without a client certificate", out, err, "certificate required")
		out, err = c.pull(t, ns+"-othercert", otherCert, ref)
		mustFail(t, "ctr pull with a certificate of another CA", out, err, "tls:")
		out, err = c.pull(t, ns+"-node", withCert, ref)
		mustSucceed(t, "ctr pull with the node's certificate", out, err)
		if !strings.Contains(out, "unpacking linux/amd64 "+d.String()) {
			t.Errorf("ctr pull did not unpack %s:\n%s", d, out)
		}
	})
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 that tunnels only to
// the names in routes ("airlock.test:PORT" → "127.0.0.1:PORT") and refuses
// everything else. dockerd treats every registry on a loopback address as
// insecure (127.0.0.0/8 is always in its insecure-registries): it skips
// certificate verification and never reads certs.d for it. Reached as
// airlock.test through this proxy, airlock is a secure registry to dockerd,
// which then verifies the certificate with certs.d's ca.crt and presents
// client.cert, as it does for a real host.
type connectProxy struct {
	URL    string
	routes map[string]string

	mu      sync.Mutex
	conns   map[net.Conn]bool
	refused []string
}

func startConnectProxy(t *testing.T, routes map[string]string) *connectProxy {
	t.Helper()
	p := &connectProxy{routes: routes, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		// Hijacked tunnels are not the server's any more.
		p.mu.Lock()
		defer p.mu.Unlock()
		for c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target, ok := p.routes[r.Host]
	if r.Method != http.MethodConnect || !ok {
		p.mu.Lock()
		p.refused = append(p.refused, r.Method+" "+r.Host)
		p.mu.Unlock()
		http.Error(w, "e2e proxy: no route to "+r.Host, http.StatusForbidden)
		return
	}
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	down, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	p.mu.Lock()
	p.conns[up], p.conns[down] = true, true
	p.mu.Unlock()
	closeBoth := func() {
		up.Close()
		down.Close()
		p.mu.Lock()
		delete(p.conns, up)
		delete(p.conns, down)
		p.mu.Unlock()
	}
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		closeBoth()
		return
	}
	go func() { _, _ = io.Copy(up, buf); closeBoth() }()
	go func() { _, _ = io.Copy(down, bufio.NewReader(up)); closeBoth() }()
}

// Refused lists the requests the proxy turned away.
func (p *connectProxy) Refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

// dockerCertsD is where dockerd reads per-registry certificates; it has
// no flag for another directory outside rootless mode.
const dockerCertsD = "/etc/docker/certs.d"

// hostCertsD makes dockerCertsD/<host> for this test alone (host carries
// this airlock's port) and removes it, and the parents it created, at
// cleanup.
func hostCertsD(t *testing.T, host string) string {
	t.Helper()
	var created []string
	for _, d := range []string{filepath.Dir(dockerCertsD), dockerCertsD} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			created = append(created, d)
		}
	}
	dir := filepath.Join(dockerCertsD, host)
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s exists already; not overwriting another's certificates", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		if inCI() {
			t.Fatalf("dockerd's certs.d: %v", err)
		}
		t.Skipf("dockerd's certs.d: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		for i := len(created) - 1; i >= 0; i-- {
			_ = os.Remove(created[i]) // only if still empty
		}
	})
	return dir
}

// TestClientTLSDockerd: dockerd pulls from an airlock that requires client
// certificates, with ca.crt, client.cert and client.key in certs.d, both
// directly and as its Docker Hub mirror; the gate refuses the image in
// quarantine and after revoke as over plain HTTP. Without client.cert it
// is refused at the handshake, and with another CA's ca.crt it refuses
// airlock's certificate: both files are what made the pull work.
func TestClientTLSDockerd(t *testing.T) {
	c := startContainerd(t)
	up := registrytest.NewUpstream(t)
	ca, nodes := tlstest.NewCA(t, "airlock e2e CA"), tlstest.NewCA(t, "cluster nodes CA")
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true, TLS: serverTLS(t, ca, nodes, "airlock.test"), AdminTLS: serverTLS(t, ca, nil)})
	_, port, _ := net.SplitHostPort(al.Host)
	host := "airlock.test:" + port
	if ips, err := net.LookupIP("airlock.test"); err == nil {
		t.Fatalf("airlock.test resolves (%v): dockerd would not treat it as a remote registry", ips)
	}
	proxy := startConnectProxy(t, map[string]string{host: al.Host})
	certs := certDir(t, hostCertsD(t, host), ca, nodes.Client(t, "docker-node"))
	daemon, err := json.Marshal(map[string]any{"registry-mirrors": []string{"https://" + host}, "debug": true})
	if err != nil {
		t.Fatal(err)
	}
	d := startDockerd(t, c, string(daemon), "HTTPS_PROXY="+proxy.URL, "HTTP_PROXY="+proxy.URL, "NO_PROXY=")

	t.Run("direct", func(t *testing.T) {
		dg := up.PushImage(t, "team/docker-tls:v1", registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
		image := "ghcr.io/team/docker-tls@" + dg.String()
		ref := host + "/ghcr/team/docker-tls:v1"
		runGate(t, al, gateCase{
			image:       image,
			pull:        func(t *testing.T, step string) (string, error) { return d.run(t, "pull", ref) },
			quarantined: append([]string{image}, quarantineWords...),
			revoked:     append([]string{image}, revokedWords...),
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, dg.String()) {
					t.Errorf("docker pull does not report digest %s", dg)
				}
			},
		})
	})

	t.Run("mirror", func(t *testing.T) {
		dg := up.PushImage(t, "library/docker-tls-mirror:v1", busyboxImage(t, "hello over TLS"))
		image := "docker.io/library/docker-tls-mirror@" + dg.String()
		// The harness's pull (with its certificate) starts the pipeline.
		awaitApproval(t, al, "library/docker-tls-mirror", image)
		al.action(t, "approve", image, "e2e: tls mirror")
		out, err := d.run(t, "pull", "docker-tls-mirror:v1")
		mustSucceed(t, "docker pull through the TLS mirror", out, err)
		if !strings.Contains(out, dg.String()) {
			t.Errorf("docker pull does not report digest %s:\n%s", dg, out)
		}
		d.runHello(t, "docker-tls-mirror:v1", "hello over TLS")
	})

	t.Run("certs.d-controls", func(t *testing.T) {
		dg := up.PushImage(t, "team/docker-tls-ctl:v1", registrytest.Image(t, 1, 1024, types.DockerManifestSchema2))
		image := "ghcr.io/team/docker-tls-ctl@" + dg.String()
		awaitApproval(t, al, "ghcr/team/docker-tls-ctl", image)
		al.action(t, "approve", image, "e2e: tls controls")
		ref := host + "/ghcr/team/docker-tls-ctl:v1"

		// No client certificate: refused at the handshake.
		for _, f := range []string{"client.cert", "client.key"} {
			if err := os.Remove(filepath.Join(certs, f)); err != nil {
				t.Fatal(err)
			}
		}
		out, err := d.run(t, "pull", ref)
		mustFail(t, "docker pull without client.cert", out, err, "certificate required")

		// The node's certificate again, but another CA in ca.crt:
		// dockerd refuses airlock's certificate.
		certDir(t, certs, tlstest.NewCA(t, "some other CA"), nodes.Client(t, "docker-node"))
		out, err = d.run(t, "pull", ref)
		mustFail(t, "docker pull with another CA in ca.crt", out, err, tlsUnknownCA...)

		certDir(t, certs, ca, nil)
		out, err = d.run(t, "pull", ref)
		mustSucceed(t, "docker pull with certs.d restored", out, err)
	})
	// dockerd's fallback to Docker Hub (a refused mirror pull) reached
	// the proxy only; nothing else may have gone out.
	for _, r := range proxy.Refused() {
		if !strings.Contains(r, "docker.io") {
			t.Errorf("dockerd asked the proxy for %s", r)
		}
	}
}

// TestClientTLSPodman: podman pulls from an airlock that requires client
// certificates, with ca.crt, client.cert and client.key in --cert-dir;
// the gate refuses in quarantine and after revoke. With only ca.crt it is
// refused at the handshake; with no certificates it refuses airlock's.
func TestClientTLSPodman(t *testing.T) {
	requireTool(t, "/usr/bin/podman", "podman")
	up := registrytest.NewUpstream(t)
	ca, nodes := tlstest.NewCA(t, "airlock e2e CA"), tlstest.NewCA(t, "cluster nodes CA")
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true, TLS: serverTLS(t, ca, nodes)})
	// Not insecure: podman verifies airlock's certificate.
	p := newPodman(t, fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "%s"
`, al.Host))
	full := certDir(t, t.TempDir(), ca, nodes.Client(t, "podman-node"))
	caOnly := certDir(t, t.TempDir(), ca, nil)
	pull := func(t *testing.T, certs, ref string) (string, error) {
		t.Helper()
		args := []string{"pull", "--signature-policy", filepath.Join(p.dir, "policy.json")}
		if certs != "" {
			args = append(args, "--cert-dir", certs)
		}
		return p.run(t, append(args, ref)...)
	}

	d := up.PushImage(t, "library/podman-tls:v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
	image := "docker.io/library/podman-tls@" + d.String()
	ref := "docker.io/library/podman-tls:v1"
	runGate(t, al, gateCase{
		image:       image,
		pull:        func(t *testing.T, step string) (string, error) { return pull(t, full, ref) },
		quarantined: append([]string{image}, quarantineWords...),
		revoked:     append([]string{image}, revokedWords...),
		check: func(t *testing.T, _ string) {
			out, err := p.run(t, "image", "inspect", "--format", "{{.Digest}}", ref)
			mustSucceed(t, "podman image inspect", out, err)
			if strings.TrimSpace(out) != d.String() {
				t.Errorf("podman has %s at %q, want %s", ref, strings.TrimSpace(out), d)
			}
		},
	})

	d2 := up.PushImage(t, "library/podman-tls-ctl:v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	image2 := "docker.io/library/podman-tls-ctl@" + d2.String()
	ref2 := "docker.io/library/podman-tls-ctl:v1"
	awaitApproval(t, al, "library/podman-tls-ctl", image2)
	al.action(t, "approve", image2, "e2e: podman tls controls")
	out, err := pull(t, caOnly, ref2)
	mustFail(t, "podman pull without a client certificate", out, err, "certificate required")
	out, err = pull(t, "", ref2)
	mustFail(t, "podman pull without the CA", out, err, tlsUnknownCA...)
	out, err = pull(t, full, ref2)
	mustSucceed(t, "podman pull with the node's certificate", out, err)
}

// TestClientTLSMutualAndCLI: with client_ca_file on both listeners, a
// client without a certificate, or with one of another CA, is refused at
// the handshake (Go's client and curl); with the CA's it gets in. The
// airlock CLI approves through the https, mTLS admin listener with the CA
// and its certificate from the environment or from flags, and fails
// without its certificate.
func TestClientTLSMutualAndCLI(t *testing.T) {
	up := registrytest.NewUpstream(t)
	ca, nodes, admins := tlstest.NewCA(t, "airlock e2e CA"), tlstest.NewCA(t, "cluster nodes CA"), tlstest.NewCA(t, "admins CA")
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true, TLS: serverTLS(t, ca, nodes), AdminTLS: serverTLS(t, ca, admins)})
	stranger := tlstest.NewCA(t, "another CA").Client(t, "stranger")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	t.Run("handshake", func(t *testing.T) {
		get := func(u string, client *tlstest.Pair) (int, error) {
			c := &tls.Config{RootCAs: pool}
			if client != nil {
				pair, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM)
				if err != nil {
					t.Fatal(err)
				}
				// Sent whatever CAs the server names (c.Certificates
				// would be withheld when its CA is not among them).
				c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
			}
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
			resp, err := hc.Get(u)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		for _, tc := range []struct {
			name, url string
			client    *tlstest.Pair
			wantErr   string
		}{
			{"registry, no certificate", al.URL + "/v2/", nil, "certificate required"},
			{"registry, another CA", al.URL + "/v2/", stranger, "unknown certificate authority"},
			{"registry, an admin's certificate", al.URL + "/v2/", admins.Client(t, "alice"), "unknown certificate authority"},
			{"registry, a node", al.URL + "/v2/", nodes.Client(t, "node-1"), ""},
			{"admin, no certificate", al.AdminURL + "/readyz", nil, "certificate required"},
			{"admin, a node's certificate", al.AdminURL + "/readyz", nodes.Client(t, "node-1"), "unknown certificate authority"},
			{"admin, an admin", al.AdminURL + "/readyz", admins.Client(t, "alice"), ""},
		} {
			status, err := get(tc.url, tc.client)
			if tc.wantErr == "" {
				if err != nil || status != http.StatusOK {
					t.Errorf("%s: %d %v, want 200", tc.name, status, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %d %v, want refused at the handshake (%s)", tc.name, status, err, tc.wantErr)
			}
		}
	})

	t.Run("curl", func(t *testing.T) {
		curl := requireTool(t, "/usr/bin/curl", "curl")
		node := nodes.Client(t, "node-2")
		out, err := runTool(t, nil, curl, "-sS", "--cacert", ca.CertFile, al.URL+"/v2/")
		mustFail(t, "curl without a client certificate", out, err, "alert")
		out, err = runTool(t, nil, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{scheme}", "--cacert", ca.CertFile,
			"--cert", node.CertFile, "--key", node.KeyFile, al.URL+"/v2/")
		mustSucceed(t, "curl with a node's certificate", out, err)
		if !strings.EqualFold(strings.TrimSpace(out), "200 https") {
			t.Errorf("curl with a node's certificate: %q, want 200 over https", out)
		}
		// Control: the port speaks TLS only.
		out, err = runTool(t, nil, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://"+al.Host+"/v2/")
		if err == nil && strings.TrimSpace(out) != "400" {
			t.Errorf("plain HTTP to the TLS port: %q, want refused", out)
		}
	})

	t.Run("cli", func(t *testing.T) {
		d := up.PushImage(t, "library/cli-tls:v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
		image := "docker.io/library/cli-tls@" + d.String()
		awaitApproval(t, al, "library/cli-tls", image)

		// Without the client certificate: refused, nothing approved.
		cli := func(env []string, args ...string) (string, error) {
			cmd := exec.Command(airlockBin, args...)
			cmd.Env = childEnv(append(env, "AIRLOCK_ADMIN_URL="+al.AdminURL, "AIRLOCK_ADMIN_TOKEN="+adminToken)...)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		out, err := cli([]string{"AIRLOCK_CACERT=" + ca.CertFile}, "approve", image, "--reason", "e2e: no cert")
		mustFail(t, "airlock approve without a client certificate", out, err, "certificate required")
		out, err = cli(nil, "approve", image, "--reason", "e2e: no CA", "--cert", al.adminTLS.Client.CertFile, "--key", al.adminTLS.Client.KeyFile)
		mustFail(t, "airlock approve without the CA", out, err, "unknown authority")
		if rec, _ := al.image(t, image); rec.Image.State != "awaiting-approval" {
			t.Fatalf("after refused CLI calls the image is %q", rec.Image.State)
		}

		// The harness's environment: AIRLOCK_CACERT, AIRLOCK_CLIENT_CERT/KEY.
		out, err = al.cli(t, "approve", image, "--reason", "e2e: approved over mTLS")
		mustSucceed(t, "airlock approve over https and mTLS", out, err)
		if rec, _ := al.image(t, image); rec.Image.State != "approved" {
			t.Fatalf("after airlock approve the image is %q:\n%s", rec.Image.State, out)
		}
		if r := al.getManifest(t, "library/cli-tls", "v1"); r.Status != http.StatusOK {
			t.Errorf("approved manifest over mTLS: %d %s", r.Status, r.Body)
		}
		// Flags instead of the environment.
		out, err = cli(nil, "images", "list", "--state", "approved", "--cacert", ca.CertFile,
			"--cert", al.adminTLS.Client.CertFile, "--key", al.adminTLS.Client.KeyFile)
		mustSucceed(t, "airlock images list with --cacert, --cert, --key", out, err)
		if !strings.Contains(out, "docker.io/library/cli-tls@"+d.String()) {
			t.Errorf("airlock images list does not show %s:\n%s", image, out)
		}
	})
}

// TestClientTLSReload: certificate files replaced on disk while airlock
// runs are served at a following handshake, on both listeners, with no
// restart; a half-written certificate meanwhile leaves the previous one
// serving (and is logged), never an outage.
func TestClientTLSReload(t *testing.T) {
	up := registrytest.NewUpstream(t)
	ca := tlstest.NewCA(t, "airlock e2e CA")
	reg, adm := serverTLS(t, ca, nil), serverTLS(t, ca, nil)
	al := startAirlock(t, up, options{Policy: "auto", NoHold: true, TLS: reg, AdminTLS: adm})
	pid := al.cmd.Process.Pid
	serial := func(l *listenerTLS, addr string) *big.Int {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, l.tlsConfig(t))
		if err != nil {
			t.Fatalf("handshake with %s: %v", addr, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	adminAddr := strings.TrimPrefix(al.AdminURL, "https://")
	if s := serial(reg, al.Host); s.Cmp(reg.Pair.Cert.SerialNumber) != 0 {
		t.Fatalf("registry serial %s, want %s", s, reg.Pair.Cert.SerialNumber)
	}
	d := up.PushImage(t, "library/reload:v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	al.getManifest(t, "library/reload", "v1")
	al.waitState(t, "docker.io/library/reload@"+d.String(), stateTimeout, "approved")

	// A certificate half-written (a slow copy): the old one keeps
	// serving through several checks, and pulls go on.
	next := ca.Server(t, "127.0.0.1", "localhost")
	writeFile(t, reg.CertFile, string(next.CertPEM[:len(next.CertPEM)/2]))
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if s := serial(reg, al.Host); s.Cmp(reg.Pair.Cert.SerialNumber) != 0 {
			t.Fatalf("registry serial %s while its certificate file is half-written, want the previous %s", s, reg.Pair.Cert.SerialNumber)
		}
	}
	if r := al.getManifest(t, "library/reload", "v1"); r.Status != http.StatusOK {
		t.Fatalf("pull while the certificate file is half-written: %d %s", r.Status, r.Body)
	}
	waitFor(t, 5*time.Second, "the refused reload in the log", func() bool {
		return strings.Contains(al.Log(), "do not load; still serving the previous certificate")
	})

	// The copy completes; the admin certificate is rotated too.
	next.WriteTo(t, reg.CertFile, reg.KeyFile)
	nextAdmin := ca.Server(t, "127.0.0.1", "localhost")
	nextAdmin.WriteTo(t, adm.CertFile, adm.KeyFile)
	waitFor(t, 10*time.Second, "the new registry certificate", func() bool { return serial(reg, al.Host).Cmp(next.Cert.SerialNumber) == 0 })
	waitFor(t, 10*time.Second, "the new admin certificate", func() bool { return serial(adm, adminAddr).Cmp(nextAdmin.Cert.SerialNumber) == 0 })
	if r := al.getManifest(t, "library/reload", "v1"); r.Status != http.StatusOK {
		t.Errorf("pull after the rotation: %d %s", r.Status, r.Body)
	}
	if al.exited() || al.cmd.Process.Pid != pid || strings.Count(al.Log(), "airlock started") != 1 {
		t.Errorf("airlock restarted (exited %v, started %d times)", al.exited(), strings.Count(al.Log(), "airlock started"))
	}
	if n := strings.Count(al.Log(), "TLS certificate reloaded"); n != 2 {
		t.Errorf("%d reloads logged, want 2 (registry, admin)", n)
	}
}
