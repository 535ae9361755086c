package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// signStatement is the in-toto statement cosign v3 (and v2 with
// --new-bundle-format) signs for an image: subject = the image digest,
// predicate type cosign's sign/v1.
func signStatement(t *testing.T, d digest.Digest, predicateType string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{"sha256": d.Encoded()}}},
		"predicateType": predicateType,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushBundle signs stmt with sv and pushes it as a Sigstore bundle referrer
// of img, with cosign's own bundle builder and referrer writer: the layout
// `cosign sign --new-bundle-format` produces. signerPEM is the public key
// or the certificate.
func pushBundle(t *testing.T, img testImage, sv signature.SignerVerifier, signerPEM, stmt []byte, predicateType string) {
	t.Helper()
	env, err := dsse.WrapSigner(sv, InTotoPayloadType).SignMessage(bytes.NewReader(stmt))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := cbundle.MakeNewBundle(pub, nil, stmt, env, signerPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = ociremote.WriteAttestationNewBundleFormat(img.repo.Digest(img.digest.String()), b, predicateType,
		ociremote.WithRemoteOptions(remote.WithContext(t.Context())))
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyBundleReferrer(t *testing.T) {
	u := registrytest.NewUpstream(t)
	signer, pub := testKey(t, 0)
	_, otherPub := testKey(t, 1)

	t.Run("signature bundle", func(t *testing.T) {
		img := pushTestImage(t, u, "v3/signed", "1")
		pushBundle(t, img, signer.sv, signer.PublicKeyPEM(), signStatement(t, img.digest, CosignSignPredicateType), CosignSignPredicateType)

		verifiesOnlyWith(t, img, pub, otherPub, Verification{Signatures: 1, Verified: true, Signer: "key " + signer.Fingerprint(), Layout: LayoutReferrers})
		// Without a Rekor entry, a policy that wants the tlog rejects it.
		_, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}})
		wantErr(t, err, ErrBadSignature)
	})
	t.Run("fallback index from an older client", func(t *testing.T) {
		// go-containerregistry before v0.21 (as built into the cosign v2.6
		// CLI) records config.mediaType, the empty type, as the artifact
		// type in the referrers tag fallback. Verify must look closer.
		img := pushTestImage(t, u, "v3/oldclient", "1")
		pushBundle(t, img, signer.sv, signer.PublicKeyPEM(), signStatement(t, img.digest, CosignSignPredicateType), CosignSignPredicateType)
		fallback := img.repo.Tag(strings.Replace(img.digest.String(), ":", "-", 1))
		desc, err := remote.Get(fallback, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(desc.Manifest, &idx); err != nil {
			t.Fatal(err)
		}
		for i := range idx.Manifests {
			idx.Manifests[i].ArtifactType = emptyConfigMediaType
			idx.Manifests[i].Annotations = nil
		}
		raw, err := json.Marshal(idx)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(fallback, rawManifest{raw, string(types.OCIImageIndex)}, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		if err != nil || !v.Verified || v.Layout != LayoutReferrers {
			t.Fatalf("Verify = %+v, %v", v, err)
		}
	})
	t.Run("bundle for another digest", func(t *testing.T) {
		img := pushTestImage(t, u, "v3/wrong", "1")
		pushBundle(t, img, signer.sv, signer.PublicKeyPEM(), signStatement(t, digest.FromString("other"), CosignSignPredicateType), CosignSignPredicateType)
		_, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		wantErr(t, err, ErrBadSignature)
	})
	t.Run("attestation bundle is not a signature", func(t *testing.T) {
		img := pushTestImage(t, u, "v3/attested", "1")
		pushBundle(t, img, signer.sv, signer.PublicKeyPEM(), signStatement(t, img.digest, PredicateSPDX), PredicateSPDX)
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		wantErr(t, err, ErrNoSignature)
		if v.Signatures != 0 {
			t.Errorf("Verify = %+v", v)
		}
	})
	t.Run("both layouts", func(t *testing.T) {
		img := pushTestImage(t, u, "v3/both", "1")
		pushBundle(t, img, signer.sv, signer.PublicKeyPEM(), signStatement(t, img.digest, CosignSignPredicateType), CosignSignPredicateType)
		sig, _, err := signer.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, nil)
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, img.repo, sig, mustTag(t, SignatureTag, img.digest))
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		if err != nil || v.Signatures != 2 || v.Layout != LayoutSigTag {
			t.Errorf("Verify = %+v, %v", v, err)
		}
	})
}

// testCA is a private Fulcio-like CA and the trusted root naming it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"sigstore.dev"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	cert, p := issue(t, tmpl, tmpl, key.Public(), key)
	return &testCA{cert: cert, key: key, pem: p}
}

// issue signs tmpl for pub with the parent certificate's key and returns
// the certificate and its PEM.
func issue(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, []byte) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cryptoutils.MarshalCertificateToPEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	return cert, p
}

// trustedRoot returns a trusted_root.json holding only this CA.
func (ca *testCA) trustedRoot(t *testing.T) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{
			Root:                ca.cert,
			ValidityPeriodStart: ca.cert.NotBefore,
			URI:                 "https://fulcio.airlock.test",
		}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issue returns a short-lived code-signing certificate for subject (a URI
// SAN) and OIDC issuer, as Fulcio issues them, and a signer for its key.
func (ca *testCA) issue(t *testing.T, subject, issuer string) (signature.SignerVerifier, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	san, err := url.Parse(subject)
	if err != nil {
		t.Fatal(err)
	}
	issuerV2, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:         []*url.URL{san},
		ExtraExtensions: []pkix.Extension{
			// Fulcio's OIDC issuer, legacy (raw) and v2 (DER UTF8String).
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(issuer)},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: issuerV2},
		},
	}
	_, p := issue(t, tmpl, ca.cert, key.Public(), ca.key)
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sv, p
}

