package registrytest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

func TestHostIsLoopback(t *testing.T) {
	u := registrytest.NewUpstream(t)
	if !strings.HasPrefix(u.Host(), "127.0.0.1:") {
		t.Errorf("Host() = %q, want 127.0.0.1:PORT", u.Host())
	}
	if want := "http://" + u.Host(); u.URL() != want {
		t.Errorf("URL() = %q, want %q", u.URL(), want)
	}
	resp, err := http.Get(u.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
	if got := u.Count("GET", "/v2/"); got != 1 {
		t.Errorf("Count(GET /v2/) = %d, want 1", got)
	}

	// A miss is a real registry 404 (which distribution would log at
	// ERROR were it not silenced), recorded with its status.
	resp, err = http.Get(u.URL() + "/v2/library/missing/manifests/latest?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET missing manifest = %d, want 404", resp.StatusCode)
	}
	reqs := u.Requests()
	last := reqs[len(reqs)-1]
	if want := (registrytest.Request{Method: "GET", Path: "/v2/library/missing/manifests/latest", RawQuery: "x=1", Status: 404, Bytes: last.Bytes}); last != want || last.Bytes == 0 {
		t.Errorf("last request = %+v, want %+v with a non-empty error body", last, want)
	}
}

func TestPushPullImage(t *testing.T) {
	u := registrytest.NewUpstream(t)
	for _, tc := range []struct {
		mt               types.MediaType
		configMT, layerT types.MediaType
	}{
		{types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
		{types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
	} {
		t.Run(string(tc.mt), func(t *testing.T) {
			img := registrytest.Image(t, 3, 1024, tc.mt)
			d := u.PushImage(t, "library/alpine:3.20", img)

			for _, ref := range []name.Reference{
				u.Ref(t, "library/alpine:3.20"),
				u.Ref(t, "library/alpine@"+d.String()),
			} {
				got, err := remote.Image(ref)
				if err != nil {
					t.Fatalf("remote.Image(%s): %v", ref, err)
				}
				gd, err := got.Digest()
				if err != nil {
					t.Fatal(err)
				}
				if gd != d {
					t.Errorf("pulled %s digest = %s, want %s", ref, gd, d)
				}
			}

			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.mt || m.Config.MediaType != tc.configMT {
				t.Errorf("media types = %s/%s, want %s/%s", m.MediaType, m.Config.MediaType, tc.mt, tc.configMT)
			}
			if len(m.Layers) != 3 {
				t.Fatalf("layers = %d, want 3", len(m.Layers))
			}
			for _, l := range m.Layers {
				if l.MediaType != tc.layerT {
					t.Errorf("layer media type = %s, want %s", l.MediaType, tc.layerT)
				}
			}
		})
	}
}

func TestPushPullIndex(t *testing.T) {
	u := registrytest.NewUpstream(t)
	for _, tc := range []struct{ mt, childMT types.MediaType }{
		{types.OCIImageIndex, types.OCIManifestSchema1},
		{types.DockerManifestList, types.DockerManifestSchema2},
	} {
		t.Run(string(tc.mt), func(t *testing.T) {
			idx := registrytest.Index(t, tc.mt, "linux/amd64", "linux/arm64/v8")
			d := u.PushIndex(t, "library/multi:latest", idx)

			got, err := remote.Index(u.Ref(t, "library/multi:latest"))
			if err != nil {
				t.Fatal(err)
			}
			gd, err := got.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if gd != d {
				t.Errorf("pulled index digest = %s, want %s", gd, d)
			}

			im, err := got.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if im.MediaType != tc.mt {
				t.Errorf("index media type = %s, want %s", im.MediaType, tc.mt)
			}
			want := []v1.Platform{
				{OS: "linux", Architecture: "amd64"},
				{OS: "linux", Architecture: "arm64", Variant: "v8"},
			}
			if len(im.Manifests) != len(want) {
				t.Fatalf("index has %d children, want %d", len(im.Manifests), len(want))
			}
			for i, desc := range im.Manifests {
				if desc.MediaType != tc.childMT {
					t.Errorf("child %d media type = %s, want %s", i, desc.MediaType, tc.childMT)
				}
				if desc.Platform == nil || !desc.Platform.Equals(want[i]) {
					t.Errorf("child %d platform = %v, want %v", i, desc.Platform, want[i])
				}
				// The child must be pullable on its own, by digest.
				child, err := remote.Image(u.Ref(t, "library/multi@"+desc.Digest.String()))
				if err != nil {
					t.Fatalf("child %d: %v", i, err)
				}
				cf, err := child.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if !cf.Platform().Equals(want[i]) {
					t.Errorf("child %d config platform = %v, want %v", i, cf.Platform(), want[i])
				}
				if ls, err := child.Layers(); err != nil || len(ls) != 2 {
					t.Errorf("child %d: %d layers (err %v), want 2", i, len(ls), err)
				}
			}
		})
	}
}

// pushOneLayer pushes a single-layer image and returns the upstream, the
// repository-qualified layer reference, and the layer's digest and size.
func pushOneLayer(t *testing.T, size int64) (*registrytest.Upstream, name.Digest, v1.Hash, int64) {
	t.Helper()
	u := registrytest.NewUpstream(t)
	img := registrytest.Image(t, 1, size, types.OCIManifestSchema1)
	u.PushImage(t, "test/blob:v1", img)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	n, err := ls[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(u.Host()+"/test/blob@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return u, ref, d, n
}

// blobURL is the plain-HTTP URL of the blob ref points at.
func blobURL(u *registrytest.Upstream, ref name.Digest) string {
	return u.URL() + "/v2/" + ref.Context().RepositoryStr() + "/blobs/" + ref.DigestStr()
}

// fetchLayer downloads and verifies (ggcr checks the digest on EOF) a blob.
func fetchLayer(t *testing.T, ref name.Digest) {
	t.Helper()
	l, err := remote.Layer(ref)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("read blob: %v", err)
	}
}

func TestCountBlobGETs(t *testing.T) {
	u, ref, d, size := pushOneLayer(t, 4096)
	// Pushing touches /blobs/uploads/... and HEADs the blob; neither is a
	// blob GET.
	if got := u.CountBlobGETs(d); got != 0 {
		t.Errorf("CountBlobGETs after push = %d, want 0", got)
	}
	u.Reset()
	if n := len(u.Requests()); n != 0 {
		t.Fatalf("after Reset, %d requests recorded", n)
	}

	fetchLayer(t, ref)
	if got := u.CountBlobGETs(d); got != 1 {
		t.Errorf("CountBlobGETs = %d, want 1", got)
	}
	path := "/v2/test/blob/blobs/" + d.String()
	if got := u.Count("GET", path); got != 1 {
		t.Errorf("Count(GET %s) = %d, want 1", path, got)
	}
	for _, r := range u.Requests() {
		if r.Method == "GET" && r.Path == path && (r.Status != http.StatusOK || r.Bytes != size) {
			t.Errorf("recorded %+v, want status 200 and %d bytes", r, size)
		}
	}

	fetchLayer(t, ref)
	if got := u.CountBlobGETs(d); got != 2 {
		t.Errorf("CountBlobGETs after second fetch = %d, want 2", got)
	}
	if got := u.CountBlobGETs(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}); got != 0 {
		t.Errorf("CountBlobGETs(unrelated) = %d, want 0", got)
	}
}

func TestConcurrentClients(t *testing.T) {
	u, ref, d, size := pushOneLayer(t, 8192)
	u.Reset()
	before := u.BlobBytesServed()

	const clients = 50
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			fetchLayer(t, ref)
			_ = u.Requests() // exercise reads racing with writes
		})
	}
	wg.Wait()

	if got := u.CountBlobGETs(d); got != clients {
		t.Errorf("CountBlobGETs = %d, want %d", got, clients)
	}
	if got, want := u.BlobBytesServed()-before, clients*size; got != want {
		t.Errorf("BlobBytesServed grew by %d, want %d", got, want)
	}
}

