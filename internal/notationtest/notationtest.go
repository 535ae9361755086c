// Package notationtest makes Notary Project test material: a CA, signing
// certificates it issues (code-signing EKU, as notation requires), trust
// stores in notation's layout and trust policy documents. Keys are made at
// run time; nothing is checked in.
package notationtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed root CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	cert, key := issue(t, cn, 24*time.Hour, func(c *x509.Certificate) {
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
		c.BasicConstraintsValid, c.IsCA = true, true
	}, nil)
	return &CA{Cert: cert, key: key}
}

// issue makes a P-256 key and a certificate for cn valid for life, shaped
// by edit, signed by ca (self-signed when ca is nil).
func issue(t testing.TB, cn string, life time.Duration, edit func(*x509.Certificate), ca *CA) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		// notation requires C, ST and O in identities it pins.
		Subject:   pkix.Name{CommonName: cn, Organization: []string{"Airlock tests"}, Country: []string{"US"}, Province: []string{"WA"}},
		NotBefore: time.Now().Add(-time.Hour),
		NotAfter:  time.Now().Add(life),
	}
	edit(tmpl)
	parent, parentKey := tmpl, key
	if ca != nil {
		parent, parentKey = ca.Cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Signer is a signing key and its chain, written to files.
type Signer struct {
	// KeyFile is the PKCS#8 PEM private key; ChainFile the PEM chain, leaf
	// first then the CA.
	KeyFile, ChainFile string
	Cert               *x509.Certificate
}

// Issue makes a code-signing certificate for cn and writes key and chain
// under dir.
func (ca *CA) Issue(t testing.TB, dir, cn string) Signer {
	t.Helper()
	cert, key := issue(t, cn, 12*time.Hour, func(c *x509.Certificate) {
		c.KeyUsage = x509.KeyUsageDigitalSignature
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	}, ca)
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s := Signer{KeyFile: filepath.Join(dir, cn+".key"), ChainFile: filepath.Join(dir, cn+".crt"), Cert: cert}
	write(t, s.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}))
	write(t, s.ChainFile, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...))
	return s
}

// TrustStore writes the CA certificates into a notation trust store at
// dir (dir/x509/ca/<name>/), the layout of notation's truststore directory,
// and returns dir.
func TrustStore(t testing.TB, dir, name string, cas ...*CA) string {
	t.Helper()
	sub := filepath.Join(dir, "x509", "ca", name)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, ca := range cas {
		write(t, filepath.Join(sub, ca.Cert.Subject.CommonName+"-"+string(rune('a'+i))+".crt"),
			pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
	}
	return dir
}

// Statement is one trust policy statement.
type Statement struct {
	Name   string
	Scopes []string
	// Level is strict, permissive, audit or skip; Revocation overrides the
	// revocation check (tests have no OCSP or CRL server): "skip" if empty.
	Level, Revocation string
	// Store is the "ca:<name>" trust store the statement uses.
	Store string
	// Identities are trusted identities ("*" if empty).
	Identities []string
}

// TrustPolicy writes a trustpolicy.json (version 1.0) to file.
func TrustPolicy(t testing.TB, file string, sts ...Statement) string {
	t.Helper()
	type sv struct {
		Level    string            `json:"level"`
		Override map[string]string `json:"override,omitempty"`
	}
	type st struct {
		Name                  string   `json:"name"`
		RegistryScopes        []string `json:"registryScopes"`
		SignatureVerification sv       `json:"signatureVerification"`
		TrustStores           []string `json:"trustStores,omitempty"`
		TrustedIdentities     []string `json:"trustedIdentities,omitempty"`
	}
	doc := struct {
		Version       string `json:"version"`
		TrustPolicies []st   `json:"trustPolicies"`
	}{Version: "1.0"}
	for _, s := range sts {
		e := st{Name: s.Name, RegistryScopes: s.Scopes, SignatureVerification: sv{Level: s.Level}}
		if s.Level != "skip" {
			rev := s.Revocation
			if rev == "" {
				rev = "skip"
			}
			e.SignatureVerification.Override = map[string]string{"revocation": rev}
			e.TrustStores = []string{s.Store}
			e.TrustedIdentities = s.Identities
			if len(e.TrustedIdentities) == 0 {
				e.TrustedIdentities = []string{"*"}
			}
		}
		doc.TrustPolicies = append(doc.TrustPolicies, e)
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	write(t, file, raw)
	return file
}

func write(t testing.TB, file string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
