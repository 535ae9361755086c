package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is the tls: section of a listener: the registry API's (top-level
// tls) or the admin API's (admin.tls). Empty serves plain HTTP. The
// listener package serves it: TLS 1.2 at least, the files re-read when
// they change (no restart), and with ClientCAFile set every client must
// present a certificate that chains to that bundle (mutual TLS).
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of the leaf certificate.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of CA certificates. Set, a client
	// without a certificate issued by one of them is refused at the
	// handshake: on the registry listener, only cluster nodes pull.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// validate checks that the keys come together; field is "tls" or
// "admin.tls".
func (t TLS) validate(field string) error {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return fmt.Errorf("%s.key_file: required with %s.cert_file", field, field)
	case t.CertFile == "" && t.KeyFile != "":
		return fmt.Errorf("%s.cert_file: required with %s.key_file", field, field)
	case t.ClientCAFile != "" && t.CertFile == "":
		// Client certificates are a TLS feature: without a server
		// certificate the listener would silently take anyone.
		return fmt.Errorf("%s.client_ca_file: needs %s.cert_file and %s.key_file (client certificates are checked only over TLS)", field, field, field)
	}
	return nil
}

// validateTLS checks both listeners' tls: sections.
func (c *Config) validateTLS() error {
	if err := c.TLS.validate("tls"); err != nil {
		return err
	}
	return c.Admin.TLS.validate("admin.tls")
}

// CheckTLSFiles loads the listeners' certificate files the way serving
// will: each certificate with its key (they must match), each client CA
// bundle with at least one certificate. Errors name the key. `airlock
// serve` calls it at start, with CheckFiles, so a wrong path stops the
// start at once instead of when the listener opens.
func (c *Config) CheckTLSFiles() error {
	for _, l := range []struct {
		field string
		tls   TLS
	}{{"tls", c.TLS}, {"admin.tls", c.Admin.TLS}} {
		if err := l.tls.checkFiles(l.field); err != nil {
			return err
		}
	}
	return nil
}

func (t TLS) checkFiles(field string) error {
	if !t.Enabled() {
		return nil
	}
	for _, f := range []struct{ key, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"client_ca_file", t.ClientCAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return fmt.Errorf("%s.%s: %w", field, f.key, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		return fmt.Errorf("%s: cert_file %s with key_file %s: %w", field, t.CertFile, t.KeyFile, err)
	}
	if t.ClientCAFile != "" {
		if _, err := ClientCAPool(t.ClientCAFile); err != nil {
			return fmt.Errorf("%s.client_ca_file: %w", field, err)
		}
	}
	return nil
}

// ClientCAPool reads a PEM bundle of CA certificates into a pool. A file
// with no certificate in it is an error: an empty pool would refuse every
// client, and that is never what the file was written for.
func ClientCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(path + ": no PEM certificate in it")
	}
	return pool, nil
}
