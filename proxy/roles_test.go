package proxy_test

import (
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// pullAndApprove pulls repo:tag through Airlock, waits for the manual
// policy's hold and approves it.
func (s *stack) pullAndApprove(t *testing.T, repo, tag string, d v1.Hash) state.Ref {
	t.Helper()
	ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(d.String())}
	s.get(t, "GET", "/v2/"+repo+"/manifests/"+tag)
	s.waitState(t, ref, state.StateAwaitingApproval)
	if _, err := s.engine.Approve(ref, "admin", "test"); err != nil {
		t.Fatal(err)
	}
	return ref
}

// expect checks the status of GET and HEAD of path.
func (s *stack) expect(t *testing.T, what, path string, want int) {
	t.Helper()
	for _, m := range []string{"GET", "HEAD"} {
		if got, body, _, _ := s.get(t, m, path); got != want {
			t.Errorf("%s: %s %s = %d (%.200s), want %d", what, m, path, got, body, want)
		}
	}
}

// TestManifestBytesAsLayer: a publisher makes image q's manifest bytes a
// layer of image x. x approved serves those bytes as x's layer, but never
// as q's manifest (by digest or tag) once q has a record of its own in
// quarantine, nor q's config and layers.
func TestManifestBytesAsLayer(t *testing.T) {
	s := newStack(t, nil)
	const repo = "team/app"
	q := registrytest.Image(t, 1, 512, types.OCIManifestSchema1)
	qRaw, _ := q.RawManifest()
	qd, _ := q.Digest()
	x, err := mutate.AppendLayers(registrytest.Image(t, 1, 512, types.OCIManifestSchema1), static.NewLayer(qRaw, types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	xd := s.up.PushImage(t, repo+":x", x)
	s.up.PushImage(t, repo+":q", q)
	s.pullAndApprove(t, repo, "x", xd)

	// Before q has a record its bytes are served as what they are to x: a layer.
	s.expect(t, "x's layer", "/v2/"+repo+"/blobs/"+qd.String(), 200)
	// As a manifest they are not x's, so a pull starts q's own pipeline.
	s.expect(t, "q by digest", "/v2/"+repo+"/manifests/"+qd.String(), 403)
	qref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(qd.String())}
	s.waitState(t, qref, state.StateAwaitingApproval)
	s.expect(t, "q by tag", "/v2/"+repo+"/manifests/q", 403)
	s.expect(t, "q by digest", "/v2/"+repo+"/manifests/"+qd.String(), 403)
	// q's own record in quarantine wins on /blobs/ too.
	s.expect(t, "q's bytes as a blob", "/v2/"+repo+"/blobs/"+qd.String(), 403)
	qcfg, _ := q.ConfigName()
	s.expect(t, "q's config", "/v2/"+repo+"/blobs/"+qcfg.String(), 403)
	ql, _ := q.Layers()
	qld, _ := ql[0].Digest()
	s.expect(t, "q's layer", "/v2/"+repo+"/blobs/"+qld.String(), 403)
	// x's own content stays served.
	s.expect(t, "x", "/v2/"+repo+"/manifests/x", 200)
	xcfg, _ := x.ConfigName()
	s.expect(t, "x's config", "/v2/"+repo+"/blobs/"+xcfg.String(), 200)
}

// TestRevokedPlatformManifest: an admin revokes one platform manifest of
// an approved index. It is then refused as a manifest and as a blob, and
// so are its config and layers; the other platform stays served.
func TestRevokedPlatformManifest(t *testing.T) {
	s := newStack(t, nil)
	const repo = "team/multi"
	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64")
	d := s.up.PushIndex(t, repo+":1", idx)
	s.pullAndApprove(t, repo, "1", d)
	im, _ := idx.IndexManifest()
	bad, good := im.Manifests[0].Digest, im.Manifests[1].Digest
	s.expect(t, "platform manifest", "/v2/"+repo+"/manifests/"+bad.String(), 200)
	// A manifest is not a blob.
	s.expect(t, "platform manifest as a blob", "/v2/"+repo+"/blobs/"+bad.String(), 404)

	badRef := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(bad.String())}
	img, err := s.engine.Revoke(badRef, "admin:test", "bad platform")
	if err != nil {
		t.Fatalf("revoke a platform manifest: %v", err)
	}
	if img.State != state.StateRevoked {
		t.Fatalf("revoked platform manifest is %s", img.State)
	}
	s.expect(t, "revoked platform manifest", "/v2/"+repo+"/manifests/"+bad.String(), 403)
	s.expect(t, "revoked platform manifest as a blob", "/v2/"+repo+"/blobs/"+bad.String(), 403)
	child, _ := idx.Image(bad)
	cfg, _ := child.ConfigName()
	s.expect(t, "config of the revoked platform", "/v2/"+repo+"/blobs/"+cfg.String(), 403)
	layers, _ := child.Layers()
	for _, l := range layers {
		ld, _ := l.Digest()
		s.expect(t, "layer of the revoked platform", "/v2/"+repo+"/blobs/"+ld.String(), 403)
	}
	s.expect(t, "index", "/v2/"+repo+"/manifests/1", 200)
	s.expect(t, "other platform", "/v2/"+repo+"/manifests/"+good.String(), 200)
	if _, body, _, _ := s.get(t, "GET", "/v2/"+repo+"/blobs/"+cfg.String()); !contains(body, "was revoked") {
		t.Errorf("refusal does not say revoked: %s", body)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// TestRevokeCutsBlobInFlight: a client downloading an approved blob slowly
// is cut off when the image is revoked: it gets a short body and an error,
// far before the whole blob arrives.
func TestRevokeCutsBlobInFlight(t *testing.T) {
	s := newStack(t, func(c *config.Config) { c.Limits.MaxManifestBytes = 4 << 20 })
	const repo = "team/big"
	// Random bytes, stored as they are: no compression to pay for under
	// -race, and more than loopback's socket buffers hold.
	const size = 24 << 20
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(registrytest.Image(t, 1, 16, types.OCIManifestSchema1), static.NewLayer(data, types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	d := s.up.PushImage(t, repo+":1", img)
	ref := s.pullAndApprove(t, repo, "1", d)
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	n, _ := layers[1].Size()

	resp, err := http.Get(s.srv.URL + "/v2/" + repo + "/blobs/" + ld.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("approved blob = %d", resp.StatusCode)
	}
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := s.engine.Revoke(ref, "admin:test", "withdrawn mid-download"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rest, err := io.Copy(io.Discard, resp.Body)
	got := int64(len(buf)) + rest
	if err == nil || got >= n {
		t.Fatalf("download went on after revoke: %d of %d bytes, err %v", got, n, err)
	}
	t.Logf("cut after %d of %d bytes, %s after the revoke: %v", got, n, time.Since(start).Round(time.Millisecond), err)
	s.expect(t, "revoked blob", "/v2/"+repo+"/blobs/"+ld.String(), 403)
}
