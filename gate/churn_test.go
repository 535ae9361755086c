package gate_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// denyBlobs answers every blob GET with 403 while n > 0 (n < 0: always),
// as an upstream with a broken permission would: a transient failure.
func denyBlobs(n int32) *faulty {
	f := &faulty{match: isBlobGET, next: http.DefaultTransport, fault: func(r *http.Response) (*http.Response, error) {
		r.Body.Close()
		return &http.Response{StatusCode: 403, Status: "403 Forbidden", Header: http.Header{}, Body: io.NopCloser(strings.NewReader("denied")), Request: r.Request}, nil
	}}
	f.n.Store(n)
	return f
}

// TestTransientFailureWaitsForItsWindow: a job that keeps failing retries
// with backoff, writes one audit entry per distinct transition rather than
// per attempt, and once it gave up, pulls queue it again only after
// gate.retry.max_backoff.
func TestTransientFailureWaitsForItsWindow(t *testing.T) {
	up := registrytest.NewUpstream(t)
	d := up.PushImage(t, "library/denied:1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	p := newPipeline(t, up, t.TempDir(), denyBlobs(1<<30), func(c *config.Config) {
		c.Gate.Retry.MaxAttempts = 5
		c.Gate.Retry.Backoff = 10 * time.Millisecond
		c.Gate.Retry.MaxBackoff = time.Hour
	})
	ref := state.Ref{Upstream: "docker.io", Repository: "library/denied", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "pull"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	img := waitFor(t, p.store, ref, func(i state.Image) bool {
		_, err := p.store.Job(ref)
		return i.State == state.StateFailed && err != nil
	})
	if img.Permanent || img.RetryAt.Before(start.Add(59*time.Minute)) || !strings.Contains(img.Reason, "gave up after 5 attempts") {
		t.Errorf("after giving up: permanent %v, retry at %s (in %s), reason %q", img.Permanent, img.RetryAt, time.Until(img.RetryAt).Round(time.Minute), img.Reason)
	}
	es, _ := p.store.Audit(ref.String(), 0)
	// request, pending->fetching, fetching->failed (x5), failed->fetching (x4).
	if len(es) != 4 {
		for _, e := range es {
			t.Logf("%+v", e)
		}
		t.Fatalf("5 attempts wrote %d audit entries, want 4", len(es))
	}
	for _, e := range es {
		if e.From == state.StateFetching && e.To == state.StateFailed && e.Repeats != 4 {
			t.Errorf("failure entry folds %d repeats, want 4: %+v", e.Repeats, e)
		}
	}
	for i := 0; i < 100; i++ {
		if _, err := p.engine.Request(ref, "pull"); err != nil {
			t.Fatal(err)
		}
	}
	if jobs, _ := p.store.Jobs(); len(jobs) != 0 {
		t.Errorf("pulls within the backoff window queued %d jobs", len(jobs))
	}
	if es2, _ := p.store.Audit(ref.String(), 0); len(es2) != len(es) {
		t.Errorf("pulls within the backoff window wrote %d audit entries", len(es2)-len(es))
	}
}

// TestRescanRunsWaitingJobNow: a rescan of an image waiting out a long
// backoff runs it at once, not at the old retry time.
func TestRescanRunsWaitingJobNow(t *testing.T) {
	up := registrytest.NewUpstream(t)
	d := up.PushImage(t, "library/later:1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	p := newPipeline(t, up, t.TempDir(), denyBlobs(1), func(c *config.Config) {
		c.Gate.Retry.Backoff = time.Hour
		c.Gate.Retry.MaxBackoff = time.Hour
	})
	ref := state.Ref{Upstream: "docker.io", Repository: "library/later", Digest: digest.Digest(d.String())}
	if _, err := p.engine.Request(ref, "pull"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.store, ref, func(i state.Image) bool {
		job, err := p.store.Job(ref)
		return i.State == state.StateFailed && err == nil && time.Until(job.NotBefore) > 50*time.Minute
	})
	start := time.Now()
	if _, err := p.engine.Rescan(ref, "admin:alice", "upstream fixed"); err != nil {
		t.Fatal(err)
	}
	img := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateAwaitingApproval })
	if !img.Fetched() {
		t.Errorf("rescanned image not fetched: %+v", img)
	}
	t.Logf("rescan ran the waiting job in %s", time.Since(start).Round(time.Millisecond))
}