func TestSetBlobRateFullBody(t *testing.T) {
	u, ref, _, size := pushOneLayer(t, 256<<10)
	before := u.BlobBytesServed()
	// ~0.25s for the blob: slow enough to take many throttled writes,
	// fast enough not to drag the suite.
	u.SetBlobRate(1 << 20)
	fetchLayer(t, ref) // verifies the digest, so the body arrived intact
	if got := u.BlobBytesServed() - before; got != size {
		t.Errorf("BlobBytesServed grew by %d, want %d", got, size)
	}
}

func TestSetBlobRateClientGoesAway(t *testing.T) {
	u, ref, _, size := pushOneLayer(t, 256<<10)
	u.SetBlobRate(32 << 10) // full blob would take ~8s

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, blobURL(u, ref), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if u.BlobBytesServed() < 4096 {
		t.Errorf("BlobBytesServed = %d after client read 4096", u.BlobBytesServed())
	}
	cancel()

	// The handler must notice and return rather than trickle on.
	waitFor(t, func() bool { return u.InFlight() == 0 })
	if got := u.BlobBytesServed(); got >= size {
		t.Errorf("BlobBytesServed = %d, want < %d after client went away", got, size)
	}
}

func TestStop(t *testing.T) {
	u, ref, _, _ := pushOneLayer(t, 256<<10)
	fetchLayer(t, ref) // leave a keep-alive connection in the pool

	// A throttled in-flight blob must be severed, not waited for.
	u.SetBlobRate(16 << 10)
	resp, err := http.Get(blobURL(u, ref))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	go func() {
		u.Stop()
		u.Stop() // idempotent
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("in-flight blob body completed after Stop, want error")
	}

	_, err = http.Get(u.URL() + "/v2/")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after Stop: err = %v, want connection refused", err)
	}
	if _, err := remote.Image(u.Ref(t, "test/blob:v1")); err == nil {
		t.Error("remote.Image after Stop succeeded, want error")
	}
}

// waitFor polls cond for up to 10s; it bounds hangs, not timing.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
