package gate_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// corruptFirst flips a byte in the first n blob bodies it carries, as a
// broken network or a hostile upstream would.
type corruptFirst struct {
	n    atomic.Int32
	next http.RoundTripper
}

func (c *corruptFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || resp.StatusCode != 200 {
		return resp, err
	}
	if c.n.Add(-1) < 0 {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	body[len(body)/2] ^= 0xff
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

type pipeline struct {
	up      *registrytest.Upstream
	store   *state.Store
	content *content.Store
	engine  *gate.Engine
	stop    func()
}

func newPipeline(t *testing.T, up *registrytest.Upstream, dir string, rt http.RoundTripper, edit func(*config.Config)) *pipeline {
	t.Helper()
	return buildPipeline(t, up, dir, rt, nil, edit)
}

// buildPipeline wires the real steps; with a scanner the scan step runs
// between fetch and policy.
func buildPipeline(t *testing.T, up *registrytest.Upstream, dir string, rt http.RoundTripper, sc gate.Scanner, edit func(*config.Config)) *pipeline {
	t.Helper()
	return assemble(t, up, dir, rt, sc, nil, edit)
}

// buildSigningPipeline is buildPipeline with the sign step.
func buildSigningPipeline(t *testing.T, up *registrytest.Upstream, dir string, signer *sign.Signer, edit func(*config.Config)) *pipeline {
	t.Helper()
	return assemble(t, up, dir, nil, nil, signer, edit)
}

func assemble(t *testing.T, up *registrytest.Upstream, dir string, rt http.RoundTripper, sc gate.Scanner, signer *sign.Signer, edit func(*config.Config)) *pipeline {
	t.Helper()
	cfg := config.Default()
	cfg.Upstreams = []config.Upstream{{Name: "docker.io", URL: up.URL(), Insecure: true, Default: true}}
	cfg.Gate.Retry.Backoff = 20 * time.Millisecond
	cfg.Gate.Policy = config.PolicyManual
	cfg.Gate.Retry.MaxBackoff = 100 * time.Millisecond
	if edit != nil {
		edit(cfg)
	}
	store, err := state.Open(filepath.Join(dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := content.New(context.Background(), "filesystem", map[string]any{"rootdirectory": filepath.Join(dir, "content")})
	if err != nil {
		t.Fatal(err)
	}
	var opts []upstream.Option
	if rt != nil {
		opts = append(opts, upstream.WithTransport(rt))
	}
	ups, err := upstream.NewSet(cfg.Upstreams, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if sc != nil {
		cfg.Gate.Policy = config.PolicyScan
	}
	steps, err := gate.Pipeline(cfg, ups, cs, store, sc, signer)
	if err != nil {
		t.Fatal(err)
	}
	engine := gate.New(store, cfg.Gate, steps, gate.WithRescanFailure(cfg.Scan.OnRescanFail))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); engine.Run(ctx) }()
	var once sync.Once
	p := &pipeline{up: up, store: store, content: cs, engine: engine}
	p.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			store.Close()
		})
	}
	t.Cleanup(p.stop)
	return p
}

func waitFor(t *testing.T, store *state.Store, ref state.Ref, ok func(state.Image) bool) state.Image {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		img, err := store.Image(ref)
		if err == nil && ok(img) {
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: gave up waiting; state %q: %s", ref, img.State, img.Reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCorruptBlobIsRetriedAndNeverStored(t *testing.T) {
	up := registrytest.NewUpstream(t)
	img := registrytest.Image(t, 1, 8192, types.DockerManifestSchema2)
	d := up.PushImage(t, "library/flaky:1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	cfgName, _ := img.ConfigName()
	rt := &corruptFirst{next: http.DefaultTransport}
	rt.n.Store(2) // config and layer are both corrupted once
	// Slow retries so the failed state can be observed before the retry.
	p := newPipeline(t, up, t.TempDir(), rt, func(c *config.Config) {
		c.Gate.Retry.Backoff = 300 * time.Millisecond
		c.Gate.Workers = 1
	})
	ref := state.Ref{Upstream: "docker.io", Repository: "library/flaky", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	failed := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateFailed })
	if !strings.Contains(failed.Reason, "fetch failed") || failed.Attempts != 1 {
		t.Fatalf("failed record: attempts %d, reason %q", failed.Attempts, failed.Reason)
	}
	// A blob may be stored by now, but only with bytes that match its digest.
	for _, h := range []string{ld.String(), cfgName.String()} {
		rc, _, err := p.content.Open(context.Background(), digest.Digest(h))
		if errors.Is(err, content.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := digest.FromReader(rc)
		rc.Close()
		if err != nil || got.String() != h {
			t.Fatalf("corrupt content stored under %s (hashes to %s, %v)", h, got, err)
		}
	}
	done := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateAwaitingApproval })
	if done.Attempts < 1 || len(done.Blobs) != 2 {
		t.Fatalf("after retry: %+v", done)
	}
	entries, _ := p.store.Audit(ref.String(), 0)
	sawFailed := false
	for _, e := range entries {
		sawFailed = sawFailed || e.To == state.StateFailed
	}
	if !sawFailed {
		t.Fatal("audit log has no failed transition")
	}
	if jobs, _ := p.store.Jobs(); len(jobs) != 0 {
		t.Fatalf("queue not empty after success: %+v", jobs)
	}
}

