// Package tlstest makes TLS test material at run time: a certificate
// authority, and server and client certificates it issues, written as PEM
// files the way Airlock's tls: sections and real clients (containerd's
// hosts.toml, dockerd's certs.d, podman's --cert-dir) read them. Keys are
// ECDSA P-256, made per test; nothing is checked in.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority whose certificate is in CertFile.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// CertFile holds Cert as PEM.
	CertFile string
	// PEM is Cert as PEM.
	PEM []byte
	key *ecdsa.PrivateKey
}

// Pair is an issued certificate and its key, as PEM and as files.
type Pair struct {
	// Cert is the issued certificate.
	Cert *x509.Certificate
	// CertPEM and KeyPEM are the certificate and its PKCS#8 key as PEM.
	CertPEM, KeyPEM []byte
	// CertFile and KeyFile hold CertPEM and KeyPEM.
	CertFile, KeyFile string
}

// NewCA makes a self-signed root CA named cn and writes its certificate
// to ca.crt in a new temp dir.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          Serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Airlock tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.CertFile = filepath.Join(t.TempDir(), "ca.crt")
	write(t, ca.CertFile, ca.PEM)
	return ca
}

// Server issues a server certificate for hosts (DNS names or IP
// addresses) and writes it to server.crt and server.key in a new temp dir.
func (ca *CA) Server(t testing.TB, hosts ...string) *Pair {
	t.Helper()
	tmpl := leaf(t, "airlock test server")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(t, tmpl, "server")
}

// Client issues a client certificate named cn and writes it to
// client.cert and client.key in a new temp dir (the names dockerd's
// certs.d and podman's --cert-dir look for).
func (ca *CA) Client(t testing.TB, cn string) *Pair {
	t.Helper()
	tmpl := leaf(t, cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p := ca.issue(t, tmpl, "")
	dir := t.TempDir()
	p.CertFile, p.KeyFile = filepath.Join(dir, "client.cert"), filepath.Join(dir, "client.key")
	write(t, p.CertFile, p.CertPEM)
	write(t, p.KeyFile, p.KeyPEM)
	return p
}

// WriteTo writes the pair's certificate and key to certFile and keyFile
// (replacing them in place, as an operator rotating a certificate would).
func (p *Pair) WriteTo(t testing.TB, certFile, keyFile string) {
	t.Helper()
	write(t, certFile, p.CertPEM)
	write(t, keyFile, p.KeyPEM)
}

// Serial returns a random positive certificate serial number.
func Serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func leaf(t testing.TB, cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: Serial(t),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Airlock tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// issue signs tmpl with the CA; with name set it writes name.crt and
// name.key to a new temp dir.
func (ca *CA) issue(t testing.TB, tmpl *x509.Certificate, name string) *Pair {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pair{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}
	if name != "" {
		dir := t.TempDir()
		p.CertFile, p.KeyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		p.WriteTo(t, p.CertFile, p.KeyFile)
	}
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func write(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
