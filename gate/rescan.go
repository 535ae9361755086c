package gate

import (
	"context"
	"time"

	"github.com/airlockproxy/airlock/storage/state"
)

// ActorScheduler is the audit actor of scheduled rescans.
const ActorScheduler = "scheduler"

// RescanAll queues a rescan of every approved image whose last scan is
// older than olderThan (every approved image when olderThan is 0), and
// queues failed images again (a missing or stale DB fails them). It is
// called after a DB import and on the rescan schedule.
func (e *Engine) RescanAll(actor, reason string, olderThan time.Duration) (rescans, retries int, err error) {
	imgs, err := e.store.Images("")
	if err != nil {
		return 0, 0, err
	}
	cutoff := time.Now().Add(-olderThan)
	for _, img := range imgs {
		switch img.State {
		case state.StateApproved:
			if olderThan > 0 && img.Scan != nil && img.Scan.ScannedAt.After(cutoff) {
				continue
			}
			if _, created, err := e.store.Enqueue(img.Ref, state.JobRescan, actor); err != nil {
				return rescans, retries, err
			} else if created {
				rescans++
				if err := e.store.Record(state.Entry{Actor: actor, Image: img.Ref.String(), From: img.State, To: img.State, Action: "rescan", Reason: reason}); err != nil {
					return rescans, retries, err
				}
			}
		case state.StateFailed:
			if _, err := e.store.Job(img.Ref); err == nil {
				continue // already retrying
			}
			if img.Permanent && actor == ActorScheduler {
				// A schedule retrying what cannot succeed would churn
				// hourly; an admin's import or rescan still retries it.
				continue
			}
			if _, err := e.store.Reset(img.Ref, state.Change{From: []state.State{state.StateFailed}, Actor: actor, Action: "retry", Reason: reason}); err != nil {
				return rescans, retries, err
			}
			retries++
		}
	}
	if rescans+retries > 0 {
		e.Wake()
		e.log.Info("rescans queued", "rescans", rescans, "retries", retries, "reason", reason)
	}
	return rescans, retries, nil
}

// RunRescans rescans approved images whose last scan is older than
// interval, checking every interval/4 (at most hourly) until ctx is done.
func (e *Engine) RunRescans(ctx context.Context, interval time.Duration) {
	tick := min(interval/4, time.Hour)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, _, err := e.RescanAll(ActorScheduler, "scheduled rescan", interval); err != nil {
				e.log.Error("scheduled rescan", "err", err)
			}
		}
	}
}

// RunDBUpdates calls update every interval until ctx is done; when it
// reports a new database (what: "vulnerability DB", "malware signatures")
// every approved image is rescanned.
func (e *Engine) RunDBUpdates(ctx context.Context, interval time.Duration, what string, update func(context.Context) (bool, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		updated, err := update(ctx)
		switch {
		case err != nil:
			e.log.Error(what+" update", "err", err)
		case updated:
			e.DBUpdated(what, ActorScheduler, "new "+what, nil)
			if _, _, err := e.RescanAll(ActorScheduler, "new "+what, 0); err != nil {
				e.log.Error("rescan after an update of the "+what, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