// storeEngine is an engine without steps over a fresh store, for the
// decisions that only touch state.
func storeEngine(t *testing.T, tagMode string) (*gate.Engine, *state.Store) {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := config.Default().Gate
	cfg.TagMode = tagMode
	return gate.New(store, cfg, nil), store
}

func TestRevokeTarget(t *testing.T) {
	const repo, tag = "library/app", "latest"
	dA, dB := digest.FromString("A"), digest.FromString("B")
	tests := []struct {
		name          string
		image         string
		tagMode       string
		allowFallback bool
		approveA      bool
		wantMsg       string
		wantServes    digest.Digest // what the tag serves afterwards; "" for refused
		wantErr       string
	}{
		{name: "by digest falls back", image: "docker.io/" + repo + "@" + string(dB), approveA: true, wantServes: dA},
		{name: "by tag refuses", image: "docker.io/" + repo + ":" + tag, approveA: true,
			wantMsg: "tag latest is refused until a digest newer than " + string(dB) + " is approved"},
		{name: "by tag with fallback", image: "docker.io/" + repo + ":" + tag, approveA: true, allowFallback: true,
			wantMsg: "tag latest now falls back to " + string(dA), wantServes: dA},
		{name: "by tag with nothing to fall back to", image: "docker.io/" + repo + ":" + tag, allowFallback: true,
			wantMsg: "tag latest has no other approved digest to fall back to: it is refused until one is approved"},
		{name: "strict mode never falls back", image: "docker.io/" + repo + ":" + tag, tagMode: config.TagModeStrict, approveA: true, allowFallback: true,
			wantMsg: "tag latest has no other approved digest to fall back to: it is refused until one is approved"},
		{name: "unknown tag", image: "docker.io/" + repo + ":nope", wantErr: "never pulled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode := tt.tagMode
			if mode == "" {
				mode = config.TagModeLastApproved
			}
			e, store := storeEngine(t, mode)
			for _, d := range []digest.Digest{dA, dB} {
				ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: d}
				if _, err := store.RecordTag("docker.io", repo, tag, d, ""); err != nil {
					t.Fatal(err)
				}
				if _, _, err := store.Request(ref, "pull"); err != nil {
					t.Fatal(err)
				}
				if d == dA && !tt.approveA {
					continue
				}
				if _, err := store.Transition(ref, state.Change{To: state.StateApproved, Actor: "admin", Action: "approve"}); err != nil {
					t.Fatal(err)
				}
			}
			target, err := e.ParseTarget(tt.image)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTarget(%s) = %v, want an error with %q", tt.image, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if target.Digest != dB || (target.Tag != "") != strings.Contains(tt.image, ":"+tag) {
				t.Fatalf("ParseTarget(%s) = %+v", tt.image, target)
			}
			img, msg, err := e.RevokeTarget(target, tt.allowFallback, "admin:bob", "CVE-2026-0001")
			if err != nil {
				t.Fatal(err)
			}
			if img.State != state.StateRevoked || msg != tt.wantMsg {
				t.Errorf("RevokeTarget = %s, %q; want revoked, %q", img.State, msg, tt.wantMsg)
			}
			tg, err := store.Tag("docker.io", repo, tag)
			if err != nil {
				t.Fatal(err)
			}
			served, ok, err := e.TagServes(tg)
			if err != nil {
				t.Fatal(err)
			}
			var got digest.Digest
			if ok {
				got = served.Digest
			}
			if got != tt.wantServes {
				t.Errorf("tag serves %q after the revoke, want %q", got, tt.wantServes)
			}
		})
	}
}

// TestAuditRetentionPrunesAtStart: an engine with audit bounds prunes as
// soon as it runs, and keeps admin actions.
func TestAuditRetentionPrunesAtStart(t *testing.T) {
	store, err := state.Open(filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := 0; i < 30; i++ {
		actor := "pull"
		if i%10 == 0 {
			actor = "admin:alice"
		}
		if err := store.Record(state.Entry{Actor: actor, Image: fmt.Sprintf("docker.io/x@%d", i), Action: "note"}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	e := gate.New(store, cfg.Gate, nil, gate.WithAuditRetention(config.Audit{MaxAge: cfg.Audit.MaxAge, MaxEntries: 5, PruneInterval: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := store.AuditCount()
		if err != nil {
			t.Fatal(err)
		}
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log holds %d entries 10s after start, want 5", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	es, _ := store.Audit("", 0)
	admins := 0
	for _, e := range es {
		if state.IsAdminActor(e.Actor) {
			admins++
		}
	}
	if admins != 3 {
		t.Errorf("%d admin entries kept, want all 3", admins)
	}
}
