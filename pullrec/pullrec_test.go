package pullrec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// fakeStore adds batches up as the state store does.
type fakeStore struct {
	mu      sync.Mutex
	fail    error
	flushes int
	count   map[state.Ref]int64
	last    map[state.Ref]time.Time
	pullers map[state.Ref][]state.Puller
}

func newFake() *fakeStore {
	return &fakeStore{count: map[state.Ref]int64{}, last: map[state.Ref]time.Time{}, pullers: map[state.Ref][]state.Puller{}}
}

func (f *fakeStore) RecordPulls(batch []state.PullRecord, keep int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.flushes++
	for _, r := range batch {
		f.count[r.Ref] += r.Pulls
		if r.Last.After(f.last[r.Ref]) {
			f.last[r.Ref] = r.Last
		}
		f.pullers[r.Ref] = state.MergePullers(f.pullers[r.Ref], r.Pullers, keep)
	}
	return nil
}

func (f *fakeStore) total() (n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.count {
		n += c
	}
	return n
}

func ref(i int) state.Ref {
	return state.Ref{Upstream: "docker.io", Repository: "library/app", Digest: digest.FromString(fmt.Sprint(i))}
}

func cfg(recent int, interval time.Duration) config.Pulls {
	return config.Pulls{Enabled: true, Recent: recent, FlushInterval: interval}
}

func TestDisabledIsNil(t *testing.T) {
	r := New(newFake(), config.Pulls{})
	if r != nil {
		t.Fatal("New with pull records disabled returned a recorder")
	}
	// Every method is safe on nil.
	r.Record(ref(1), "1.2.3.4:5", "ua", false)
	if err := r.Flush(); err != nil || r.Pending() != 0 {
		t.Fatal(err)
	}
	r.Run(context.Background())
}

