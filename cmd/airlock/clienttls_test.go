package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/tlstest"
	"github.com/airlockproxy/airlock/listener"
)

// TestAdminClientTLS: the admin commands reach an https:// admin API that
// requires client certificates (the listener serve opens for admin.tls),
// with the CA and the client pair from flags or the environment; without
// them, or with the TLS flags on a plain URL, they fail saying why.
func TestAdminClientTLS(t *testing.T) {
	s, _ := testAdmin(t, "boot")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ca, nodes, stranger := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "admins CA"), tlstest.NewCA(t, "another CA")
	pair := ca.Server(t, "127.0.0.1")
	ln, err := listener.Listen("127.0.0.1:0", listener.Options{
		TLS:   config.TLS{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: nodes.CertFile},
		Field: "admin.tls", HTTP2: true, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ErrorLog: slog.NewLogLogger(quiet.Handler(), slog.LevelError)}
	go srv.Serve(ln)
	defer srv.Close()
	url := "https://" + ln.Addr().String()
	me, other := nodes.Client(t, "alice"), stranger.Client(t, "mallory")

	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"flags", nil, []string{"--admin-url", url, "--cacert", ca.CertFile, "--cert", me.CertFile, "--key", me.KeyFile}, ""},
		{"environment", map[string]string{"AIRLOCK_ADMIN_URL": url, "AIRLOCK_CACERT": ca.CertFile, "AIRLOCK_CLIENT_CERT": me.CertFile, "AIRLOCK_CLIENT_KEY": me.KeyFile}, nil, ""},
		{"flags override the environment", map[string]string{"AIRLOCK_ADMIN_URL": url, "AIRLOCK_CACERT": ca.CertFile, "AIRLOCK_CLIENT_CERT": other.CertFile, "AIRLOCK_CLIENT_KEY": other.KeyFile},
			[]string{"--cert", me.CertFile, "--key", me.KeyFile}, ""},
		{"no CA: system roots", nil, []string{"--admin-url", url, "--cert", me.CertFile, "--key", me.KeyFile}, "certificate signed by unknown authority"},
		{"no client certificate", nil, []string{"--admin-url", url, "--cacert", ca.CertFile}, "remote error: tls: certificate required"},
		// Go's client does not send a certificate of a CA the server did
		// not list in its request: to the server, it sent none.
		{"certificate of another CA", nil, []string{"--admin-url", url, "--cacert", ca.CertFile, "--cert", other.CertFile, "--key", other.KeyFile}, "remote error: tls: certificate required"},
		{"cert without key", nil, []string{"--admin-url", url, "--cacert", ca.CertFile, "--cert", me.CertFile}, "--cert needs --key"},
		{"key without cert", nil, []string{"--admin-url", url, "--cacert", ca.CertFile, "--key", me.KeyFile}, "--key needs --cert"},
		{"key of another certificate", nil, []string{"--admin-url", url, "--cacert", ca.CertFile, "--cert", me.CertFile, "--key", other.KeyFile}, "private key does not match"},
		{"CA file without certificates", nil, []string{"--admin-url", url, "--cacert", me.KeyFile}, "--cacert " + me.KeyFile + ": no PEM certificate"},
		{"missing CA file", nil, []string{"--admin-url", url, "--cacert", "/nonexistent/ca.pem"}, "--cacert: open /nonexistent/ca.pem"},
		{"TLS flags with plain HTTP", map[string]string{"AIRLOCK_CACERT": ca.CertFile}, []string{"--admin-url", "http://" + ln.Addr().String()}, "need an https:// admin URL"},
		{"not a URL", nil, []string{"--admin-url", "ftp://" + ln.Addr().String()}, "is not an http:// or https:// URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"AIRLOCK_ADMIN_URL", "AIRLOCK_CACERT", "AIRLOCK_CLIENT_CERT", "AIRLOCK_CLIENT_KEY"} {
				t.Setenv(k, tc.env[k])
			}
			t.Setenv("AIRLOCK_ADMIN_TOKEN", "boot")
			err := run(append([]string{"jobs"}, tc.args...), io.Discard, io.Discard)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("airlock jobs = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
