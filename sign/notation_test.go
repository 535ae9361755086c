package sign

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/notationtest"
	"github.com/airlockproxy/airlock/internal/registrytest"
)

// notationFixture is an upstream image with a publisher CA, a trust store
// holding it and a trust policy scoped to the image's repository.
type notationFixture struct {
	img     testImage
	subject v1.Descriptor
	ca      *notationtest.CA
	dir     string
	trust   NotationTrust
	scope   string
}

func newNotationFixture(t *testing.T, repo string) *notationFixture {
	t.Helper()
	u := registrytest.NewUpstream(t)
	img := pushTestImage(t, u, repo, "v1")
	f := &notationFixture{img: img, ca: notationtest.NewCA(t, "publisher-ca"), dir: t.TempDir(), scope: img.repo.Name()}
	h, _ := v1.NewHash(img.digest.String())
	f.subject = v1.Descriptor{MediaType: types.MediaType(img.mediaType), Digest: h, Size: img.size}
	f.trust = f.load(t, notationtest.Statement{Name: "publisher", Scopes: []string{f.scope}, Level: "strict", Store: "ca:publisher"}, f.ca)
	return f
}

// load writes a trust store of cas and a policy of st, and loads them.
func (f *notationFixture) load(t *testing.T, st notationtest.Statement, cas ...*notationtest.CA) NotationTrust {
	t.Helper()
	d := t.TempDir()
	store := notationtest.TrustStore(t, filepath.Join(d, "truststore"), "publisher", cas...)
	pol := notationtest.TrustPolicy(t, filepath.Join(d, "trustpolicy.json"), st)
	tr, err := LoadNotationTrust(pol, store)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// sign pushes a Notation signature of the image made by a certificate of ca.
func (f *notationFixture) sign(t *testing.T, ca *notationtest.CA, cn, format string) Artifact {
	t.Helper()
	s := ca.Issue(t, f.dir, cn)
	ns, err := LoadNotationSigner(s.KeyFile, s.ChainFile, format)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ns.Sign(t.Context(), f.img.digest, f.img.size, f.img.mediaType)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, f.img.repo, a, "")
	return a
}

func (f *notationFixture) verify(t *testing.T, tr NotationTrust) (NotationVerification, error) {
	t.Helper()
	return VerifyNotation(t.Context(), f.img.repo, f.scope, f.subject, tr)
}

// TestVerifyNotation: JWS and COSE signatures of the publisher's CA verify
// and are kept byte for byte; another CA's signature, no signature, a
// skipping or non-matching trust policy do not.
func TestVerifyNotation(t *testing.T) {
	for _, format := range []string{"jws", "cose"} {
		t.Run(format, func(t *testing.T) {
			f := newNotationFixture(t, "library/notation-"+format)
			if _, err := f.verify(t, f.trust); !errors.Is(err, ErrNoSignature) {
				t.Fatalf("unsigned: %v, want ErrNoSignature", err)
			}
			a := f.sign(t, f.ca, "publisher", format)
			v, err := f.verify(t, f.trust)
			if err != nil || !v.Verified || v.Signatures != 1 {
				t.Fatalf("signed: %+v, %v", v, err)
			}
			if !strings.Contains(v.Signer, "CN=publisher") || !strings.Contains(v.Signer, "CN=publisher-ca") {
				t.Errorf("signer %q names neither the leaf nor the CA", v.Signer)
			}
			wantEnv := map[string]string{"jws": NotationJWS, "cose": NotationCOSE}[format]
			if v.Envelope != wantEnv {
				t.Errorf("envelope %s, want %s", v.Envelope, wantEnv)
			}
			if v.Kept == nil || v.Kept.Digest != a.Digest || string(v.Kept.Manifest) != string(a.Manifest) || len(v.Kept.Blobs) != 2 {
				t.Fatalf("kept %+v, want the pushed manifest %s with config and envelope", v.Kept, a.Digest)
			}
			for d, b := range v.Kept.Blobs {
				if digest.FromBytes(b) != d {
					t.Errorf("kept blob %s does not match its digest", d)
				}
			}

			// Trusting another CA: found, does not verify.
			other := notationtest.NewCA(t, "other-ca")
			wrong := f.load(t, notationtest.Statement{Name: "p", Scopes: []string{f.scope}, Level: "strict", Store: "ca:publisher"}, other)
			if v, err := f.verify(t, wrong); !errors.Is(err, ErrBadSignature) || v.Verified || v.Signatures != 1 {
				t.Fatalf("other CA: %+v, %v; want ErrBadSignature", v, err)
			}
			// Identities pinned to another subject.
			pinned := f.load(t, notationtest.Statement{Name: "p", Scopes: []string{f.scope}, Level: "strict", Store: "ca:publisher",
				Identities: []string{"x509.subject: C=US, ST=WA, O=Airlock tests, CN=someone-else"}}, f.ca)
			if _, err := f.verify(t, pinned); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("pinned to another identity: %v, want ErrBadSignature", err)
			}
			match := f.load(t, notationtest.Statement{Name: "p", Scopes: []string{f.scope}, Level: "strict", Store: "ca:publisher",
				Identities: []string{"x509.subject: C=US, ST=WA, O=Airlock tests, CN=publisher"}}, f.ca)
			if v, err := f.verify(t, match); err != nil || !v.Verified {
				t.Fatalf("pinned to the signer's identity: %+v, %v", v, err)
			}
			// Audit level logs the authenticity failure; Airlock still
			// refuses to count it.
			audit := f.load(t, notationtest.Statement{Name: "p", Scopes: []string{f.scope}, Level: "audit", Store: "ca:publisher"}, other)
			if _, err := f.verify(t, audit); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("audit with the wrong CA: %v, want ErrBadSignature", err)
			}
			skip := f.load(t, notationtest.Statement{Name: "p", Scopes: []string{"*"}, Level: "skip"})
			if _, err := f.verify(t, skip); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("skip level: %v, want ErrBadSignature", err)
			}
			elsewhere := f.load(t, notationtest.Statement{Name: "p", Scopes: []string{"example.com/other"}, Level: "strict", Store: "ca:publisher"}, f.ca)
			if _, err := f.verify(t, elsewhere); !errors.Is(err, ErrNotationPolicy) {
				t.Fatalf("no statement for the scope: %v, want ErrNotationPolicy", err)
			}
		})
	}
}

