package watch

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

const upName = "upstream.test"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// storeGate queues through the state store as the gate does, and counts.
type storeGate struct {
	store *state.Store
	mu    sync.Mutex
	asked []state.Ref
}

func (g *storeGate) Request(ref state.Ref, actor string) (state.Image, error) {
	g.mu.Lock()
	g.asked = append(g.asked, ref)
	g.mu.Unlock()
	if actor != ActorWatch {
		panic("actor " + actor)
	}
	img, _, err := g.store.Request(ref, actor)
	return img, err
}

func (g *storeGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.asked)
}

type fixture struct {
	up    *registrytest.Upstream
	store *state.Store
	gate  *storeGate
	sched *Scheduler
	def   Definition
}

func newFixture(t *testing.T, upURL string, up *registrytest.Upstream, w config.Watch) *fixture {
	t.Helper()
	cfg := config.Default()
	cfg.Upstreams = []config.Upstream{{Name: upName, URL: upURL, Insecure: true, Default: true}}
	cfg.Watch = []config.Watch{w}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ups, err := upstream.NewSet(cfg.Upstreams)
	if err != nil {
		t.Fatal(err)
	}
	g := &storeGate{store: store}
	s, err := New(cfg, store, g, ups, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defs, err := s.Definitions()
	if err != nil || len(defs) != 1 {
		t.Fatalf("definitions %v, %v", defs, err)
	}
	return &fixture{up: up, store: store, gate: g, sched: s, def: defs[0]}
}

func push(t *testing.T, up *registrytest.Upstream, repo string, tags ...string) digest.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	var h v1.Hash
	for _, tag := range tags {
		h = up.PushImage(t, repo+":"+tag, img)
	}
	return digest.Digest(h.String())
}

func manifestGETs(up *registrytest.Upstream) int {
	n := 0
	for _, r := range up.Requests() {
		if r.Method == http.MethodGet && strings.Contains(r.Path, "/manifests/") {
			n++
		}
	}
	return n
}

func TestRunOnceQueuesMatchingTagsWithHEAD(t *testing.T) {
	up := registrytest.NewUpstream(t)
	d127 := push(t, up, "team/app", "1.27.0", "1.27")
	d128 := push(t, up, "team/app", "1.28.1")
	push(t, up, "team/app", "2.0.0", "latest", "1.29.0-rc.1", "1.28-alpine")
	f := newFixture(t, up.URL(), up, config.Watch{Image: upName + "/team/app", Tags: []string{"semver:>=1.27 <2"}, Interval: time.Hour})
	up.Reset()

	st := f.sched.RunOnce(context.Background(), f.def)
	if st.Error != "" {
		t.Fatalf("run: %s", st.Error)
	}
	if st.Listed != 7 || st.Matched != 3 || st.Queued != 2 || st.Deferred != 0 {
		t.Errorf("status %+v", st)
	}
	// Newest first.
	if len(st.Tags) != 3 || st.Tags[0].Tag != "1.28.1" || st.Tags[0].Digest != d128 {
		t.Errorf("tags %+v", st.Tags)
	}
	if n := manifestGETs(up); n != 0 {
		t.Errorf("the watch sent %d manifest GETs; tag checks use HEAD", n)
	}
	for _, tag := range []string{"1.27.0", "1.27", "1.28.1"} {
		if n := up.Count(http.MethodHead, "/v2/team/app/manifests/"+tag); n != 1 {
			t.Errorf("HEAD %s: %d", tag, n)
		}
	}
	// Recorded as a pull records it: the tag's history and the image's tags.
	tg, err := f.store.Tag(upName, "team/app", "1.27")
	if cur, ok := tg.Current(); err != nil || !ok || cur.Digest != d127 {
		t.Errorf("tag 1.27: %+v, %v", tg, err)
	}
	img, err := f.store.Image(state.Ref{Upstream: upName, Repository: "team/app", Digest: d127})
	if err != nil || img.State != state.StatePending || len(img.Tags) != 2 {
		t.Errorf("image %+v, %v", img, err)
	}
	// Nothing new: nothing queued again.
	st = f.sched.RunOnce(context.Background(), f.def)
	if st.Queued != 0 || f.gate.count() != 2 {
		t.Errorf("second run queued %d (gate asked %d times)", st.Queued, f.gate.count())
	}
}

