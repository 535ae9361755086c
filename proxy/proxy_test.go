package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/proxy"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// stack is Airlock's registry API with its real store, content store,
// pipeline and a real upstream registry, all in-process.
type stack struct {
	up      *registrytest.Upstream
	cfg     *config.Config
	store   *state.Store
	content *content.Store
	ups     *upstream.Set
	engine  *gate.Engine
	srv     *httptest.Server
	host    string
}

func newStack(t testing.TB, edit func(*config.Config)) *stack {
	t.Helper()
	up := registrytest.NewUpstream(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Upstreams = []config.Upstream{
		{Name: "docker.io", URL: up.URL(), Insecure: true, Default: true},
		{Name: "ghcr.io", Alias: "ghcr", URL: up.URL(), Insecure: true, Allow: []string{"allowed/**"}},
	}
	cfg.Gate.Hold = 0
	cfg.Gate.Policy = config.PolicyManual
	cfg.Gate.TagTTL = 0
	cfg.Gate.Retry.Backoff = 50 * time.Millisecond
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(filepath.Join(cfg.DataDir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := content.New(ctx, "filesystem", map[string]any{"rootdirectory": filepath.Join(cfg.DataDir, "content")})
	if err != nil {
		t.Fatal(err)
	}
	ups, err := upstream.NewSet(cfg.Upstreams)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := gate.Pipeline(cfg, ups, cs, store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine := gate.New(store, cfg.Gate, steps)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); engine.Run(ctx) }()
	srv := httptest.NewServer(proxy.New(cfg, store, cs, engine, ups).Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
	})
	return &stack{up: up, cfg: cfg, store: store, content: cs, ups: ups, engine: engine, srv: srv, host: strings.TrimPrefix(srv.URL, "http://")}
}

// waitState polls until ref is in st.
func (s *stack) waitState(t testing.TB, ref state.Ref, st state.State) state.Image {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		img, err := s.store.Image(ref)
		if err == nil && img.State == st {
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %q (%s), want %q", ref, img.State, img.Reason, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type regError struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// get performs a request against Airlock and returns status, body and the
// first registry error code.
func (s *stack) get(t *testing.T, method, path string) (int, []byte, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", strings.Join([]string{
		string(types.OCIImageIndex), string(types.DockerManifestList),
		string(types.OCIManifestSchema1), string(types.DockerManifestSchema2),
	}, ","))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var re regError
	code := ""
	if json.Unmarshal(body, &re) == nil && len(re.Errors) > 0 {
		code = re.Errors[0].Code
	}
	return resp.StatusCode, body, code, resp.Header
}

func TestBadInput(t *testing.T) {
	s := newStack(t, nil)
	dig := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/../etc/passwd/manifests/latest", 400, proxy.CodeNameInvalid},
		{"GET", "/v2/library/../x/manifests/latest", 400, proxy.CodeNameInvalid},
		{"GET", "/v2/library/%2e%2e/x/manifests/latest", 400, proxy.CodeNameInvalid},
		{"GET", "/v2/Library/Alpine/manifests/latest", 400, proxy.CodeNameInvalid},
		{"GET", "/v2/" + strings.Repeat("a", 300) + "/manifests/latest", 400, proxy.CodeNameInvalid},
		{"GET", "/v2/library/alpine/manifests/sha256:xyz", 400, proxy.CodeDigestInvalid},
		{"GET", "/v2/library/alpine/manifests/sha256:" + strings.Repeat("A", 64), 400, proxy.CodeDigestInvalid},
		{"GET", "/v2/library/alpine/manifests/.bad", 400, proxy.CodeManifestInvalid},
		{"GET", "/v2/library/alpine/blobs/sha256:nope", 400, proxy.CodeDigestInvalid},
		{"GET", "/v2/library/alpine/blobs/" + dig, 404, proxy.CodeBlobUnknown},
		{"HEAD", "/v2/library/alpine/blobs/" + dig, 404, ""},
		{"GET", "/v2/library/alpine/manifests/" + dig, 404, proxy.CodeManifestUnknown},
		{"GET", "/v2/library/nothere/manifests/latest", 404, proxy.CodeManifestUnknown},
		{"GET", "/v2/x/y/manifests/latest?ns=unknown.example", 404, proxy.CodeNameUnknown},
		{"GET", "/v2/ghcr/notallowed/app/manifests/latest", 403, proxy.CodeDenied},
		{"GET", "/v2/org/app/manifests/latest?ns=ghcr.io", 403, proxy.CodeDenied},
		{"PUT", "/v2/library/alpine/manifests/latest", 405, proxy.CodeUnsupported},
		{"DELETE", "/v2/library/alpine/manifests/" + dig, 405, proxy.CodeUnsupported},
		{"POST", "/v2/library/alpine/blobs/uploads/", 405, proxy.CodeUnsupported},
		{"PATCH", "/v2/library/alpine/blobs/uploads/123", 405, proxy.CodeUnsupported},
		{"GET", "/v2/_catalog", 404, proxy.CodeUnsupported},
		{"GET", "/v2/library/alpine/tags/list", 200, ""},
		{"GET", "/v2/", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path[:min(len(tt.path), 60)], func(t *testing.T) {
			status, body, code, h := s.get(t, tt.method, tt.path)
			if status != tt.status || code != tt.code {
				t.Fatalf("%s %s = %d %s (%s), want %d %s", tt.method, tt.path, status, code, body, tt.status, tt.code)
			}
			if h.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Errorf("missing Docker-Distribution-API-Version header")
			}
		})
	}
	// Nothing above may have created a record or a job.
	if imgs, _ := s.store.Images(""); len(imgs) != 0 {
		t.Fatalf("bad input created records: %+v", imgs)
	}
}