func TestAggregatesPerImageAndClient(t *testing.T) {
	f := newFake()
	r := New(f, cfg(3, time.Hour))
	for i := range 5 {
		r.Record(ref(1), "10.0.0.1:4000", "containerd/1.7", false)
		r.Record(ref(1), fmt.Sprintf("10.0.0.1:%d", 5000+i), "containerd/1.7", true) // another port: the same node
	}
	r.Record(ref(1), "[fd00::2]:443", "docker/27", false)
	r.Record(ref(2), "10.0.0.3:1", "podman/5", true)
	if r.Pending() != 2 {
		t.Fatalf("pending %d images, want 2", r.Pending())
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if f.count[ref(1)] != 6 || f.count[ref(2)] != 0 {
		t.Errorf("counts %d, %d: want 6 GETs and a HEAD that counts none", f.count[ref(1)], f.count[ref(2)])
	}
	if f.last[ref(2)].IsZero() {
		t.Error("a HEAD did not move last_pulled")
	}
	ps := f.pullers[ref(1)]
	if len(ps) != 2 {
		t.Fatalf("pullers %v, want one per client", ps)
	}
	for _, p := range ps {
		switch p.Addr {
		case "10.0.0.1":
			if p.Pulls != 5 || p.Heads != 5 || p.UserAgent != "containerd/1.7" {
				t.Errorf("10.0.0.1: %+v", p)
			}
		case "fd00::2":
			if p.Pulls != 1 {
				t.Errorf("fd00::2: %+v", p)
			}
		default:
			t.Errorf("unexpected client %+v", p)
		}
	}
	if r.Pending() != 0 {
		t.Errorf("pending after flush: %d", r.Pending())
	}
}

func TestBounds(t *testing.T) {
	f := newFake()
	now := time.Unix(1_700_000_000, 0)
	r := New(f, cfg(4, time.Hour), WithMaxImages(8), WithClock(func() time.Time { now = now.Add(time.Second); return now }))
	before := testutil.ToFloat64(dropped)
	// Many clients of one image: the list stays at recent, the count is whole.
	for i := range 100 {
		r.Record(ref(0), fmt.Sprintf("10.0.%d.%d:1", i/250, i%250), strings.Repeat("x", i), false)
	}
	// More images than the batch holds: the rest are dropped and counted.
	for i := 1; i < 20; i++ {
		r.Record(ref(i), "10.1.0.1:1", "ua", false)
	}
	if got := r.Pending(); got != 8 {
		t.Errorf("pending %d images, want the bound 8", got)
	}
	if d := testutil.ToFloat64(dropped) - before; d != 12 {
		t.Errorf("dropped %v records, want 12", d)
	}
	// Look at the batch as a flush sees it (this empties it).
	e := r.take()[ref(0)]
	if len(e.pullers) != 4 || e.pulls != 100 {
		t.Errorf("image 0: %d pullers, %d pulls; want 4 and 100", len(e.pullers), e.pulls)
	}
	for _, p := range e.pullers {
		if len(p.UserAgent) < 96 {
			t.Errorf("an older client %q was kept over a newer one", p.Addr)
		}
	}
	// A long user agent is cut.
	r.Record(ref(0), "10.9.9.9:1", strings.Repeat("y", 1000), false)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.pullers[ref(0)] {
		if len(p.UserAgent) > MaxUserAgent {
			t.Errorf("user agent of %d bytes stored", len(p.UserAgent))
		}
	}
}

func TestCleanUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"containerd/1.7.24":                  "containerd/1.7.24",
		"docker/27.0 go/go1.22 (linux)":      "docker/27.0 go/go1.22 (linux)",
		"evil\r\n\x1b[31mroot\x07":           "evil[31mroot",
		"tab\there":                          "tabhere",
		"bidi\u202egnp.exe":                  "bidignp.exe",
		"line\u2028sep":                      "linesep",
		"bad utf8 \xff\xfe end":              "bad utf8  end",
		"ünïcödé ok":                         "ünïcödé ok",
		strings.Repeat("a", 255) + "é":       strings.Repeat("a", 255),
		strings.Repeat("b", MaxUserAgent+10): strings.Repeat("b", MaxUserAgent),
		"":                                   "",
		"\x00":                               "",
		"podman/5.4.0 (" + strings.Repeat("z", 3) + ")": "podman/5.4.0 (zzz)",
	} {
		if got := CleanUserAgent(in); got != want {
			t.Errorf("CleanUserAgent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFailedFlushKeepsRecords(t *testing.T) {
	f := newFake()
	r := New(f, cfg(5, time.Hour), WithMaxImages(4))
	for i := range 3 {
		r.Record(ref(i), "10.0.0.1:1", "ua", false)
	}
	f.fail = errors.New("database down")
	if err := r.Flush(); err == nil {
		t.Fatal("flush against a failing store succeeded")
	}
	if r.Pending() != 3 {
		t.Fatalf("after a failed flush %d images pending, want 3", r.Pending())
	}
	r.Record(ref(0), "10.0.0.2:1", "ua", false)
	f.fail = nil
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if f.count[ref(0)] != 2 || f.count[ref(1)] != 1 || len(f.pullers[ref(0)]) != 2 {
		t.Errorf("after recovery: counts %v, pullers %v", f.count, f.pullers[ref(0)])
	}
}

// TestConcurrentRecordAndFlush records from many goroutines while flushes
// run (with -race): every GET arrives exactly once.
func TestConcurrentRecordAndFlush(t *testing.T) {
	f := newFake()
	r := New(f, cfg(20, time.Millisecond), WithMaxImages(1<<20))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	const workers, each = 16, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r.Record(ref(i%50), fmt.Sprintf("10.0.0.%d:%d", w, i), "ua", i%7 == 0)
			}
		}()
	}
	wg.Wait()
	cancel()
	<-done
	var want int64
	for i := range each {
		if i%7 != 0 {
			want++
		}
	}
	want *= workers
	if got := f.total(); got != want {
		t.Errorf("flushed %d pulls, want %d", got, want)
	}
	if r.Pending() != 0 {
		t.Errorf("%d images left after Run returned", r.Pending())
	}
	if f.flushes < 2 {
		t.Errorf("only %d flushes: Run did not flush on its interval", f.flushes)
	}
	for ref, ps := range f.pullers {
		if len(ps) > 16 {
			t.Errorf("%s: %d pullers for 16 clients", ref, len(ps))
		}
	}
}

// TestShutdownFlush: records gathered before Run's context ends are
// written before Run returns, even with a long interval.
func TestShutdownFlush(t *testing.T) {
	f := newFake()
	r := New(f, cfg(20, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for i := range 10 {
		r.Record(ref(i), "10.0.0.1:1", "ua", false)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := f.total(); got != 10 {
		t.Errorf("flushed %d pulls at shutdown, want 10", got)
	}
}

// TestEarlyFlush: a batch at half its bound is flushed before the interval.
func TestEarlyFlush(t *testing.T) {
	f := newFake()
	r := New(f, cfg(20, time.Hour), WithMaxImages(10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	for i := range 5 {
		r.Record(ref(i), "10.0.0.1:1", "ua", false)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.total() != 5 {
		if time.Now().After(deadline) {
			t.Fatal("a half-full batch was not flushed early")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkRecord is the cost pull records add to a served manifest: one
// Record call, from parallel clients, on a few hot images.
func BenchmarkRecord(b *testing.B) {
	r := New(newFake(), cfg(20, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	refs := []state.Ref{ref(0), ref(1), ref(2), ref(3)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(refs[i%len(refs)], "10.0.0.1:40000", "containerd/1.7.24 (linux; amd64)", false)
			i++
		}
	})
}
