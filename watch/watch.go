// Package watch keeps the internal copy of watched upstream repositories
// current before anyone pulls: every interval it lists a repository's tags
// upstream, resolves the tags that match the watch's patterns (HEAD, which
// Docker Hub does not count against its pull limit), records each tag's
// digest as a pull would, and queues every new digest through the same
// entry point a pull uses (the gate's Request). A moved tag is then
// already approved, or rejected with the reason, when the first node asks.
//
// Watches come from the config file (watch:) and from the admin API
// (airlock watch add), which stores them in the state store. With several
// replicas on one PostgreSQL state, a named lease makes one replica run a
// given watch at a time, and the stored last run makes the interval hold
// across replicas.
//
// The upstream is an adversary here too: at most MaxTags tags are
// considered per run (the listing stops paging there, and each page's
// body is bounded), tags outside the distribution spec's grammar never
// match, and a run starts at most max_new_per_run pipelines minus those of
// the watch still running.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
	"github.com/airlockproxy/airlock/watch/tagfilter"
)

// ActorWatch is the audit actor of pipeline runs a watch started.
const ActorWatch = "watch"

// MaxTags is the most tags of one upstream repository a run considers.
const MaxTags = 1000

// Sources of a watch.
const (
	// SourceConfig: the watch is in the config file's watch: list.
	SourceConfig = "config"
	// SourceAPI: the watch was added through the admin API.
	SourceAPI = "api"
)

const (
	// pollInterval is the longest the scheduler sleeps before looking for
	// due watches (and watches another replica added) again.
	pollInterval = 5 * time.Second
	// maxConcurrentRuns bounds the watches that run at once in a process.
	maxConcurrentRuns = 4
	// maxCoolDownWaits is how often a run waits out an upstream's 429
	// cool-down before it gives up until the next run.
	maxCoolDownWaits = 3
)

// ErrConfigured means the watch is defined in the config file and cannot
// be added or removed through the API.
var ErrConfigured = errors.New("defined in the config file")

var (
	runs = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_watch_runs_total",
		Help: "Runs of watched repositories by result (ok, error).",
	}, []string{"result"})
	queued = promauto.NewCounter(prometheus.CounterOpts{
		Name: "airlock_watch_queued_total",
		Help: "Digests a watch queued through the pipeline.",
	})
)

// Gate is what a watch needs of the pipeline: the entry point a pull uses.
type Gate interface {
	Request(ref state.Ref, actor string) (state.Image, error)
}

// Definition is one watch, from the config file or the API.
type Definition struct {
	// Image is the canonical "<upstream name>/<repository>".
	Image string `json:"image"`
	// Upstream is the upstream's configured name.
	Upstream string `json:"upstream"`
	// Repository is the repository on the upstream.
	Repository string `json:"repository"`
	// Tags are the tag patterns.
	Tags []string `json:"tags"`
	// Interval is how often the upstream is checked.
	Interval time.Duration `json:"interval"`
	// MaxNewPerRun bounds the watch's pipelines running at once.
	MaxNewPerRun int `json:"max_new_per_run"`
	// Source is SourceConfig or SourceAPI.
	Source string `json:"source"`
	// CreatedBy and Created say who added an API watch, and when.
	CreatedBy string    `json:"created_by,omitempty"`
	Created   time.Time `json:"created,omitzero"`

	filter tagfilter.Set
}

// Listed is a watch with its last run, as the admin API lists it.
type Listed struct {
	Definition
	// Status is the last run (nil before the first).
	Status *state.WatchStatus `json:"status,omitempty"`
	// NextRun is when the watch is due next.
	NextRun time.Time `json:"next_run"`
}

// Scheduler runs the watches.
type Scheduler struct {
	store  *state.Store
	gate   Gate
	ups    *upstream.Set
	cfgUps []config.Upstream
	static []Definition
	log    *slog.Logger
	now    func() time.Time

	wake    chan struct{}
	mu      sync.Mutex
	running map[string]bool
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Scheduler) { s.log = l } }