func TestNamespaceEcho(t *testing.T) {
	s := newStack(t, nil)
	_, _, _, h := s.get(t, "GET", "/v2/library/alpine/tags/list?ns=docker.io")
	if got := h.Get("OCI-Namespace"); got != "docker.io" {
		t.Fatalf("OCI-Namespace = %q, want docker.io", got)
	}
}

// TestQuarantineNeverServed tries every way to get a quarantined image's
// content out: by tag, by digest, each blob, with HEAD and Range; then
// after approval it is served, and after revocation refused again.
func TestQuarantineNeverServed(t *testing.T) {
	s := newStack(t, nil)
	img := registrytest.Image(t, 2, 4096, types.OCIManifestSchema1)
	d := s.up.PushImage(t, "library/app:1", img)
	ref := state.Ref{Upstream: "docker.io", Repository: "library/app", Digest: digest.Digest(d.String())}
	layers, _ := img.Layers()
	cfgName, _ := img.ConfigName()
	blobs := []v1.Hash{cfgName}
	for _, l := range layers {
		ld, _ := l.Digest()
		blobs = append(blobs, ld)
	}

	assertRefused := func(when string) {
		t.Helper()
		for _, m := range []string{"GET", "HEAD"} {
			for _, p := range []string{"/v2/library/app/manifests/1", "/v2/app/manifests/" + d.String(), "/v2/docker.io/library/app/manifests/" + d.String()} {
				if status, body, _, _ := s.get(t, m, p); status == 200 {
					t.Fatalf("%s: %s %s served a quarantined manifest: %s", when, m, p, body)
				}
			}
			for _, b := range blobs {
				if status, _, _, _ := s.get(t, m, "/v2/library/app/blobs/"+b.String()); status == 200 || status == 206 {
					t.Fatalf("%s: %s blob %s served from quarantine", when, m, b)
				}
			}
		}
	}

	status, body, code, _ := s.get(t, "GET", "/v2/library/app/manifests/1")
	if status != 403 || code != proxy.CodeDenied || !strings.Contains(string(body), "in quarantine") {
		t.Fatalf("first pull = %d %s, want 403 DENIED in quarantine", status, body)
	}
	assertRefused("pending")
	s.waitState(t, ref, state.StateAwaitingApproval)
	assertRefused("awaiting-approval")
	_, body, _, _ = s.get(t, "GET", "/v2/library/app/manifests/1")
	if !strings.Contains(string(body), "awaiting-approval") {
		t.Fatalf("DENIED message does not name the state: %s", body)
	}

	if _, err := s.engine.Approve(ref, "admin", "test"); err != nil {
		t.Fatal(err)
	}
	status, body, _, h := s.get(t, "GET", "/v2/library/app/manifests/1")
	if status != 200 || h.Get("Docker-Content-Digest") != d.String() || digest.FromBytes(body).String() != d.String() {
		t.Fatalf("approved pull = %d %s", status, h)
	}
	req, _ := http.NewRequest("GET", s.srv.URL+"/v2/library/app/blobs/"+blobs[1].String(), nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	whole, _ := layers[0].Compressed()
	full, _ := io.ReadAll(whole)
	if resp.StatusCode != 206 || string(part) != string(full[10:20]) {
		t.Fatalf("Range request = %d %q, want 206 %q", resp.StatusCode, part, full[10:20])
	}
	// Another repository that never had the image gets none of its blobs.
	if status, _, _, _ := s.get(t, "GET", "/v2/library/other/blobs/"+blobs[1].String()); status == 200 {
		t.Fatal("blob served from a repository whose images do not reference it")
	}

	if _, err := s.engine.Revoke(ref, "admin", "bad"); err != nil {
		t.Fatal(err)
	}
	assertRefused("revoked")
	_, body, _, _ = s.get(t, "GET", "/v2/library/app/manifests/"+d.String())
	if !strings.Contains(string(body), "revoked") {
		t.Fatalf("DENIED message after revoke: %s", body)
	}
}

// TestConcurrentColdPulls: 50 clients pull one uncached image at once;
// the pipeline runs once and every blob is fetched upstream exactly once.
func TestConcurrentColdPulls(t *testing.T) {
	s := newStack(t, func(c *config.Config) {
		c.Gate.Policy = config.PolicyAuto
		c.Gate.Hold = 30 * time.Second
	})
	img := registrytest.Image(t, 3, 64<<10, types.DockerManifestSchema2)
	want := s.up.PushImage(t, "library/busy:1", img)
	s.up.Reset()

	ref, err := name.ParseReference(s.host+"/library/busy:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := remote.Image(ref)
			if err != nil {
				errs <- err
				return
			}
			if d, _ := got.Digest(); d != want {
				errs <- errMismatch(d.String(), want.String())
				return
			}
			ls, err := got.Layers()
			if err != nil {
				errs <- err
				return
			}
			for _, l := range ls {
				rc, err := l.Compressed()
				if err != nil {
					errs <- err
					return
				}
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	cfgName, _ := img.ConfigName()
	layers, _ := img.Layers()
	hashes := []v1.Hash{cfgName}
	for _, l := range layers {
		h, _ := l.Digest()
		hashes = append(hashes, h)
	}
	for _, h := range hashes {
		if n := s.up.CountBlobGETs(h); n != 1 {
			t.Errorf("upstream GETs of blob %s = %d, want exactly 1", h, n)
		}
	}
	if n := s.up.Count("GET", "/v2/library/busy/manifests/"+want.String()); n != 1 {
		t.Errorf("upstream manifest GETs = %d, want 1", n)
	}
}

type mismatch struct{ got, want string }

func (m mismatch) Error() string { return "digest " + m.got + ", want " + m.want }

func errMismatch(got, want string) error { return mismatch{got, want} }

// TestTagMoveAndUpstreamDown: a tag moved upstream keeps serving the last
// approved digest (last-approved mode) while the new one is quarantined;
// strict mode refuses; with the upstream gone, approved content is served.
func TestTagMoveAndUpstreamDown(t *testing.T) {
	for _, mode := range []string{config.TagModeLastApproved, config.TagModeStrict} {
		t.Run(mode, func(t *testing.T) {
			s := newStack(t, func(c *config.Config) { c.Gate.TagMode = mode })
			d1 := s.up.PushImage(t, "library/moving:stable", registrytest.Image(t, 1, 1024, types.DockerManifestSchema2))
			ref1 := state.Ref{Upstream: "docker.io", Repository: "library/moving", Digest: digest.Digest(d1.String())}
			s.get(t, "GET", "/v2/library/moving/manifests/stable")
			s.waitState(t, ref1, state.StateAwaitingApproval)
			if _, err := s.engine.Approve(ref1, "admin", "ok"); err != nil {
				t.Fatal(err)
			}
			d2 := s.up.PushImage(t, "library/moving:stable", registrytest.Image(t, 1, 1024, types.DockerManifestSchema2))
			ref2 := state.Ref{Upstream: "docker.io", Repository: "library/moving", Digest: digest.Digest(d2.String())}
			status, _, _, h := s.get(t, "GET", "/v2/library/moving/manifests/stable")
			switch mode {
			case config.TagModeLastApproved:
				if status != 200 || h.Get("Docker-Content-Digest") != d1.String() {
					t.Fatalf("moved tag = %d %s, want the last approved %s", status, h.Get("Docker-Content-Digest"), d1)
				}
			case config.TagModeStrict:
				if status != 403 {
					t.Fatalf("moved tag in strict mode = %d, want 403", status)
				}
			}
			s.waitState(t, ref2, state.StateAwaitingApproval)

			s.up.Stop()
			status, _, _, h = s.get(t, "GET", "/v2/library/moving/manifests/stable")
			if status != 200 || h.Get("Docker-Content-Digest") != d1.String() {
				t.Fatalf("upstream down: tag = %d %s, want %s", status, h.Get("Docker-Content-Digest"), d1)
			}
			if status, _, _, _ := s.get(t, "GET", "/v2/library/moving/manifests/"+d1.String()); status != 200 {
				t.Fatalf("upstream down: by digest = %d", status)
			}
			// Nothing listens at the upstream's address: 424, which
			// clients do not retry (see upstreamError), naming the cause.
			if status, body, _, _ := s.get(t, "GET", "/v2/library/moving/manifests/never"); status != 424 || !strings.Contains(string(body), "connection refused") {
				t.Fatalf("upstream down, unknown tag = %d %s, want 424 saying the connection was refused", status, body)
			}
			// The tag list shows only tags with an approved digest.
			_, body, _, _ := s.get(t, "GET", "/v2/library/moving/tags/list")
			if !strings.Contains(string(body), `"stable"`) || strings.Contains(string(body), "never") {
				t.Fatalf("tags/list = %s", body)
			}
		})
	}
}

// TestIndexChildren: an approved index covers the platform manifests it
// was fetched with, and only those.
func TestIndexChildren(t *testing.T) {
	s := newStack(t, func(c *config.Config) { c.Gate.Platforms = []string{"linux/arm64"} })
	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64/v8")
	d := s.up.PushIndex(t, "library/multi:1", idx)
	ref := state.Ref{Upstream: "docker.io", Repository: "library/multi", Digest: digest.Digest(d.String())}
	s.get(t, "GET", "/v2/library/multi/manifests/1")
	img := s.waitState(t, ref, state.StateAwaitingApproval)
	if len(img.Manifests) != 1 {
		t.Fatalf("fetched %d platform manifests, want 1 (platform filter)", len(img.Manifests))
	}
	if _, err := s.engine.Approve(ref, "admin", "ok"); err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		status, _, _, _ := s.get(t, "GET", "/v2/library/multi/manifests/"+m.Digest.String())
		arm := m.Platform.Architecture == "arm64"
		if arm && status != 200 {
			t.Errorf("approved index child %s = %d", m.Platform, status)
		}
		if !arm && status == 200 {
			t.Errorf("child %s outside the platform filter was served", m.Platform)
		}
	}
}

// TestSlowUpstream: an upstream that trickles a blob holds nobody longer
// than gate.hold — the pull is answered DENIED (fetching) at once — and
// the image is served once the fetch completes.
func TestSlowUpstream(t *testing.T) {
	s := newStack(t, func(c *config.Config) {
		c.Gate.Policy = config.PolicyAuto
		c.Gate.Hold = 300 * time.Millisecond
	})
	img := registrytest.Image(t, 1, 256<<10, types.OCIManifestSchema1)
	d := s.up.PushImage(t, "library/trickle:1", img)
	s.up.SetBlobRate(128 << 10)
	start := time.Now()
	status, body, code, _ := s.get(t, "GET", "/v2/library/trickle/manifests/1")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("pull held for %s with gate.hold 300ms", took)
	}
	if status != 403 || code != proxy.CodeDenied || !strings.Contains(string(body), "fetching") {
		t.Fatalf("pull during a slow fetch = %d %s", status, body)
	}
	ref := state.Ref{Upstream: "docker.io", Repository: "library/trickle", Digest: digest.Digest(d.String())}
	s.waitState(t, ref, state.StateApproved)
	if status, _, _, h := s.get(t, "GET", "/v2/library/trickle/manifests/1"); status != 200 || h.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("after the slow fetch: %d", status)
	}
}
