// Package pullrec gathers pull records: which client pulled which image's
// manifest, and when. The proxy hands every served manifest to a Recorder,
// which aggregates in memory (per image: a GET count, the latest time and
// a bounded list of distinct clients) and writes the aggregate to the
// state store in one transaction per flush interval, so serving never
// waits for a write and never pays a transaction per request.
//
// Memory is bounded: at most maxImages images wait for a flush (reaching
// half of it asks for an early flush), and per image at most pulls.recent
// clients. A record that does not fit is dropped and counted in
// airlock_pull_records_dropped_total; serving goes on regardless.
package pullrec

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// DefaultMaxImages is how many images may wait for a flush at once.
const DefaultMaxImages = 4096

// MaxUserAgent is the most bytes of a User-Agent kept.
const MaxUserAgent = 256

// maxAddr is the most bytes of a client address kept (an IPv6 address
// with a zone fits).
const maxAddr = 64

var (
	dropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "airlock_pull_records_dropped_total",
		Help: "Pull records dropped because too many images waited for a flush (or a failed flush could not be kept).",
	})
	flushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_pull_record_flushes_total",
		Help: "Writes of gathered pull records to the state store, by result (ok, error).",
	}, []string{"result"})
	flushSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "airlock_pull_record_flush_seconds",
		Help:    "Duration of one write of gathered pull records.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
)

// Store is what a Recorder writes to; *state.Store implements it.
type Store interface {
	RecordPulls(batch []state.PullRecord, keep int) error
}

// Recorder gathers pull records and flushes them. A nil *Recorder records
// nothing, so callers need not check whether pull records are enabled.
type Recorder struct {
	store     Store
	keep      int
	interval  time.Duration
	maxImages int
	log       *slog.Logger
	now       func() time.Time

	// kick asks Run for an early flush (capacity 1: asks never block).
	kick chan struct{}
	// flushMu makes flushes run one at a time.
	flushMu sync.Mutex

	// idx is the set of images waiting for a flush; its size is the
	// bound. A record of an image already waiting only reads it (no lock,
	// no shared write); a flush swaps in a new one.
	idx atomic.Pointer[index]
	// shards hold the gathered pulls. A record goes to a random shard: on
	// a hot image many clients at once would otherwise queue on one lock,
	// and a goroutine that parks on a contended mutex waits for the
	// scheduler, which shows in the serving tail (BenchmarkManifestPullRecords).
	// A flush merges the shards.
	shards [shardCount]shard
	// pullers counts client entries across shards, bounded by
	// maxImages*keep: the memory bound of a single batch.
	pullers atomic.Int64
}

// index is a set of images and its size.
type index struct {
	refs sync.Map // state.Ref → struct{}
	n    atomic.Int64
}

// admit adds ref to the set unless it is full; it reports whether ref is
// in the set and how many images the set holds.
func (ix *index) admit(ref state.Ref, max int) (bool, int64) {
	if _, ok := ix.refs.Load(ref); ok {
		return true, ix.n.Load()
	}
	if n := ix.n.Add(1); n > int64(max) {
		ix.n.Add(-1)
		_, ok := ix.refs.Load(ref) // admitted meanwhile by another record
		return ok, n - 1
	}
	if _, loaded := ix.refs.LoadOrStore(ref, struct{}{}); loaded {
		return true, ix.n.Add(-1)
	}
	return true, ix.n.Load()
}

// shardCount is how many shards gather records.
const shardCount = 8

// shard is one part of the batch, on its own cache line.
type shard struct {
	mu      sync.Mutex
	pending map[state.Ref]*entry
	_       [48]byte
}

