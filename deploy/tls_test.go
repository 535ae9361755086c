package deploy_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"

	"github.com/airlockproxy/airlock/internal/tlstest"
	"github.com/airlockproxy/airlock/listener"
)

// readmeBlock returns the ```lang block of deploy/README.md whose first
// line is "# <title>".
func readmeBlock(t *testing.T, lang, title string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if strings.HasPrefix(m[1], "# "+title+"\n") {
			return m[1]
		}
	}
	t.Fatalf("README.md has no ```%s block starting with \"# %s\"", lang, title)
	return ""
}

// TestReadmeTLS: the README's airlock.yaml with TLS loads and, with the
// certificate files in place, passes serve's checks; containerd, with the
// README's hosts.toml over TLS and its own parser, pulls through a real
// mTLS listener of that config (the CA it trusts and the client
// certificate it presents are the ones the file names), and a client
// without the node certificate is refused at the handshake.
func TestReadmeTLS(t *testing.T) {
	etc, certs := t.TempDir(), t.TempDir()
	y := strings.ReplaceAll(readmeBlock(t, "yaml", "/etc/airlock/airlock.yaml, with TLS"), "/etc/airlock", etc)
	serverCA, nodesCA := tlstest.NewCA(t, "airlock CA"), tlstest.NewCA(t, "nodes CA")
	if err := os.MkdirAll(filepath.Join(etc, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	serverCA.Server(t, "airlock.internal").WriteTo(t, filepath.Join(etc, "tls/registry.crt"), filepath.Join(etc, "tls/registry.key"))
	serverCA.Server(t, "localhost").WriteTo(t, filepath.Join(etc, "tls/admin.crt"), filepath.Join(etc, "tls/admin.key"))
	copyFile(t, nodesCA.CertFile, filepath.Join(etc, "tls/nodes-ca.crt"))
	cfg, err := loadYAML(t, y)
	if err != nil {
		t.Fatalf("the README's airlock.yaml with TLS does not load: %v", err)
	}
	if err := cfg.CheckTLSFiles(); err != nil {
		t.Fatalf("serve would refuse it: %v", err)
	}
	if cfg.TLS.ClientCAFile == "" || !cfg.Admin.TLS.Enabled() {
		t.Fatalf("the README's config has no mTLS on the registry or no TLS on the admin API: %+v %+v", cfg.TLS, cfg.Admin.TLS)
	}

	ln, err := listener.Listen("127.0.0.1:0", listener.Options{TLS: cfg.TLS})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		_, _ = w.Write([]byte("{}"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	// The node's files, where the README's hosts.toml names them.
	hostsTOML := readmeBlock(t, "toml", "/etc/containerd/certs.d/docker.io/hosts.toml, over TLS")
	hostsTOML = strings.ReplaceAll(hostsTOML, "/etc/containerd/certs.d", certs)
	copyFile(t, serverCA.CertFile, filepath.Join(certs, "airlock-ca.crt"))
	nodesCA.Client(t, "node-1").WriteTo(t, filepath.Join(certs, "node.crt"), filepath.Join(certs, "node.key"))
	if err := os.MkdirAll(filepath.Join(certs, "docker.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "docker.io", "hosts.toml"), []byte(hostsTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts, err := dockerconfig.ConfigureHosts(context.Background(), dockerconfig.HostOptions{HostDir: dockerconfig.HostDirFromRoot(certs)})("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 {
		t.Fatalf("containerd reads %d endpoints, want 2 (mirror, server)", len(hosts))
	}
	// airlock.internal is the test's listener.
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
	}
	for _, h := range hosts {
		if h.Scheme != "https" || h.Host != "airlock.internal:5000" {
			t.Errorf("endpoint %s://%s, want https://airlock.internal:5000", h.Scheme, h.Host)
			continue
		}
		tr, ok := h.Client.Transport.(*http.Transport)
		if !ok {
			t.Fatalf("containerd's transport is %T", h.Client.Transport)
		}
		tr = tr.Clone()
		tr.DialContext = dial
		resp, err := (&http.Client{Transport: tr}).Get("https://airlock.internal:5000/v2/")
		if err != nil {
			t.Errorf("containerd's client (%s) through the mTLS listener: %v", h.Host, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("containerd's client: %d", resp.StatusCode)
		}
		// The same trust without the node's certificate is refused.
		bare := tr.Clone()
		bare.TLSClientConfig.Certificates = nil
		bare.TLSClientConfig.GetClientCertificate = nil
		if resp, err := (&http.Client{Transport: bare}).Get("https://airlock.internal:5000/v2/"); err == nil {
			resp.Body.Close()
			t.Errorf("a client without the node certificate got %d, want a refused handshake", resp.StatusCode)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
