// Package gate is Airlock's quarantine pipeline: workers take jobs from the
// persistent queue in the state store and run the steps (fetch, verify
// cosign and Notation signatures, scan, lifecycle, malware, policy, sign)
// that end in an image being approved, rejected or held for an admin. Admin decisions (approve, revoke, rescan) go through
// here too.
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// ActorPipeline is the audit actor of the pipeline's own transitions; the
// state store folds its repeated retry transitions into one entry.
const ActorPipeline = state.ActorPipeline

// ErrNotFetched is returned when an admin approves an image whose content
// is not complete yet.
var ErrNotFetched = errors.New("image content is not fetched yet; wait for the fetch step")

var (
	stepDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "airlock_pipeline_step_duration_seconds",
		Help:    "Duration of pipeline steps.",
		Buckets: prometheus.ExponentialBuckets(0.005, 3, 12),
	}, []string{"step", "outcome"})
	pipelineRuns = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_pipeline_runs_total",
		Help: "Pipeline runs by final result.",
	}, []string{"result"})
)

// Engine runs the pipeline workers.
type Engine struct {
	store *state.Store
	steps []Step
	cfg   config.Gate
	log   *slog.Logger

	onRescanFail string
	audit        config.Audit

	wake chan struct{}
	mu   sync.Mutex
	busy map[uint64]bool
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithRescanFailure sets what a failed rescan does to an approved image:
// config.RescanRevoke (the default) or config.RescanFlag.
func WithRescanFailure(mode string) Option { return func(e *Engine) { e.onRescanFail = mode } }

// WithAuditRetention makes Run prune the audit log by a's bounds, at
// start and every a.PruneInterval (see state.Store.PruneAudit). Without it
// the log is not pruned.
func WithAuditRetention(a config.Audit) Option { return func(e *Engine) { e.audit = a } }

// New returns an engine that runs steps in order on every queued image.
func New(store *state.Store, cfg config.Gate, steps []Step, opts ...Option) *Engine {
	e := &Engine{
		store: store,
		steps: steps,
		cfg:   cfg,
		log:   slog.Default(),
		wake:  make(chan struct{}, 1),

		onRescanFail: config.RescanRevoke,
		busy:         map[uint64]bool{},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Run starts cfg.Workers workers and blocks until ctx is done and they
// have stopped. Jobs left in the queue (including those interrupted by a
// kill) run again at the next start.
func (e *Engine) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if e.audit.MaxAge > 0 || e.audit.MaxEntries > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.pruneAudit(ctx)
		}()
	}
	for i := 0; i < e.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.worker(ctx)
		}()
	}
	wg.Wait()
}

