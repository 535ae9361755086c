package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
)

// transport is the admin API client's HTTP transport: the default one,
// with --cacert as the only roots and --cert/--key presented when the
// admin API asks for a client certificate (admin.tls.client_ca_file).
// The TLS flags with a plain http:// URL are refused: whoever set them
// expects TLS, and the token would cross the network in clear text.
func (f adminFlags) transport() (*http.Transport, error) {
	u, err := url.Parse(*f.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin-url %q is not an http:// or https:// URL", *f.url)
	}
	caFile, certFile, keyFile := *f.caCert, *f.cert, *f.certKey
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u.Scheme == "http" {
		if caFile != "" || certFile != "" || keyFile != "" {
			return nil, fmt.Errorf("--cacert, --cert and --key ($AIRLOCK_CACERT, $AIRLOCK_CLIENT_CERT, $AIRLOCK_CLIENT_KEY) need an https:// admin URL; %s is plain HTTP", *f.url)
		}
		return tr, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", caFile)
		}
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert %s with --key %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{pair}
	case certFile != "":
		return nil, errors.New("--cert needs --key (or $AIRLOCK_CLIENT_KEY)")
	case keyFile != "":
		return nil, errors.New("--key needs --cert (or $AIRLOCK_CLIENT_CERT)")
	}
	tr.TLSClientConfig = c
	// HTTP/1.1: Go's HTTP/2 client reports a refused handshake as "client
	// conn could not be established", without the alert that says why
	// ("certificate required"); the CLI gains nothing from HTTP/2.
	tr.ForceAttemptHTTP2 = false
	return tr, nil
}
