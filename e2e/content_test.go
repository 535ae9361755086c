package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// artifact is everything a client pulls for one reference, byte for byte.
type artifact struct {
	Digest    v1.Hash
	MediaType types.MediaType
	Manifest  []byte

	// Images only.
	ConfigDigest v1.Hash
	Config       []byte
	Layers       []layerBytes

	// Indexes only: the platform images, in index order.
	Children []*artifact
}

type layerBytes struct {
	Digest v1.Hash
	Data   []byte
}

func isIndexType(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

// pull fetches everything ref names with go-containerregistry: the manifest
// (remote.Get), then the image (remote.Image: config and every layer's
// compressed bytes) or the index (remote.Index and each child image).
// Layer bytes are checked against their digests.
func pull(ref name.Reference, opts ...remote.Option) (*artifact, error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, err
	}
	if isIndexType(desc.MediaType) {
		idx, err := remote.Index(ref, opts...)
		if err != nil {
			return nil, err
		}
		a, err := indexArtifact(idx)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(a.Manifest, desc.Manifest) {
			return nil, fmt.Errorf("%s: remote.Get and remote.Index returned different manifests", ref)
		}
		return a, nil
	}
	img, err := remote.Image(ref, opts...)
	if err != nil {
		return nil, err
	}
	a, err := imageArtifact(img)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(a.Manifest, desc.Manifest) {
		return nil, fmt.Errorf("%s: remote.Get and remote.Image returned different manifests", ref)
	}
	return a, nil
}

func indexArtifact(idx v1.ImageIndex) (*artifact, error) {
	a := &artifact{}
	var err error
	if a.Digest, err = idx.Digest(); err != nil {
		return nil, err
	}
	if a.MediaType, err = idx.MediaType(); err != nil {
		return nil, err
	}
	if a.Manifest, err = idx.RawManifest(); err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("child %s: %w", d.Digest, err)
		}
		c, err := imageArtifact(img)
		if err != nil {
			return nil, fmt.Errorf("child %s: %w", d.Digest, err)
		}
		a.Children = append(a.Children, c)
	}
	return a, nil
}

func imageArtifact(img v1.Image) (*artifact, error) {
	a := &artifact{}
	var err error
	if a.Manifest, err = img.RawManifest(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if a.Digest, err = img.Digest(); err != nil {
		return nil, err
	}
	if a.MediaType, err = img.MediaType(); err != nil {
		return nil, err
	}
	if a.ConfigDigest, err = img.ConfigName(); err != nil {
		return nil, err
	}
	if a.Config, err = img.RawConfigFile(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if got := sha256Hash(a.Config); got != a.ConfigDigest {
		return nil, fmt.Errorf("config hashes to %s, manifest says %s", got, a.ConfigDigest)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		if got := sha256Hash(data); got != d {
			return nil, fmt.Errorf("layer %s: content hashes to %s", d, got)
		}
		a.Layers = append(a.Layers, layerBytes{Digest: d, Data: data})
	}
	return a, nil
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// mustPull is pull that fails the test on error.
func mustPull(t testing.TB, ref name.Reference) *artifact {
	t.Helper()
	a, err := pull(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return a
}

// assertSame checks that got is byte for byte what want is: manifest,
// config, every layer, and for an index every child.
func assertSame(t testing.TB, what string, want, got *artifact) {
	t.Helper()
	if got.Digest != want.Digest {
		t.Errorf("%s: digest %s, want %s", what, got.Digest, want.Digest)
	}
	if got.MediaType != want.MediaType {
		t.Errorf("%s: media type %s, want %s", what, got.MediaType, want.MediaType)
	}
	if !bytes.Equal(got.Manifest, want.Manifest) {
		t.Errorf("%s: manifest bytes differ from upstream (%d vs %d bytes)", what, len(got.Manifest), len(want.Manifest))
	}
	if got.ConfigDigest != want.ConfigDigest || !bytes.Equal(got.Config, want.Config) {
		t.Errorf("%s: config %s (%d bytes), want %s (%d bytes)", what, got.ConfigDigest, len(got.Config), want.ConfigDigest, len(want.Config))
	}
	if len(got.Layers) != len(want.Layers) {
		t.Errorf("%s: %d layers, want %d", what, len(got.Layers), len(want.Layers))
	} else {
		for i := range want.Layers {
			if got.Layers[i].Digest != want.Layers[i].Digest || !bytes.Equal(got.Layers[i].Data, want.Layers[i].Data) {
				t.Errorf("%s: layer %d (%s, %d bytes) differs from upstream (%s, %d bytes)", what, i,
					got.Layers[i].Digest, len(got.Layers[i].Data), want.Layers[i].Digest, len(want.Layers[i].Data))
			}
		}
	}
	if len(got.Children) != len(want.Children) {
		t.Errorf("%s: %d child manifests, want %d", what, len(got.Children), len(want.Children))
		return
	}
	for i := range want.Children {
		assertSame(t, fmt.Sprintf("%s child %d", what, i), want.Children[i], got.Children[i])
	}
}

// blobs lists every config and layer digest of a, children included.
func (a *artifact) blobs() []v1.Hash {
	var out []v1.Hash
	if a.ConfigDigest.Hex != "" {
		out = append(out, a.ConfigDigest)
	}
	for _, l := range a.Layers {
		out = append(out, l.Digest)
	}
	for _, c := range a.Children {
		out = append(out, c.blobs()...)
	}
	return out
}

// quarantineState matches the state a DENIED message reports for an image
// the pipeline has not finished with.
var quarantineState = regexp.MustCompile(`in quarantine \((pending|fetching|verifying|scanning|signing|awaiting-approval|failed)\b`)

// assertDenied checks that err is a registry DENIED answer (HTTP 403)
// whose message contains every one of want.
func assertDenied(t testing.TB, what string, err error, want ...string) string {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded, want DENIED", what)
		return ""
	}
	var terr *transport.Error
	if !errors.As(err, &terr) {
		t.Errorf("%s: error %v is not a registry error, want DENIED", what, err)
		return ""
	}
	if terr.StatusCode != http.StatusForbidden {
		t.Errorf("%s: status %d, want 403: %v", what, terr.StatusCode, err)
	}
	if terr.Request != nil && terr.Request.Method == http.MethodHead {
		// HEAD answers carry no body; the status is all a client gets.
		return err.Error()
	}
	if len(terr.Errors) == 0 || terr.Errors[0].Code != transport.DeniedErrorCode {
		t.Errorf("%s: registry errors %+v, want code DENIED", what, terr.Errors)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: error %q does not mention %q", what, msg, w)
		}
	}
	return msg
}

// assertBlobRefused checks that a blob GET through airlock does not serve it.
func assertBlobRefused(t testing.TB, a *Airlock, repo string, d v1.Hash) {
	t.Helper()
	r := a.getBlob(t, repo, d.String())
	if r.Status != http.StatusForbidden && r.Status != http.StatusNotFound {
		t.Errorf("GET /v2/%s/blobs/%s = %d (%d bytes), want 403 or 404", repo, d, r.Status, len(r.Body))
	}
}