// pruneAudit bounds the audit log at start and then every
// audit.prune_interval until ctx is done.
func (e *Engine) pruneAudit(ctx context.Context) {
	interval := e.audit.PruneInterval
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// Leases a killed replica held end by themselves; their keys
		// are removed here so they do not pile up.
		if n, err := e.store.PruneLeases(); err != nil {
			e.log.Error("lease pruning", "err", err)
		} else if n > 0 {
			e.log.Info("expired leases removed", "leases", n)
		}
		start := time.Now()
		n, err := e.store.PruneAudit(e.audit.MaxAge, e.audit.MaxEntries)
		switch {
		case err != nil:
			e.log.Error("audit pruning", "err", err)
		case n > 0:
			e.log.Info("audit log pruned", "removed", n, "max_age", e.audit.MaxAge, "max_entries", e.audit.MaxEntries, "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Wake tells idle workers that a job may be due.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) worker(ctx context.Context) {
	for ctx.Err() == nil {
		job, ok, err := e.claim()
		if err != nil {
			e.log.Error("pipeline: read queue", "err", err)
		}
		if !ok {
			e.idle(ctx)
			continue
		}
		e.run(ctx, job)
		e.release(job.ID)
		// Another worker may be idle while more jobs wait.
		e.Wake()
	}
}

// idle waits for a wake-up, the next due job, or a poll interval.
func (e *Engine) idle(ctx context.Context) {
	wait := 2 * time.Second
	if next, err := e.store.NextDue(); err == nil && !next.IsZero() {
		if d := time.Until(next); d > 0 && d < wait {
			wait = d
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-e.wake:
	case <-t.C:
	}
}

func (e *Engine) claim() (state.Job, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	job, ok, err := e.store.NextJob(func(id uint64) bool { return e.busy[id] })
	if ok {
		e.busy[job.ID] = true
	}
	return job, ok, err
}

// run processes job while renewing its lease. When the lease is lost
// (this process stalled past it and another replica took the job) the
// job's context is cancelled: the other replica's run is the one that
// counts, and the store refuses this one's result anyway.
func (e *Engine) run(ctx context.Context, job state.Job) {
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(e.store.LeaseDuration() / 3)
		defer t.Stop()
		for {
			select {
			case <-jctx.Done():
				return
			case <-t.C:
			}
			switch err := e.store.RenewJob(job); {
			case err == nil:
			case errors.Is(err, state.ErrLeaseLost):
				e.log.Warn("pipeline: job lease lost, leaving it to the other replica", "image", job.Image.String(), "err", err)
				cancel()
				return
			case errors.Is(err, state.ErrNotFound):
				// Finished, or replaced by an admin's decision: nothing to hold.
				return
			default:
				// The database may be back before the lease ends.
				e.log.Warn("pipeline: renew job lease", "image", job.Image.String(), "err", err)
			}
		}
	}()
	e.process(jctx, job)
	cancel()
	<-renewed
}

func (e *Engine) release(id uint64) {
	e.mu.Lock()
	delete(e.busy, id)
	e.mu.Unlock()
}

// pipelineStates are the states the pipeline may move an image out of.
var pipelineStates = []state.State{
	state.StatePending, state.StateFetching, state.StateVerifying,
	state.StateScanning, state.StateSigning, state.StateFailed,
}

// process runs one job to its end: a final state, or a retry scheduled.
func (e *Engine) process(ctx context.Context, job state.Job) {
	img, err := e.store.Image(job.Image)
	if err != nil {
		e.log.Error("pipeline: job without image", "image", job.Image.String(), "err", err)
		_, _ = e.store.FinishJob(job, nil)
		return
	}
	rescan := job.Kind == state.JobRescan
	steps, from := e.steps, pipelineStates
	switch {
	case rescan && img.State != state.StateApproved:
		// Revoked or re-queued since the rescan was asked for: nothing to re-check.
		_, _ = e.store.FinishJob(job, nil)
		return
	case job.Kind == state.JobSign && img.State != state.StateSigning && img.State != state.StateFailed:
		_, _ = e.store.FinishJob(job, nil)
		return
	case job.Kind == state.JobSign:
		// An admin approved: only signing is left before the image is served.
		steps, from = e.stepsNamed("sign"), []state.State{state.StateSigning, state.StateFailed}
	case !rescan && !slices.Contains(pipelineStates, img.State):
		// An admin decided while the job waited.
		_, _ = e.store.FinishJob(job, nil)
		return
	}
	if rescan {
		from = []state.State{state.StateApproved}
	}
	start := time.Now()
	subject := &Subject{Image: img, Rescan: rescan, Actor: ActorPipeline}
	if job.Kind == state.JobSign {
		subject.Actor = job.Actor
	}
	// The previous step's record update; a run starts by clearing the marks
	// of an earlier failure, so a pull reads this run's outcome alone.
	pending := func(i *state.Image) { i.Permanent, i.RetryAt = false, time.Time{} }
	for _, step := range steps {
		if !rescan && step.State() != "" {
			img, err = e.store.Transition(job.Image, state.Change{
				From: from, To: step.State(), Actor: ActorPipeline,
				Action: "step:" + step.Name(), Reason: step.Name() + " in progress", Mutate: apply(pending),
			})
			if err != nil {
				e.abandon(job, err)
				return
			}
			pending = nil
			subject.Image = img
			e.log.Info("state change", "image", job.Image.String(), "state", img.State, "step", step.Name())
		}
		stepStart := time.Now()
		v, err := e.runStep(ctx, step, subject)
		result := state.StepResult{Step: step.Name(), Started: stepStart.UTC(), Finished: time.Now().UTC(), Detail: v.Detail}
		if err != nil {
			result.Status, result.Detail = "failed", err.Error()
			stepDuration.WithLabelValues(step.Name(), "error").Observe(time.Since(stepStart).Seconds())
			if ctx.Err() != nil {
				// Shutting down: leave the job queued so the next start resumes it.
				return
			}
			e.fail(job, step, err, chain(pending, record(result)))
			return
		}
		result.Status = v.Outcome.String()
		stepDuration.WithLabelValues(step.Name(), result.Status).Observe(time.Since(stepStart).Seconds())
		if v.Update != nil {
			// Later steps see what this one learned.
			v.Update(&subject.Image)
		}
		pending = chain(pending, v.Update, record(result))
		switch v.Outcome {
		case Reject:
			pipelineRuns.WithLabelValues("rejected").Inc()
			if rescan && e.onRescanFail == config.RescanFlag {
				reason := "rescan would reject, flagged: " + v.Detail
				e.finish(job, from, "", "rescan", reason, chain(pending, func(i *state.Image) { i.Flag = reason }))
				return
			}
			if rescan {
				e.finish(job, from, state.StateRevoked, "rescan", "rescan failed policy: "+v.Detail, pending)
				return
			}
			e.finish(job, from, state.StateRejected, "step:"+step.Name(), v.Detail, pending)
			return
		case Hold:
			if rescan {
				continue
			}
			e.finish(job, from, state.StateAwaitingApproval, "step:"+step.Name(), v.Detail, pending)
			pipelineRuns.WithLabelValues("held").Inc()
			return
		}
	}
	reason := fmt.Sprintf("every step passed in %s", time.Since(start).Round(time.Millisecond))
	switch {
	case rescan:
		reason = "rescan passed"
		pending = chain(pending, func(i *state.Image) { i.Flag = "" })
	case job.Kind == state.JobSign:
		reason = job.Reason
	}
	e.finishAs(job, subject.Actor, from, state.StateApproved, "approve", reason, pending)
	pipelineRuns.WithLabelValues("approved").Inc()
}

// stepsNamed returns the configured steps with that name.
func (e *Engine) stepsNamed(name string) []Step {
	var out []Step
	for _, s := range e.steps {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func (e *Engine) runStep(ctx context.Context, step Step, s *Subject) (v Verdict, err error) {
	defer func() {
		// A step that panics fails this image, not the process.
		if r := recover(); r != nil {
			err = fmt.Errorf("step %s panicked: %v", step.Name(), r)
		}
	}()
	return step.Run(ctx, s)
}

// finish ends a job with the image moved to st, in one transaction.
func (e *Engine) finish(job state.Job, from []state.State, st state.State, action, reason string, update func(*state.Image)) {
	e.finishAs(job, ActorPipeline, from, st, action, reason, update)
}

// finishAs is finish with the audit actor given.
func (e *Engine) finishAs(job state.Job, actor string, from []state.State, st state.State, action, reason string, update func(*state.Image)) {
	img, err := e.store.FinishJob(job, &state.Change{
		From: from, To: st, Actor: actor, Action: action, Reason: reason, Mutate: apply(update),
	})
	if err != nil {
		e.abandon(job, err)
		return
	}
	e.log.Info("state change", "image", job.Image.String(), "state", img.State, "reason", reason)
}

// fail schedules a retry with backoff, or gives up after the last attempt
// or on a permanent error. The image records which it was, in the same
// transaction: a permanent failure is never queued again by a pull (only
// by an admin's rescan), and after giving up on a transient one a pull
// queues it again at most once per gate.retry.max_backoff (Image.RetryAt).
func (e *Engine) fail(job state.Job, step Step, err error, update func(*state.Image)) {
	pipelineRuns.WithLabelValues("failed").Inc()
	attempts := job.Attempts + 1
	reason := fmt.Sprintf("%s failed: %v", step.Name(), err)
	if job.Kind == state.JobRescan {
		// A rescan that errors proves nothing against the image: it stays
		// approved, and the failure is on record.
		e.finish(job, []state.State{state.StateApproved}, "", "rescan", "rescan "+reason, update)
		return
	}
	permanent := IsPermanent(err)
	if permanent || attempts >= e.cfg.Retry.MaxAttempts {
		var retryAt time.Time
		if permanent {
			reason += " (permanent: pulls do not retry it; an admin's rescan does)"
		} else {
			retryAt = time.Now().Add(e.cfg.Retry.MaxBackoff).UTC()
			reason += fmt.Sprintf(" (gave up after %d attempts; a pull after %s queues it again)", attempts, retryAt.Format(time.RFC3339))
		}
		e.finish(job, pipelineStates, state.StateFailed, "step:"+step.Name(), reason, chain(update, func(i *state.Image) {
			i.Permanent, i.RetryAt = permanent, retryAt
		}))
		return
	}
	delay := e.backoff(attempts)
	notBefore := time.Now().Add(delay)
	reason += fmt.Sprintf(" (attempt %d of %d; retrying in %s)", attempts, e.cfg.Retry.MaxAttempts, delay)
	img, rerr := e.store.RetryJob(job, notBefore, state.Change{
		From: pipelineStates, To: state.StateFailed, Actor: ActorPipeline,
		Action: "step:" + step.Name(), Reason: reason, Mutate: apply(chain(update, func(i *state.Image) {
			// The job retries by itself; a pull has nothing to add before then.
			i.Permanent, i.RetryAt = false, notBefore.UTC()
		})),
	})
	if rerr != nil {
		e.abandon(job, rerr)
		return
	}
	e.log.Warn("state change", "image", job.Image.String(), "state", img.State, "reason", reason)
}

func (e *Engine) backoff(attempts int) time.Duration {
	d := e.cfg.Retry.Backoff
	for i := 1; i < attempts && d < e.cfg.Retry.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, e.cfg.Retry.MaxBackoff)
}

// abandon drops a job whose image an admin changed underneath it.
func (e *Engine) abandon(job state.Job, err error) {
	if errors.Is(err, state.ErrConflict) || errors.Is(err, state.ErrNotFound) {
		e.log.Info("pipeline: image changed while its job ran; job dropped", "image", job.Image.String(), "err", err)
		_, _ = e.store.FinishJob(job, nil)
		return
	}
	// A store error: keep the job, it runs again.
	e.log.Error("pipeline: store", "image", job.Image.String(), "err", err)
}

func apply(fn func(*state.Image)) func(*state.Image) error {
	if fn == nil {
		return nil
	}
	return func(img *state.Image) error { fn(img); return nil }
}

func chain(fns ...func(*state.Image)) func(*state.Image) {
	return func(img *state.Image) {
		for _, fn := range fns {
			if fn != nil {
				fn(img)
			}
		}
	}
}

func record(r state.StepResult) func(*state.Image) {
	return func(img *state.Image) { img.SetStep(r) }
}