// entry is one image's pulls since the last flush.
type entry struct {
	pulls   int64
	last    time.Time
	pullers []state.Puller
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithLogger sets the logger for flush failures.
func WithLogger(l *slog.Logger) Option { return func(r *Recorder) { r.log = l } }

// WithMaxImages bounds how many images wait for a flush (default
// DefaultMaxImages).
func WithMaxImages(n int) Option { return func(r *Recorder) { r.maxImages = max(n, 1) } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(r *Recorder) { r.now = now } }

// New returns a Recorder writing to store as cfg says, or nil when pull
// records are disabled. Start it with Run.
func New(store Store, cfg config.Pulls, opts ...Option) *Recorder {
	if !cfg.Enabled {
		return nil
	}
	r := &Recorder{
		store: store, keep: cfg.Recent, interval: cfg.FlushInterval,
		maxImages: DefaultMaxImages, log: slog.Default(), now: time.Now,
		kick: make(chan struct{}, 1),
	}
	r.idx.Store(&index{})
	for i := range r.shards {
		r.shards[i].pending = map[state.Ref]*entry{}
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Record notes one served manifest of ref for the client at remoteAddr
// (an http.Request's RemoteAddr: host:port; the port is dropped) with
// userAgent. head marks a HEAD: it moves last_pulled and the client's
// time but counts no pull. Record never waits for I/O: when the image
// does not fit the batch, the record is dropped and counted.
func (r *Recorder) Record(ref state.Ref, remoteAddr, userAgent string, head bool) {
	if r == nil {
		return
	}
	p := state.Puller{Addr: clientAddr(remoteAddr), UserAgent: CleanUserAgent(userAgent), Last: r.now()}
	n := int64(1)
	if head {
		p.Heads, n = 1, 0
	} else {
		p.Pulls = 1
	}
	if !r.add(ref, n, p.Last, p) {
		dropped.Inc()
	}
}

// add merges pulls of ref into a random shard of the batch. It reports
// false when ref is not waiting yet and the batch is full.
func (r *Recorder) add(ref state.Ref, pulls int64, last time.Time, ps ...state.Puller) bool {
	ok, waiting := r.idx.Load().admit(ref, r.maxImages)
	if !ok {
		return false
	}
	sh := &r.shards[rand.Uint32()%shardCount]
	sh.mu.Lock()
	e := sh.pending[ref]
	if e == nil {
		e = &entry{}
		sh.pending[ref] = e
	}
	e.pulls += pulls
	if last.After(e.last) {
		e.last = last
	}
	for _, p := range ps {
		e.addPuller(p, r.keep, &r.pullers, int64(r.maxImages)*int64(r.keep))
	}
	sh.mu.Unlock()
	if waiting >= int64(r.maxImages+1)/2 {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// addPuller counts p on its client's entry, or adds one; a full list
// gives way to the newer client (the stored list keeps the newest too).
func (e *entry) addPuller(p state.Puller, keep int, count *atomic.Int64, limit int64) {
	for i := range e.pullers {
		q := &e.pullers[i]
		if q.Addr == p.Addr && q.UserAgent == p.UserAgent {
			q.Pulls += p.Pulls
			q.Heads += p.Heads
			if p.Last.After(q.Last) {
				q.Last = p.Last
			}
			return
		}
	}
	if len(e.pullers) < keep {
		if count != nil {
			if count.Load() >= limit {
				return // the batch holds all the clients it may; the pull still counts
			}
			count.Add(1)
		}
		e.pullers = append(e.pullers, p)
		return
	}
	oldest := 0
	for i := range e.pullers {
		if e.pullers[i].Last.Before(e.pullers[oldest].Last) {
			oldest = i
		}
	}
	if len(e.pullers) > 0 && p.Last.After(e.pullers[oldest].Last) {
		e.pullers[oldest] = p
	}
}

// Pending returns how many images wait for a flush.
func (r *Recorder) Pending() int {
	if r == nil {
		return 0
	}
	return int(r.idx.Load().n.Load())
}

// Flush writes what was gathered in one state transaction. On failure the
// records go back into the batch (as far as it has room), to be written
// by the next flush.
func (r *Recorder) Flush() error {
	if r == nil {
		return nil
	}
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	batch := r.take()
	if len(batch) == 0 {
		return nil
	}
	recs := make([]state.PullRecord, 0, len(batch))
	for ref, e := range batch {
		recs = append(recs, state.PullRecord{Ref: ref, Pulls: e.pulls, Last: e.last, Pullers: e.pullers})
	}
	// A stable order: the same batch writes the same way on every engine.
	slices.SortFunc(recs, func(a, b state.PullRecord) int { return strings.Compare(a.Ref.String(), b.Ref.String()) })
	start := time.Now()
	err := r.store.RecordPulls(recs, r.keep)
	flushSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		flushes.WithLabelValues("ok").Inc()
		return nil
	}
	flushes.WithLabelValues("error").Inc()
	lost := 0
	for _, rec := range recs {
		if !r.add(rec.Ref, rec.Pulls, rec.Last, rec.Pullers...) {
			lost++
		}
	}
	dropped.Add(float64(lost))
	return err
}

// take empties the batch and returns it, the shards merged per image.
//
// A record that read the old set and reaches its shard after the shard was
// taken stays there for the next flush; the new set does not count it, so
// the bound can be exceeded by the records in flight at a swap.
func (r *Recorder) take() map[state.Ref]*entry {
	old := r.idx.Swap(&index{})
	batch := make(map[state.Ref]*entry, old.n.Load())
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		part := sh.pending
		sh.pending = make(map[state.Ref]*entry, len(part))
		sh.mu.Unlock()
		for ref, e := range part {
			m := batch[ref]
			if m == nil {
				batch[ref] = e
				continue
			}
			m.pulls += e.pulls
			if e.last.After(m.last) {
				m.last = e.last
			}
			for _, p := range e.pullers {
				m.addPuller(p, r.keep, nil, 0)
			}
		}
	}
	r.pullers.Store(0)
	return batch
}

// Run flushes every flush interval, and early when the batch fills, until
// ctx ends; then it flushes once more, so a graceful stop loses nothing
// served before it. After a failed flush, early flushes wait for the next
// tick: a state database that is down is not asked in a loop.
func (r *Recorder) Run(ctx context.Context) {
	if r == nil {
		return
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	failing := false
	flush := func(why string) {
		if err := r.Flush(); err != nil {
			failing = true
			r.log.Warn("pull records not written; kept for the next flush", "trigger", why, "err", err, "pending_images", r.Pending())
			return
		}
		failing = false
	}
	for {
		select {
		case <-ctx.Done():
			if err := r.Flush(); err != nil {
				r.log.Error("pull records lost at shutdown", "err", err, "images", r.Pending())
			}
			return
		case <-t.C:
			flush("interval")
		case <-r.kick:
			if !failing {
				flush("batch full")
			}
		}
	}
}

// clientAddr is the host of a host:port address, bounded in length.
func clientAddr(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	if len(remote) > maxAddr {
		remote = remote[:maxAddr]
	}
	return remote
}

// CleanUserAgent returns ua without control characters or invalid UTF-8,
// cut to at most MaxUserAgent bytes on a character boundary. What a
// client sends is shown to admins in a terminal: it must not be able to
// move the cursor or fake a line.
func CleanUserAgent(ua string) string {
	clean := len(ua) <= MaxUserAgent
	for i := 0; clean && i < len(ua); i++ {
		if c := ua[i]; c < 0x20 || c >= 0x7f {
			clean = false
		}
	}
	if clean {
		return ua
	}
	var b strings.Builder
	for i, c := range ua {
		if c == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(ua[i:]); size <= 1 {
				continue
			}
		}
		if !unicode.IsPrint(c) {
			continue
		}
		if b.Len()+utf8.RuneLen(c) > MaxUserAgent {
			break
		}
		b.WriteRune(c)
	}
	return b.String()
}