// New returns the scheduler of cfg's watches plus those stored through the
// API. cfg must have been validated (config.Load does).
func New(cfg *config.Config, store *state.Store, g Gate, ups *upstream.Set, opts ...Option) (*Scheduler, error) {
	s := &Scheduler{
		store: store, gate: g, ups: ups, cfgUps: cfg.Upstreams,
		log: slog.Default(), now: time.Now,
		wake: make(chan struct{}, 1), running: map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	for i, w := range cfg.Watch {
		d, err := s.define(w, SourceConfig)
		if err != nil {
			return nil, fmt.Errorf("watch[%d]: %w", i, err)
		}
		s.static = append(s.static, d)
	}
	return s, nil
}

// define validates w and makes its Definition.
func (s *Scheduler) define(w config.Watch, source string) (Definition, error) {
	w = w.WithDefaults()
	if err := w.Validate(s.cfgUps); err != nil {
		return Definition{}, err
	}
	image := config.CanonicalRepo(s.cfgUps, w.Image)
	up, repo, _ := strings.Cut(image, "/")
	if _, ok := s.ups.Get(up); !ok {
		return Definition{}, fmt.Errorf("image: upstream %q has no client", up)
	}
	f, err := tagfilter.ParseSet(w.Tags)
	if err != nil {
		return Definition{}, fmt.Errorf("tags%w", err)
	}
	return Definition{
		Image: image, Upstream: up, Repository: repo, Tags: w.Tags,
		Interval: w.Interval, MaxNewPerRun: w.MaxNewPerRun, Source: source, filter: f,
	}, nil
}

// Definitions returns every watch: the config file's, then the API's.
func (s *Scheduler) Definitions() ([]Definition, error) {
	out := append([]Definition(nil), s.static...)
	stored, err := s.store.Watches()
	if err != nil {
		return nil, fmt.Errorf("read watches: %w", err)
	}
	for _, w := range stored {
		if s.configured(w.Image) {
			continue // the config file's definition wins
		}
		d, err := s.define(config.Watch{Image: w.Image, Tags: w.Tags, Interval: w.Interval, MaxNewPerRun: w.MaxNewPerRun}, SourceAPI)
		if err != nil {
			// Stored under another config (an upstream since removed):
			// skipped, not fatal; the list shows why.
			s.log.Warn("watch skipped", "image", w.Image, "err", err)
			continue
		}
		d.CreatedBy, d.Created = w.CreatedBy, w.Created
		out = append(out, d)
	}
	return out, nil
}

func (s *Scheduler) configured(image string) bool {
	for _, d := range s.static {
		if d.Image == image {
			return true
		}
	}
	return false
}

// List returns every watch with its last run and next due time.
func (s *Scheduler) List() ([]Listed, error) {
	defs, err := s.Definitions()
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(defs))
	for _, d := range defs {
		l := Listed{Definition: d, NextRun: s.now().UTC()}
		st, err := s.store.WatchStatus(d.Image)
		switch {
		case err == nil:
			// Each tag's state as it is now, not as the run left it
			// (a digest it queued has been approved or rejected since).
			for i, t := range st.Tags {
				if t.Digest == "" {
					continue
				}
				img, err := s.store.Image(state.Ref{Upstream: d.Upstream, Repository: d.Repository, Digest: t.Digest})
				if err == nil {
					st.Tags[i].State = img.State
				}
			}
			l.Status = &st
			l.NextRun = st.LastRun.Add(d.Interval)
		case !errors.Is(err, state.ErrNotFound):
			return nil, fmt.Errorf("watch %s: %w", d.Image, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// Add validates and stores a watch (SourceAPI) and wakes the scheduler.
func (s *Scheduler) Add(w config.Watch, actor string) (Definition, error) {
	d, err := s.define(w, SourceAPI)
	if err != nil {
		return d, err
	}
	if s.configured(d.Image) {
		return d, fmt.Errorf("watch %s: %w; edit it there", d.Image, ErrConfigured)
	}
	stored, err := s.store.AddWatch(state.Watch{Image: d.Image, Tags: d.Tags, Interval: d.Interval, MaxNewPerRun: d.MaxNewPerRun}, actor)
	if err != nil {
		return d, err
	}
	d.CreatedBy, d.Created = stored.CreatedBy, stored.Created
	s.Wake()
	return d, nil
}

// Remove deletes a watch added through the API.
func (s *Scheduler) Remove(image, actor string) error {
	image = config.CanonicalRepo(s.cfgUps, image)
	if s.configured(image) {
		return fmt.Errorf("watch %s: %w; remove it there", image, ErrConfigured)
	}
	return s.store.RemoveWatch(image, actor)
}

// Wake makes the scheduler look for due watches now.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run runs due watches until ctx is done, and waits for runs in progress.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxConcurrentRuns)
	for {
		wait := pollInterval
		defs, err := s.Definitions()
		if err != nil {
			s.log.Error("watch: list watches", "err", err)
		}
		for _, d := range defs {
			next, err := s.nextRun(d)
			if err != nil {
				s.log.Error("watch: read status", "image", d.Image, "err", err)
				continue
			}
			if until := next.Sub(s.now()); until > 0 {
				wait = min(wait, until)
				continue
			}
			if !s.start(d.Image) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.done(d.Image)
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				defer func() { <-sem }()
				s.runLeased(ctx, d)
			}()
		}
		t := time.NewTimer(max(wait, 50*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Scheduler) start(image string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[image] {
		return false
	}
	s.running[image] = true
	return true
}

func (s *Scheduler) done(image string) {
	s.mu.Lock()
	delete(s.running, image)
	s.mu.Unlock()
	s.Wake()
}

// nextRun is when d is due: its last run plus its interval (now before
// the first run).
func (s *Scheduler) nextRun(d Definition) (time.Time, error) {
	st, err := s.store.WatchStatus(d.Image)
	if errors.Is(err, state.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return st.LastRun.Add(d.Interval), nil
}

// runLeased runs d if this process takes its lease and d is still due,
// renewing the lease while it runs.
func (s *Scheduler) runLeased(ctx context.Context, d Definition) {
	name := "watch:" + d.Image
	held, _, err := s.store.TryLease(name)
	if err != nil {
		s.log.Error("watch: lease", "image", d.Image, "err", err)
		return
	}
	if !held {
		return // another replica runs it
	}
	defer func() { _ = s.store.ReleaseLease(name) }()
	// Another replica may have finished a run between our read and the lease.
	if next, err := s.nextRun(d); err != nil || next.After(s.now()) {
		return
	}
	stop := s.store.KeepLease(name)
	st := s.RunOnce(ctx, d)
	stop()
	if ctx.Err() != nil && st.Error != "" {
		return // interrupted by shutdown: the next start runs it again
	}
	if err := s.store.SetWatchStatus(st); err != nil {
		s.log.Error("watch: record run", "image", d.Image, "err", err)
	}
}

// candidate is a digest a run found that has no pipeline result yet.
type candidate struct {
	ref  state.Ref
	tags []string
}

// RunOnce checks d's upstream once: list tags, resolve the matching ones,
// record them, and queue new digests (at most d.MaxNewPerRun minus the
// watch's pipelines still running). It returns the run's status; an
// error is in its Error field.
func (s *Scheduler) RunOnce(ctx context.Context, d Definition) state.WatchStatus {
	start := s.now()
	st := state.WatchStatus{Image: d.Image, LastRun: start.UTC(), Runner: s.store.Owner()}
	defer func() {
		st.Duration = s.now().Sub(start)
		result := "ok"
		if st.Error != "" {
			result = "error"
		}
		runs.WithLabelValues(result).Inc()
		s.log.Info("watch run", "image", d.Image, "listed", st.Listed, "matched", st.Matched, "queued", st.Queued,
			"deferred", st.Deferred, "took", st.Duration.Round(time.Millisecond), "err", st.Error)
	}()
	if d.filter == nil {
		f, err := tagfilter.ParseSet(d.Tags)
		if err != nil {
			st.Error = "tags" + err.Error()
			return st
		}
		d.filter = f
	}
	reg, ok := s.ups.Get(d.Upstream)
	if !ok {
		st.Error = fmt.Sprintf("upstream %q is not configured", d.Upstream)
		return st
	}
	var list upstream.TagList
	err := s.patiently(ctx, reg, func() (err error) {
		list, err = reg.Tags(ctx, d.Repository, MaxTags)
		return err
	})
	if err != nil {
		st.Error = "list tags: " + upstream.Cause(err)
		return st
	}
	st.Listed, st.Truncated = len(list.Tags), list.Truncated
	matched := order(filter(list.Tags, d.filter))
	st.Matched = len(matched)

	inFlight := map[digest.Digest]bool{}
	var fresh []*candidate
	byDigest := map[digest.Digest]*candidate{}
	for _, tag := range matched {
		if ctx.Err() != nil {
			st.Error = "interrupted: " + ctx.Err().Error()
			return st
		}
		wt := state.WatchedTag{Tag: tag}
		var desc v1.Descriptor
		err := s.patiently(ctx, reg, func() (err error) {
			desc, err = reg.Resolve(ctx, d.Repository, tag)
			return err
		})
		if err != nil {
			wt.Error = upstream.Cause(err)
			st.Tags = append(st.Tags, wt)
			if reg.CoolingDown().After(s.now()) {
				// The upstream keeps asking to slow down: the rest waits
				// for the next run.
				st.Error = "upstream asked to slow down (429): " + wt.Error
				return st
			}
			continue
		}
		dg := digest.Digest(desc.Digest.String())
		wt.Digest = dg
		// Recorded as a pull records it, so the tag serves this digest
		// once it is approved.
		if _, err := s.store.RecordTag(d.Upstream, d.Repository, tag, dg, string(desc.MediaType)); err != nil {
			st.Error = fmt.Sprintf("record tag %s: %v", tag, err)
			return st
		}
		ref := state.Ref{Upstream: d.Upstream, Repository: d.Repository, Digest: dg}
		img, err := s.store.Image(ref)
		switch {
		case errors.Is(err, state.ErrNotFound), err == nil && retryable(img, s.now()):
			c := byDigest[dg]
			if c == nil {
				c = &candidate{ref: ref}
				byDigest[dg] = c
				fresh = append(fresh, c)
			}
			c.tags = append(c.tags, tag)
		case err != nil:
			st.Error = fmt.Sprintf("image %s: %v", ref, err)
			return st
		default:
			wt.State = img.State
			if img.State.InPipeline() {
				inFlight[dg] = true
			}
		}
		st.Tags = append(st.Tags, wt)
	}
	budget := max(d.MaxNewPerRun-len(inFlight), 0)
	for _, c := range fresh {
		if budget == 0 {
			st.Deferred++
			continue
		}
		img, err := s.gate.Request(c.ref, ActorWatch)
		if err != nil {
			st.Error = fmt.Sprintf("queue %s: %v", c.ref, err)
			return st
		}
		budget--
		st.Queued++
		queued.Inc()
		for i := range st.Tags {
			if st.Tags[i].Digest == c.ref.Digest {
				st.Tags[i].State = img.State
			}
		}
	}
	return st
}

// retryable reports a failed image whose failure was transient and whose
// retry time has passed: a pull would queue it again, so a watch does.
func retryable(img state.Image, now time.Time) bool {
	return img.State == state.StateFailed && !img.Permanent && !now.Before(img.RetryAt)
}

// patiently runs call; when it fails while the upstream cools down after
// a 429, it waits for the cool-down to end (or ctx) and tries again, at
// most maxCoolDownWaits times.
func (s *Scheduler) patiently(ctx context.Context, reg *upstream.Registry, call func() error) error {
	for i := 0; ; i++ {
		err := call()
		if err == nil || i >= maxCoolDownWaits {
			return err
		}
		until := reg.CoolingDown()
		if until.IsZero() {
			return err
		}
		t := time.NewTimer(until.Sub(s.now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// filter returns the tags f matches, without duplicates.
func filter(tags []string, f tagfilter.Set) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tags {
		if !seen[t] && f.Match(t) {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// order sorts tags for queueing: versions newest first, then other tags
// by name. When max_new_per_run defers some, the newest go first.
func order(tags []string) []string {
	type key struct {
		tag string
		v   *semver.Version
	}
	keys := make([]key, len(tags))
	for i, t := range tags {
		keys[i].tag = t
		if v, ok := tagfilter.Version(t); ok {
			keys[i].v = v
		}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		vi, vj := keys[i].v, keys[j].v
		switch {
		case vi != nil && vj != nil:
			if c := vi.Compare(vj); c != 0 {
				return c > 0
			}
		case (vi != nil) != (vj != nil):
			return vi != nil
		}
		return keys[i].tag < keys[j].tag
	})
	for i := range keys {
		tags[i] = keys[i].tag
	}
	return tags
}