func TestPermanentFailureIsNotRetried(t *testing.T) {
	up := registrytest.NewUpstream(t)
	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x", "linux/ppc64le", "linux/386")
	d := up.PushIndex(t, "library/big:1", idx)
	p := newPipeline(t, up, t.TempDir(), nil, func(c *config.Config) { c.Limits.MaxManifestBytes = 1024 })
	ref := state.Ref{Upstream: "docker.io", Repository: "library/big", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	img := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateFailed })
	if !strings.Contains(img.Reason, "max_manifest_bytes") {
		t.Fatalf("reason %q does not name the limit", img.Reason)
	}
	if jobs, _ := p.store.Jobs(); len(jobs) != 0 {
		t.Fatalf("permanent failure left a job queued: %+v", jobs)
	}
	if !img.Permanent {
		t.Errorf("a permanent failure is not marked permanent: %+v", img)
	}
	// Pulls, however many, never queue it again: no jobs, no audit entries.
	for i := 0; i < 100; i++ {
		if _, err := p.engine.Request(ref, "pull"); err != nil {
			t.Fatal(err)
		}
	}
	if jobs, _ := p.store.Jobs(); len(jobs) != 0 {
		t.Fatalf("pulls after a permanent failure queued %d jobs, want none", len(jobs))
	}
	if es, _ := p.store.Audit(ref.String(), 0); len(es) != 3 {
		t.Errorf("audit holds %d entries, want 3 (request, fetching, failed): %+v", len(es), es)
	}
	// An admin's rescan does queue it: it runs, and fails the same way.
	if _, err := p.engine.Rescan(ref, "admin:alice", "limit raised"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.store, ref, func(i state.Image) bool {
		es, _ := p.store.Audit(ref.String(), 1)
		return i.State == state.StateFailed && len(es) == 1 && es[0].To == state.StateFailed
	})
}

// TestRestartResumesJob stops the engine in the middle of a slow fetch;
// an engine started on the same files finishes the job by itself.
func TestRestartResumesJob(t *testing.T) {
	up := registrytest.NewUpstream(t)
	img := registrytest.Image(t, 1, 512<<10, types.OCIManifestSchema1)
	d := up.PushImage(t, "library/slow:1", img)
	up.SetBlobRate(128 << 10)
	dir := t.TempDir()
	p := newPipeline(t, up, dir, nil, nil)
	ref := state.Ref{Upstream: "docker.io", Repository: "library/slow", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for up.BlobBytesServed() < 64<<10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.stop()
	up.SetBlobRate(0)

	p2 := newPipeline(t, up, dir, nil, nil)
	got := waitFor(t, p2.store, ref, func(i state.Image) bool { return i.State == state.StateAwaitingApproval })
	if !got.Fetched() {
		t.Fatalf("resumed image not fetched: %+v", got)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	if n, err := p2.content.Stat(context.Background(), digest.Digest(ld.String())); err != nil || n != size {
		t.Fatalf("layer after resume: %d, %v", n, err)
	}
}

func TestAdminDecisions(t *testing.T) {
	up := registrytest.NewUpstream(t)
	d := up.PushImage(t, "library/adm:1", registrytest.Image(t, 1, 1024, types.DockerManifestSchema2))
	p := newPipeline(t, up, t.TempDir(), nil, nil)
	ref := state.Ref{Upstream: "docker.io", Repository: "library/adm", Digest: digest.Digest(d.String())}

	if _, err := p.engine.Approve(ref, "admin", ""); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("approve unknown image: %v", err)
	}
	if _, err := p.engine.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateAwaitingApproval })
	if _, err := p.engine.Approve(ref, "admin:alice", "reviewed"); err != nil {
		t.Fatal(err)
	}
	// A rescan of an approved image keeps it approved under the manual policy.
	if _, err := p.engine.Rescan(ref, "admin:alice", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.store, ref, func(state.Image) bool {
		jobs, _ := p.store.Jobs()
		return len(jobs) == 0
	})
	if img, _ := p.store.Image(ref); img.State != state.StateApproved || img.ApprovedBy != "admin:alice" {
		t.Fatalf("after rescan: %s by %q", img.State, img.ApprovedBy)
	}
	if _, err := p.engine.Revoke(ref, "admin:bob", "CVE"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.engine.Revoke(ref, "admin:bob", "again"); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("revoking twice: %v", err)
	}
	// A rescan of a revoked image runs the whole pipeline again.
	if _, err := p.engine.Rescan(ref, "admin:bob", "fixed upstream"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateAwaitingApproval })
	entries, _ := p.store.Audit(ref.String(), 0)
	var actions []string
	for i := len(entries) - 1; i >= 0; i-- {
		actions = append(actions, entries[i].Actor+":"+entries[i].Action)
	}
	joined := strings.Join(actions, " ")
	for _, want := range []string{"test:request", "admin:alice:approve", "admin:alice:rescan", "admin:bob:revoke", "admin:bob:rescan"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit trail %q lacks %q", joined, want)
		}
	}
	// Tags are recorded by the proxy; the engine alone never saw this one.
	if _, err := p.engine.ParseImage("docker.io/library/adm:1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("ParseImage of an unseen tag: %v", err)
	}
}