// TestVerifyNotationHostile: signature referrers an upstream can forge
// around a good one (wrong subject, extra layers, a bad envelope, a
// cosign-looking manifest, an envelope for another image) never verify and
// never hide the good signature; too many are cut off at the limit.
func TestVerifyNotationHostile(t *testing.T) {
	f := newNotationFixture(t, "library/notation-hostile")
	subject, err := subjectDescriptor(f.img.digest, f.img.size, f.img.mediaType)
	if err != nil {
		t.Fatal(err)
	}
	push := func(artifactType string, layers []layer, sub v1.Descriptor) {
		a, err := referrerArtifact(artifactType, sub, "", nil, layers, nil)
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, f.img.repo, a, "")
	}
	// An envelope signed for another image, attached to this one.
	g := newNotationFixture(t, "library/notation-elsewhere")
	foreign := g.sign(t, f.ca, "publisher", "jws")
	fm, err := parseManifest(foreign.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	env := foreign.Blobs[digest.Digest(fm.Layers[0].Digest.String())]
	push(NotationArtifactType, []layer{{data: env, mediaType: NotationJWS}}, subject)
	push(NotationArtifactType, []layer{{data: []byte("not a jws"), mediaType: NotationJWS}}, subject)
	push(NotationArtifactType, []layer{{data: env, mediaType: NotationJWS}, {data: env, mediaType: NotationJWS}}, subject)
	push(NotationArtifactType, []layer{{data: env, mediaType: "application/octet-stream"}}, subject)
	v, err := f.verify(t, f.trust)
	if !errors.Is(err, ErrBadSignature) || v.Verified || v.Signatures != 4 {
		t.Fatalf("only forged signatures: %+v, %v; want 4 found, ErrBadSignature", v, err)
	}
	for _, want := range []string{"layers", "envelope media type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not explain %q", err, want)
		}
	}
	f.sign(t, f.ca, "publisher", "cose")
	if v, err := f.verify(t, f.trust); err != nil || !v.Verified || v.Signatures != 5 {
		t.Fatalf("good signature among forged ones: %+v, %v", v, err)
	}

	// A flood of referrers: at most maxNotationSignatures are read.
	h := newNotationFixture(t, "library/notation-flood")
	hs, _ := subjectDescriptor(h.img.digest, h.img.size, h.img.mediaType)
	for i := 0; i < maxNotationSignatures+3; i++ {
		a, err := referrerArtifact(NotationArtifactType, hs, "", nil, []layer{{data: []byte(fmt.Sprintf("junk %d", i)), mediaType: NotationJWS}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, h.img.repo, a, "")
	}
	v, err = h.verify(t, h.trust)
	if !errors.Is(err, ErrBadSignature) || v.Signatures != maxNotationSignatures {
		t.Fatalf("flood: %+v, %v; want %d read, ErrBadSignature", v, err, maxNotationSignatures)
	}
}

// TestNotationSignerManifest: Airlock's own Notation signature is an OCI
// 1.1 referrer of the image in notation's layout, verifiable by
// VerifyNotation with the enterprise CA.
func TestNotationSignerManifest(t *testing.T) {
	f := newNotationFixture(t, "library/notation-own")
	a := f.sign(t, f.ca, "airlock", "jws")
	var m struct {
		ArtifactType string            `json:"artifactType"`
		Subject      v1.Descriptor     `json:"subject"`
		Config       v1.Descriptor     `json:"config"`
		Layers       []v1.Descriptor   `json:"layers"`
		Annotations  map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(a.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != NotationArtifactType || m.Subject.Digest.String() != f.img.digest.String() ||
		m.Config.MediaType != emptyConfigMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != NotationJWS {
		t.Fatalf("manifest %s", a.Manifest)
	}
	var tps []string
	if err := json.Unmarshal([]byte(m.Annotations[notationThumbprints]), &tps); err != nil || len(tps) != 2 {
		t.Fatalf("thumbprints %q: %v", m.Annotations[notationThumbprints], err)
	}
	if _, err := LoadNotationSigner(filepath.Join(f.dir, "airlock.key"), filepath.Join(f.dir, "airlock.crt"), "pem"); err == nil {
		t.Fatal("an unknown signature format was accepted")
	}
}