func TestRunOnceMovedTagAndMaxNewPerRun(t *testing.T) {
	up := registrytest.NewUpstream(t)
	push(t, up, "team/app", "v1")
	f := newFixture(t, up.URL(), up, config.Watch{Image: upName + "/team/app", Tags: []string{"v*", "regex:rel-[0-9]+"}, Interval: time.Hour, MaxNewPerRun: 2})
	approve := func() {
		t.Helper()
		imgs, err := f.store.Images(state.StatePending)
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs {
			if _, err := f.store.Transition(img.Ref, state.Change{To: state.StateApproved, Actor: "test", Action: "approve"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := f.sched.RunOnce(context.Background(), f.def); st.Queued != 1 {
		t.Fatalf("first run %+v", st)
	}
	approve()
	// The tag moves; four more tags appear.
	moved := push(t, up, "team/app", "v1")
	for _, tag := range []string{"v2", "v3", "rel-1", "rel-2"} {
		push(t, up, "team/app", tag)
	}
	st := f.sched.RunOnce(context.Background(), f.def)
	if st.Queued != 2 || st.Deferred != 3 {
		t.Fatalf("run with 5 new digests and max_new_per_run 2: %+v", st)
	}
	// Still running (pending): the next run starts none.
	if st := f.sched.RunOnce(context.Background(), f.def); st.Queued != 0 || st.Deferred != 3 {
		t.Fatalf("run while 2 are in the pipeline: %+v", st)
	}
	approve()
	if st := f.sched.RunOnce(context.Background(), f.def); st.Queued != 2 || st.Deferred != 1 {
		t.Fatalf("run after they finished: %+v", st)
	}
	approve()
	if st := f.sched.RunOnce(context.Background(), f.def); st.Queued != 1 || st.Deferred != 0 {
		t.Fatalf("last run: %+v", st)
	}
	tg, _ := f.store.Tag(upName, "team/app", "v1")
	if cur, _ := tg.Current(); cur.Digest != moved || len(tg.History) != 2 {
		t.Errorf("tag v1 %+v, want moved to %s", tg, moved)
	}
}

// throttled429 fronts up: the first n requests whose path contains match
// get 429 with Retry-After.
func throttled429(t *testing.T, up *registrytest.Upstream, match string, n int32, retryAfter string) (*httptest.Server, *atomic.Int32, *[]time.Time) {
	target, _ := url.Parse(up.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	var left atomic.Int32
	left.Store(n)
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, match) {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			if left.Add(-1) >= 0 {
				w.Header().Set("Retry-After", retryAfter)
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &left, &times
}

func TestRunOnceHonours429(t *testing.T) {
	up := registrytest.NewUpstream(t)
	d := push(t, up, "team/app", "v1")
	front, _, times := throttled429(t, up, "/tags/list", 1, "1")
	f := newFixture(t, front.URL, up, config.Watch{Image: upName + "/team/app", Tags: []string{"v1"}, Interval: time.Hour})
	start := time.Now()
	st := f.sched.RunOnce(context.Background(), f.def)
	if st.Error != "" || st.Queued != 1 || st.Tags[0].Digest != d {
		t.Fatalf("run through a 429: %+v", st)
	}
	if len(*times) != 2 {
		t.Errorf("the tags list was asked %d times, want 2 (429, then after Retry-After)", len(*times))
	}
	if took := time.Since(start); took < 950*time.Millisecond {
		t.Errorf("run took %s; Retry-After said 1s", took)
	}
}

func TestRunOnce429OnHEADWaitsCoolDown(t *testing.T) {
	up := registrytest.NewUpstream(t)
	push(t, up, "team/app", "v1", "v2")
	// Retry-After longer than a resolution's own 15s budget: the HEAD
	// comes back with the 429, the run waits for the cool-down and goes on.
	front, _, times := throttled429(t, up, "/manifests/", 1, "2")
	f := newFixture(t, front.URL, up, config.Watch{Image: upName + "/team/app", Tags: []string{"v*"}, Interval: time.Hour})
	start := time.Now()
	st := f.sched.RunOnce(context.Background(), f.def)
	if st.Error != "" || st.Queued != 1 || len(st.Tags) != 2 {
		t.Fatalf("run (two tags of one digest): %+v", st)
	}
	if took := time.Since(start); took < 1900*time.Millisecond {
		t.Errorf("run took %s; Retry-After said 2s", took)
	}
	if n := len(*times); n != 3 {
		t.Errorf("manifest requests %d, want 3 (429, retry, second tag)", n)
	}
}

func TestSchedulerRunsDueWatchesOnceAcrossReplicas(t *testing.T) {
	up := registrytest.NewUpstream(t)
	push(t, up, "team/app", "v1")
	db, err := kv.OpenBolt(filepath.Join(t.TempDir(), "shared.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := config.Default()
	cfg.Upstreams = []config.Upstream{{Name: upName, URL: up.URL(), Insecure: true, Default: true}}
	cfg.Watch = []config.Watch{{Image: upName + "/team/app", Tags: []string{"v1"}, Interval: time.Hour}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ups, err := upstream.NewSet(cfg.Upstreams)
	if err != nil {
		t.Fatal(err)
	}
	// Two "replicas" on one store, each with its own lease owner.
	var scheds []*Scheduler
	var gates []*storeGate
	for _, owner := range []string{"replica-a", "replica-b"} {
		st, err := state.New(db, state.WithOwner(owner))
		if err != nil {
			t.Fatal(err)
		}
		g := &storeGate{store: st}
		s, err := New(cfg, st, g, ups, WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		scheds, gates = append(scheds, s), append(gates, g)
	}
	up.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range scheds {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := scheds[0].store.WatchStatus(upName + "/team/app"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch did not run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a second run would happen now
	cancel()
	wg.Wait()
	if n := up.Count(http.MethodGet, "/v2/team/app/tags/list"); n != 1 {
		t.Errorf("tags listed %d times by two replicas, want once per interval", n)
	}
	if a, b := gates[0].count(), gates[1].count(); a+b != 1 {
		t.Errorf("queued %d + %d times", a, b)
	}
	list, err := scheds[1].List()
	if err != nil || len(list) != 1 || list[0].Status == nil || list[0].Status.Queued != 1 || list[0].NextRun.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("list %+v, %v", list, err)
	}
}

func TestAddRemove(t *testing.T) {
	up := registrytest.NewUpstream(t)
	f := newFixture(t, up.URL(), up, config.Watch{Image: upName + "/team/app", Tags: []string{"v1"}})
	if _, err := f.sched.Add(config.Watch{Image: upName + "/team/app", Tags: []string{"v2"}}, "admin"); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("adding a configured watch: %v", err)
	}
	if err := f.sched.Remove(upName+"/team/app", "admin"); err == nil {
		t.Error("removed a configured watch")
	}
	for _, bad := range []config.Watch{
		{Image: "nowhere.test/x", Tags: []string{"v1"}},
		{Image: upName + "/x", Tags: nil},
		{Image: upName + "/x", Tags: []string{"regex:("}},
		{Image: upName + "/x:v1", Tags: []string{"v1"}},
		{Image: upName + "/x", Tags: []string{"v1"}, Interval: time.Millisecond},
	} {
		if _, err := f.sched.Add(bad, "admin"); err == nil {
			t.Errorf("added %+v", bad)
		}
	}
	d, err := f.sched.Add(config.Watch{Image: upName + "/team/other", Tags: []string{"semver:^1"}}, "admin:alice")
	if err != nil {
		t.Fatal(err)
	}
	if d.Interval != config.DefaultWatchInterval || d.MaxNewPerRun != config.DefaultWatchMaxNewPerRun || d.Source != SourceAPI || d.CreatedBy != "admin:alice" {
		t.Errorf("added %+v", d)
	}
	list, err := f.sched.List()
	if err != nil || len(list) != 2 || list[0].Source != SourceConfig || list[1].Image != upName+"/team/other" {
		t.Fatalf("list %+v, %v", list, err)
	}
	if err := f.sched.Remove(upName+"/team/other", "admin"); err != nil {
		t.Fatal(err)
	}
	if list, _ := f.sched.List(); len(list) != 1 {
		t.Errorf("after remove %+v", list)
	}
}