// keylessSignature is a classic .sig manifest with one keyless signature:
// the certificate and chain ride in the layer annotations, as `cosign sign`
// writes them.
func keylessSignature(t *testing.T, img testImage, ca *testCA, sv signature.SignerVerifier, certPEM []byte) Artifact {
	t.Helper()
	ref := img.repo.Digest(img.digest.String())
	body, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sv.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	imgSig, err := classicImage([]layer{{
		data:      body,
		mediaType: SimpleSigningMediaType,
		annotations: map[string]string{
			SignatureAnnotation:               base64.StdEncoding.EncodeToString(raw),
			"dev.sigstore.cosign/certificate": string(certPEM),
			"dev.sigstore.cosign/chain":       string(ca.pem),
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := imageArtifact(imgSig)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestVerifyKeyless(t *testing.T) {
	const (
		subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
		issuer  = "https://token.actions.githubusercontent.com"
	)
	u := registrytest.NewUpstream(t)
	ca := newTestCA(t, "airlock-test-fulcio")
	rogue := newTestCA(t, "rogue")
	trusted := ca.trustedRoot(t)
	_, pub := testKey(t, 0)

	classic := pushTestImage(t, u, "keyless/classic", "1")
	sv, certPEM := ca.issue(t, subject, issuer)
	pushArtifact(t, classic.repo, keylessSignature(t, classic, ca, sv, certPEM), mustTag(t, SignatureTag, classic.digest))

	bundled := pushTestImage(t, u, "keyless/bundle", "1")
	pushBundle(t, bundled, sv, certPEM, signStatement(t, bundled.digest, CosignSignPredicateType), CosignSignPredicateType)

	roguePushed := pushTestImage(t, u, "keyless/rogue", "1")
	rsv, rcert := rogue.issue(t, subject, issuer)
	pushArtifact(t, roguePushed.repo, keylessSignature(t, roguePushed, rogue, rsv, rcert), mustTag(t, SignatureTag, roguePushed.digest))

	policy := func(ids ...Identity) TrustPolicy {
		return TrustPolicy{Identities: ids, TrustedRootJSON: trusted, IgnoreTlog: true, IgnoreSCT: true}
	}
	wantSigner := subject + " (issuer " + issuer + ")"

	for _, img := range []testImage{classic, bundled} {
		layout := LayoutSigTag
		if img == bundled {
			layout = LayoutReferrers
		}
		t.Run(layout, func(t *testing.T) {
			ok := []TrustPolicy{
				policy(Identity{Subject: subject, Issuer: issuer}),
				policy(Identity{SubjectRegexp: `^https://github\.com/acme/`, IssuerRegexp: `githubusercontent\.com$`}),
				policy(Identity{Subject: "someone@else", Issuer: issuer}, Identity{Subject: subject, Issuer: issuer}),
				// A key that does not match plus a matching identity.
				{Keys: [][]byte{pub}, Identities: []Identity{{Subject: subject, Issuer: issuer}}, TrustedRootJSON: trusted, IgnoreTlog: true, IgnoreSCT: true},
			}
			for i, p := range ok {
				v, err := verifyErr(t, img, p)
				if err != nil {
					t.Errorf("policy %d: %v", i, err)
					continue
				}
				want := Verification{Signatures: 1, Verified: true, Signer: wantSigner, Layout: layout}
				if v != want {
					t.Errorf("policy %d: Verify = %+v, want %+v", i, v, want)
				}
			}
			bad := map[string]TrustPolicy{
				"other subject":      policy(Identity{Subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main", Issuer: issuer}),
				"other issuer":       policy(Identity{Subject: subject, Issuer: "https://accounts.google.com"}),
				"regexp not matched": policy(Identity{SubjectRegexp: `^https://github\.com/evil/`, Issuer: issuer}),
				"sct required":       {Identities: []Identity{{Subject: subject, Issuer: issuer}}, TrustedRootJSON: trusted, IgnoreTlog: true},
				"other root":         {Identities: []Identity{{Subject: subject, Issuer: issuer}}, TrustedRootJSON: rogue.trustedRoot(t), IgnoreTlog: true, IgnoreSCT: true},
				"key only":           {Keys: [][]byte{pub}, IgnoreTlog: true},
			}
			for name, p := range bad {
				v, err := verifyErr(t, img, p)
				if !errorsIsBad(err) || v.Verified || v.Signatures != 1 {
					t.Errorf("%s: Verify = %+v, %v; want %v", name, v, err, ErrBadSignature)
				}
				t.Logf("%s: %v", name, err)
			}
		})
	}
	t.Run("untrusted CA", func(t *testing.T) {
		_, err := verifyErr(t, roguePushed, policy(Identity{Subject: subject, Issuer: issuer}))
		wantErr(t, err, ErrBadSignature)
	})
	t.Run("identity needs subject and issuer", func(t *testing.T) {
		_, err := verifyErr(t, classic, policy(Identity{Subject: subject}))
		if err == nil || errorsIsBad(err) || errorsIsNo(err) {
			t.Errorf("Verify = %v", err)
		}
	})
}
