package sign

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// GenerateKeyPair creates a new ECDSA P-256 key pair in cosign's format: the
// private key is PKCS #8, encrypted with password (scrypt + secretbox, PEM type
// "ENCRYPTED SIGSTORE PRIVATE KEY"), exactly what `cosign generate-key-pair`
// writes to cosign.key; the public key is a PKIX PEM block as in cosign.pub.
// An empty password is allowed, as with COSIGN_PASSWORD="".
func GenerateKeyPair(password []byte) (privatePEM, publicPEM []byte, err error) {
	pw := append([]byte(nil), password...)
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return pw, nil })
	if err != nil {
		return nil, nil, fmt.Errorf("sign: generate key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// Signer signs image digests and attestations with one key. It is safe for
// concurrent use.
type Signer struct {
	sv          signature.SignerVerifier
	pub         crypto.PublicKey
	pubPEM      []byte
	fingerprint string
}

// LoadSigner decrypts a cosign private key (as written by GenerateKeyPair or
// `cosign generate-key-pair`) with password and returns a Signer for it.
func LoadSigner(privatePEM, password []byte) (*Signer, error) {
	sv, err := cosign.LoadPrivateKey(privatePEM, password, nil)
	if err != nil {
		return nil, fmt.Errorf("sign: load private key: %w", err)
	}
	return NewSigner(sv)
}

// NewSigner wraps any sigstore SignerVerifier, e.g. one obtained from a KMS
// URI with sigstore's kms.Get, as a Signer. Signatures must be verifiable with
// the SHA-256 based verifier cosign derives from the public key.
func NewSigner(sv signature.SignerVerifier) (*Signer, error) {
	if sv == nil {
		return nil, errors.New("sign: nil signer")
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("sign: signer public key: %w", err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("sign: marshal public key: %w", err)
	}
	fp, err := fingerprint(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{sv: sv, pub: pub, pubPEM: pemBytes, fingerprint: fp}, nil
}

// PublicKeyPEM returns the signer's public key as a PEM block, suitable for
// `cosign verify --key`.
func (s *Signer) PublicKeyPEM() []byte { return append([]byte(nil), s.pubPEM...) }

// Fingerprint returns "sha256:<hex>" of the DER-encoded public key, the same
// value Verify reports in Verification.Signer for this key.
func (s *Signer) Fingerprint() string { return s.fingerprint }

// KeyFingerprint returns "sha256:<hex>" of the DER (PKIX) encoding of the PEM
// public key publicPEM.
func KeyFingerprint(publicPEM []byte) (string, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(publicPEM)
	if err != nil {
		return "", fmt.Errorf("sign: parse public key: %w", err)
	}
	return fingerprint(pub)
}

func fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("sign: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// loadVerifier parses a PEM public key the way the cosign CLI does for
// `--key file.pub` (SHA-256 for RSA and ECDSA).
func loadVerifier(publicPEM []byte) (signature.Verifier, string, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(publicPEM)
	if err != nil {
		return nil, "", fmt.Errorf("sign: parse public key: %w", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, "", fmt.Errorf("sign: load public key: %w", err)
	}
	fp, err := fingerprint(pub)
	if err != nil {
		return nil, "", err
	}
	return v, fp, nil
}
