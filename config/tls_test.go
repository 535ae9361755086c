package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/internal/tlstest"
)

// TestTLSKeys: tls and admin.tls load as written; keys that only make
// sense together are refused, naming the key.
func TestTLSKeys(t *testing.T) {
	noEnvToken(t)
	for _, tc := range []struct {
		name, yaml string
		want       func(*Config) bool
		wantErr    string
	}{
		{"absent is plain HTTP", "", func(c *Config) bool { return !c.TLS.Enabled() && !c.Admin.TLS.Enabled() }, ""},
		{"registry TLS", "tls: {cert_file: /c.pem, key_file: /k.pem}", func(c *Config) bool {
			return c.TLS == TLS{CertFile: "/c.pem", KeyFile: "/k.pem"} && !c.Admin.TLS.Enabled()
		}, ""},
		{"registry mTLS", "tls: {cert_file: /c.pem, key_file: /k.pem, client_ca_file: /ca.pem}", func(c *Config) bool {
			return c.TLS.ClientCAFile == "/ca.pem"
		}, ""},
		{"admin mTLS", "admin: {tls: {cert_file: /c.pem, key_file: /k.pem, client_ca_file: /ca.pem}}", func(c *Config) bool {
			return c.Admin.TLS == TLS{CertFile: "/c.pem", KeyFile: "/k.pem", ClientCAFile: "/ca.pem"} && !c.TLS.Enabled()
		}, ""},
		{"cert without key", "tls: {cert_file: /c.pem}", nil, "tls.key_file: required with tls.cert_file"},
		{"key without cert", "admin: {tls: {key_file: /k.pem}}", nil, "admin.tls.cert_file: required with admin.tls.key_file"},
		{"client CA without cert", "tls: {client_ca_file: /ca.pem}", nil, "tls.client_ca_file: needs tls.cert_file and tls.key_file"},
		{"admin client CA without cert", "admin: {tls: {client_ca_file: /ca.pem}}", nil, "admin.tls.client_ca_file: needs admin.tls.cert_file"},
		{"unknown key", "tls: {certfile: /c.pem}", nil, "certfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := loadYAML(t, tc.yaml+"\n", tc.wantErr); c != nil && !tc.want(c) {
				t.Errorf("loaded tls %+v, admin.tls %+v", c.TLS, c.Admin.TLS)
			}
		})
	}
}

// TestCheckTLSFiles: the files are read at start as serving reads them,
// and what is wrong names the key.
func TestCheckTLSFiles(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server(t, "127.0.0.1")
	other := ca.Server(t, "127.0.0.1")
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "unreadable")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	good := TLS{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: ca.CertFile}
	for _, tc := range []struct {
		name     string
		reg, adm TLS
		wantErr  string
	}{
		{"none", TLS{}, TLS{}, ""},
		{"both listeners, mTLS", good, good, ""},
		{"missing certificate", TLS{CertFile: missing, KeyFile: pair.KeyFile}, TLS{}, "tls.cert_file: open " + missing},
		{"missing admin key", TLS{}, TLS{CertFile: pair.CertFile, KeyFile: missing}, "admin.tls.key_file: open " + missing},
		{"directory as key", TLS{CertFile: pair.CertFile, KeyFile: unreadable}, TLS{}, "tls.key_file: read " + unreadable},
		{"key of another certificate", TLS{CertFile: pair.CertFile, KeyFile: other.KeyFile}, TLS{}, "private key does not match public key"},
		{"not PEM", TLS{CertFile: garbage, KeyFile: pair.KeyFile}, TLS{}, "tls: cert_file " + garbage},
		{"missing client CA", TLS{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: missing}, TLS{}, "tls.client_ca_file: open " + missing},
		{"client CA without certificates", TLS{}, TLS{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: pair.KeyFile}, fmt.Sprintf("admin.tls.client_ca_file: %s: no PEM certificate", pair.KeyFile)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.TLS, c.Admin.TLS = tc.reg, tc.adm
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err := c.CheckTLSFiles()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckTLSFiles = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
