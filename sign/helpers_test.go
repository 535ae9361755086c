package sign

import (
	"errors"
	"sync"
	"testing"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
)

// testPassword encrypts every test key.
var testPassword = []byte("correct horse battery staple")

// keyPool caches generated keys: scrypt makes each GenerateKeyPair and
// LoadSigner cost about a second under -race.
var keyPool struct {
	sync.Mutex
	signers []*Signer
	pubs    [][]byte
}

// testKey returns the i-th cached test key (generated on first use);
// different i give different keys.
func testKey(t *testing.T, i int) (*Signer, []byte) {
	t.Helper()
	keyPool.Lock()
	defer keyPool.Unlock()
	for len(keyPool.signers) <= i {
		priv, pub, err := GenerateKeyPair(testPassword)
		if err != nil {
			t.Fatal(err)
		}
		s, err := LoadSigner(priv, testPassword)
		if err != nil {
			t.Fatal(err)
		}
		keyPool.signers = append(keyPool.signers, s)
		keyPool.pubs = append(keyPool.pubs, pub)
	}
	return keyPool.signers[i], keyPool.pubs[i]
}

// testImage is an image pushed to an upstream.
type testImage struct {
	repo      name.Repository
	digest    digest.Digest
	size      int64
	mediaType string
	dockerRef string
}

// pushTestImage pushes a small random OCI image to u at repo:tag.
func pushTestImage(t *testing.T, u *registrytest.Upstream, repo, tag string) testImage {
	t.Helper()
	img := registrytest.Image(t, 1, 256, types.OCIManifestSchema1)
	h := u.PushImage(t, repo+":"+tag, img)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	r := u.Ref(t, repo+":"+tag).Context()
	return testImage{
		repo:      r,
		digest:    digest.Digest(h.String()),
		size:      int64(len(raw)),
		mediaType: string(mt),
		dockerRef: r.Name(),
	}
}

// rawManifest lets remote.Put push exact manifest bytes.
type rawManifest struct {
	raw       []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }

// pushArtifact uploads a's blobs to repo and puts its manifest under tag,
// or by digest when tag is "". go-containerregistry maintains the
// referrers tag fallback for manifests with a subject, since distribution
// has no referrers API.
func pushArtifact(t *testing.T, repo name.Repository, a Artifact, tag string) {
	t.Helper()
	ctx := t.Context()
	for d, b := range a.Blobs {
		if digest.FromBytes(b) != d {
			t.Fatalf("blob %s does not match its content", d)
		}
		if err := remote.WriteLayer(repo, static.NewLayer(b, types.OCILayer), remote.WithContext(ctx)); err != nil {
			t.Fatalf("push blob %s: %v", d, err)
		}
	}
	var ref name.Reference = repo.Digest(a.Digest.String())
	if tag != "" {
		ref = repo.Tag(tag)
	}
	if err := remote.Put(ref, rawManifest{a.Manifest, a.MediaType}, remote.WithContext(ctx)); err != nil {
		t.Fatalf("push manifest %s: %v", ref, err)
	}
}

// mustTag is SignatureTag or AttestationTag without the error.
func mustTag(t *testing.T, f func(digest.Digest) (string, error), d digest.Digest) string {
	t.Helper()
	s, err := f(d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifyErr runs Verify and returns its result and error.
func verifyErr(t *testing.T, img testImage, p TrustPolicy) (Verification, error) {
	t.Helper()
	return Verify(t.Context(), img.repo, img.digest, p)
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// verifiesOnlyWith checks that img verifies with key pub, as want says,
// and that another key is refused with ErrBadSignature.
func verifiesOnlyWith(t *testing.T, img testImage, pub, otherPub []byte, want Verification) {
	t.Helper()
	v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil || v != want {
		t.Fatalf("Verify = %+v, %v; want %+v", v, err, want)
	}
	_, err = verifyErr(t, img, TrustPolicy{Keys: [][]byte{otherPub}, IgnoreTlog: true})
	wantErr(t, err, ErrBadSignature)
}

// mustVerifier loads a PEM public key as cosign's CLI does.
func mustVerifier(t *testing.T, pub []byte) signature.Verifier {
	t.Helper()
	v, _, err := loadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func errorsIsNo(err error) bool  { return errors.Is(err, ErrNoSignature) }
func errorsIsBad(err error) bool { return errors.Is(err, ErrBadSignature) }
