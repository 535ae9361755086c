package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

var (
	bytesFreed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "airlock_gc_bytes_freed_total",
		Help: "Bytes of content the garbage collector deleted.",
	})
	blobsFreed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "airlock_gc_blobs_freed_total",
		Help: "Blobs (and manifests) the garbage collector deleted.",
	})
	gcDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "airlock_gc_duration_seconds",
		Help:    "Duration of retention and garbage collection runs (dry runs excluded).",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
	})
	imagesPurged = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_retention_images_purged_total",
		Help: "Images purged by retention, by rule.",
	}, []string{"rule"})
	contentBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "airlock_content_bytes",
		Help: "Bytes in the content store, as of the last garbage collection.",
	})
	contentBlobs = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "airlock_content_blobs",
		Help: "Blobs (and manifests) in the content store, as of the last garbage collection.",
	})
)

// ErrBusy is returned when another retention and GC run holds the lease.
var ErrBusy = errors.New("another garbage collection is running")

// Result is what one run did (or, in a dry run, would do).
type Result struct {
	DryRun  bool      `json:"dry_run"`
	Started time.Time `json:"started"`
	// DurationSeconds is how long the run took.
	DurationSeconds float64 `json:"duration_seconds"`
	// Purges lists the images retention purged (would purge).
	Purges []Purge `json:"purges"`
	// Skipped lists planned purges that were not applied, and why (the
	// image was pinned, pulled or queued meanwhile).
	Skipped []string `json:"skipped,omitempty"`
	// BlobsFreed and BytesFreed are what the sweep deleted (would delete).
	BlobsFreed int   `json:"blobs_freed"`
	BytesFreed int64 `json:"bytes_freed"`
	// ContentBlobs and ContentBytes are the content store after the run.
	ContentBlobs int   `json:"content_blobs"`
	ContentBytes int64 `json:"content_bytes"`
	// KeptBytes is the stored content kept images reference.
	KeptBytes int64 `json:"kept_bytes"`
	// MaxBytes is the quota (0: none).
	MaxBytes int64    `json:"max_bytes,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// Collector runs the retention rules and the content garbage collector.
type Collector struct {
	store   *state.Store
	content *content.Store
	rules   config.Retention
	now     func() time.Time
	log     *slog.Logger
	reports reportReader
	// beforeDelete, for tests, runs before each blob is deleted.
	beforeDelete func(digest.Digest)
}

// Option configures a Collector.
type Option func(*Collector)

// WithClock replaces time.Now (use the state store's clock too).
func WithClock(now func() time.Time) Option { return func(c *Collector) { c.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Collector) { c.log = l } }

// New returns a collector with the rules of rules (config.Retention; a
// zero GCGrace means config.DefaultGCGrace).
func New(st *state.Store, cs *content.Store, rules config.Retention, opts ...Option) *Collector {
	if rules.GCGrace <= 0 {
		rules.GCGrace = config.DefaultGCGrace
	}
	c := &Collector{store: st, content: cs, rules: rules, now: time.Now, log: slog.Default(), reports: contentReports(cs)}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Run applies the retention rules and sweeps unreferenced content; with
// dryRun it changes nothing and says what it would do. It fails with
// ErrBusy while another run (of any replica) is under way. Its purges are
// audited with the actor state.ActorRetention.
func (c *Collector) Run(ctx context.Context, dryRun bool) (Result, error) {
	return c.RunBy(ctx, dryRun, "")
}

// RunBy is Run asked for by a person (POST /api/v1/gc): its purges are
// audited with actor as who did them, the rule that chose each in the
// reason. An empty actor is state.ActorRetention (the scheduled runs).
func (c *Collector) RunBy(ctx context.Context, dryRun bool, actor string) (Result, error) {
	if actor == "" {
		actor = state.ActorRetention
	}
	start := time.Now()
	res := Result{DryRun: dryRun, Started: c.now().UTC(), MaxBytes: int64(c.rules.MaxBytes), Purges: []Purge{}}
	run, err := c.hold(ctx, state.GCLease)
	if err != nil {
		return res, err
	}
	defer run.release()

	var blobs []content.BlobInfo
	sizes := map[digest.Digest]int64{}
	err = c.content.Walk(ctx, func(b content.BlobInfo) error {
		blobs = append(blobs, b)
		sizes[b.Digest] = b.Size
		return nil
	})
	if err != nil {
		return res, err
	}
	snap, err := c.store.Snapshot()
	if err != nil {
		return res, fmt.Errorf("gc: read state: %w", err)
	}
	g, err := buildGraph(ctx, snap, c.reports)
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	now := c.now()
	p := (&planner{rules: c.rules, now: now, g: g, sizes: sizes}).plan(snap.Tags)
	res.Purges = append(res.Purges, p.purges...)
	res.KeptBytes, res.Notes = p.keptBytes, p.notes

	if dryRun {
		for _, b := range c.victims(blobs, p.rc, now) {
			res.BlobsFreed++
			res.BytesFreed += b.Size
		}
		res.ContentBlobs, res.ContentBytes = len(blobs)-res.BlobsFreed, total(blobs)-res.BytesFreed
		res.DurationSeconds = time.Since(start).Seconds()
		return res, nil
	}

	applied := res.Purges[:0]
	for _, pg := range res.Purges {
		_, err := c.store.Purge(pg.ref, state.PurgeCheck{From: []state.State{pg.State}, LastPulled: pg.LastPulled}, actor, pg.Reason)
		switch {
		case errors.Is(err, state.ErrConflict), errors.Is(err, state.ErrRetained), errors.Is(err, state.ErrNotFound):
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s: %v", pg.Image, err))
			continue
		case err != nil:
			return res, fmt.Errorf("gc: purge %s: %w", pg.Image, err)
		}
		imagesPurged.WithLabelValues(pg.Rule).Inc()
		c.log.Info("retention: image purged", "image", pg.Image, "rule", pg.Rule, "reason", pg.Reason, "bytes", pg.Bytes, "actor", actor)
		applied = append(applied, pg)
	}
	res.Purges = applied

	freedBlobs, freedBytes, kept, err := c.sweep(ctx, blobs, now)
	res.BlobsFreed, res.BytesFreed = freedBlobs, freedBytes
	res.ContentBlobs, res.ContentBytes = len(blobs)-freedBlobs, total(blobs)-freedBytes
	if kept >= 0 {
		res.KeptBytes = kept
	}
	contentBlobs.Set(float64(res.ContentBlobs))
	contentBytes.Set(float64(res.ContentBytes))
	res.DurationSeconds = time.Since(start).Seconds()
	gcDuration.Observe(res.DurationSeconds)
	if err != nil {
		return res, err
	}
	c.log.Info("gc: done", "purged", len(res.Purges), "blobs_freed", res.BlobsFreed, "bytes_freed", res.BytesFreed,
		"content_bytes", res.ContentBytes, "seconds", res.DurationSeconds)
	return res, nil
}

// victims are the listed blobs nothing references (rc) that are older
// than the grace period at now.
func (c *Collector) victims(blobs []content.BlobInfo, rc map[digest.Digest]int, now time.Time) []content.BlobInfo {
	cutoff := now.Add(-c.rules.GCGrace)
	var out []content.BlobInfo
	for _, b := range blobs {
		if rc[b.Digest] > 0 || !b.ModTime.Before(cutoff) {
			continue
		}
		out = append(out, b)
	}
	return out
}

// sweep deletes the listed blobs no kept image references, holding the
// sweep lease, with the references read after the lease was taken. It
// returns what it freed and the stored bytes kept images reference (-1
// when it did not get that far).
func (c *Collector) sweep(ctx context.Context, blobs []content.BlobInfo, now time.Time) (int, int64, int64, error) {
	lease, err := c.hold(ctx, state.SweepLease)
	if err != nil {
		return 0, 0, -1, err
	}
	defer lease.release()
	snap, err := c.store.Snapshot()
	if err != nil {
		return 0, 0, -1, fmt.Errorf("gc: read state: %w", err)
	}
	g, err := buildGraph(ctx, snap, c.reports)
	if err != nil {
		return 0, 0, -1, fmt.Errorf("gc: %w", err)
	}
	rc := g.refcounts()
	var kept int64
	for _, b := range blobs {
		if rc[b.Digest] > 0 {
			kept += b.Size
		}
	}
	n, freed := 0, int64(0)
	for _, b := range c.victims(blobs, rc, now) {
		if err := ctx.Err(); err != nil {
			return n, freed, kept, err
		}
		if c.beforeDelete != nil {
			c.beforeDelete(b.Digest)
		}
		if !lease.valid() {
			// Writers stop waiting for an expired sweep lease: deleting
			// now could remove what one just referenced.
			return n, freed, kept, fmt.Errorf("gc: sweep lease lost after %d deletions; the next run continues", n)
		}
		// A delete must end while the lease still holds: an S3 DELETE
		// waits for a download of the blob in progress (MinIO does), and
		// a stalled one must not outlast the lease writers wait on.
		dctx, cancel := context.WithTimeout(ctx, c.store.LeaseDuration()/3)
		err := c.content.Delete(dctx, b.Digest)
		cancel()
		if err != nil {
			return n, freed, kept, fmt.Errorf("gc: %w (the next run continues)", err)
		}
		n++
		freed += b.Size
		blobsFreed.Inc()
		bytesFreed.Add(float64(b.Size))
	}
	return n, freed, kept, nil
}

// leaseHold is a named lease this process holds and renews.
type leaseHold struct {
	c      *Collector
	name   string
	mu     sync.Mutex
	lastOK time.Time // last successful take or renewal, on c.now
	lost   bool
	done   chan struct{}
	ended  chan struct{}
}

// hold takes the named lease and keeps it renewed until release.
func (c *Collector) hold(ctx context.Context, name string) (*leaseHold, error) {
	taken := c.now()
	held, until, err := c.store.TryLease(name)
	if err != nil {
		return nil, fmt.Errorf("gc: lease %s: %w", name, err)
	}
	if !held {
		return nil, fmt.Errorf("%w (lease %s held until %s)", ErrBusy, name, until.Format(time.RFC3339))
	}
	h := &leaseHold{c: c, name: name, lastOK: taken, done: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(h.ended)
		t := time.NewTicker(max(c.store.LeaseDuration()/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			at := c.now()
			ok, _, err := c.store.TryLease(name)
			h.mu.Lock()
			if err != nil || !ok {
				h.lost = true
				h.mu.Unlock()
				c.log.Error("gc: lease lost", "lease", name, "err", err)
				return
			}
			h.lastOK = at
			h.mu.Unlock()
		}
	}()
	return h, nil
}

// valid reports whether the lease is still surely held: renewed within
// the last two thirds of its duration (a renewal may hang on a database
// that is away; others take the lease once it expires).
func (h *leaseHold) valid() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.lost && h.c.now().Sub(h.lastOK) < h.c.store.LeaseDuration()*2/3
}

// release stops renewing and gives the lease up.
func (h *leaseHold) release() {
	close(h.done)
	<-h.ended
	_ = h.c.store.ReleaseLease(h.name)
}

// Schedule runs the collector every interval until ctx ends.
func (c *Collector) Schedule(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.Run(ctx, false); errors.Is(err, ErrBusy) {
			c.log.Debug("gc: skipped, another run holds the lease", "err", err)
		} else if err != nil && ctx.Err() == nil {
			c.log.Error("gc: run failed", "err", err)
		}
	}
}

func total(blobs []content.BlobInfo) int64 {
	var n int64
	for _, b := range blobs {
		n += b.Size
	}
	return n
}
