package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// Enqueue queues a job of kind for ref unless one is already queued for it.
// It returns the queued job and whether this call created it.
func (s *Store) Enqueue(ref Ref, kind JobKind, actor string) (Job, bool, error) {
	var job Job
	created := false
	err := s.update(func(tx kv.Tx) error {
		if id := tx.Bucket(bucketJobIndex).Get([]byte(ref.String())); id != nil {
			return getJSON(tx.Bucket(bucketJobs), id, &job)
		}
		var err error
		job, err = enqueue(tx, Job{Kind: kind, Image: ref, Created: s.now().UTC(), Actor: actor})
		created = err == nil
		return err
	})
	return job, created, err
}

// Hand moves ref to state c.To and queues a job of kind for it, in one
// transaction: an admin's approval with signing enabled becomes "signing"
// plus a sign job, so the image is approved only once it is signed.
func (s *Store) Hand(ref Ref, kind JobKind, c Change) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		var err error
		img, err = hand(tx, ref, kind, c, s.now().UTC())
		return err
	})
	return img, err
}

// hand is Hand inside the caller's transaction.
func hand(tx kv.Tx, ref Ref, kind JobKind, c Change, now time.Time) (Image, error) {
	img, err := transition(tx, ref, c, now)
	if err != nil {
		return img, err
	}
	if id := tx.Bucket(bucketJobIndex).Get([]byte(ref.String())); id != nil {
		// A job that still waits (a retry, a rescan) is replaced.
		var old Job
		if err := getJSON(tx.Bucket(bucketJobs), id, &old); err == nil {
			if err := deleteJob(tx, old); err != nil {
				return img, err
			}
		}
	}
	_, err = enqueue(tx, Job{Kind: kind, Image: ref, Created: now, Actor: c.Actor, Reason: c.Reason})
	return img, err
}

// Reset moves ref back to pending and makes its pull job due now, in one
// transaction: an admin's rescan of an image that is not approved re-runs
// its whole pipeline at once. A job that waits for a retry (a failed image
// in its backoff) is rescheduled to now as a fresh pull; a job that is
// already due is kept, it runs anyway. The image's failure marks (Attempts,
// Permanent, RetryAt) are cleared: it starts over.
func (s *Store) Reset(ref Ref, c Change) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		now := s.now().UTC()
		c.To = StatePending
		inner := c.Mutate
		c.Mutate = func(img *Image) error {
			img.Attempts, img.Permanent, img.RetryAt = 0, false, time.Time{}
			if inner != nil {
				return inner(img)
			}
			return nil
		}
		var err error
		if img, err = transition(tx, ref, c, now); err != nil {
			return err
		}
		if id := tx.Bucket(bucketJobIndex).Get([]byte(ref.String())); id != nil {
			jobs := tx.Bucket(bucketJobs)
			var job Job
			if err := getJSON(jobs, id, &job); err != nil {
				return fmt.Errorf("job of %s: %w", ref, err)
			}
			if !job.NotBefore.After(now) {
				return nil
			}
			// Not due, so no worker runs it: safe to rewrite in place.
			job.Kind, job.Attempts, job.NotBefore = JobPull, 0, time.Time{}
			job.Actor, job.Reason = c.Actor, c.Reason
			return putJSON(jobs, id, &job)
		}
		_, err = enqueue(tx, Job{Kind: JobPull, Image: ref, Created: now, Actor: c.Actor, Reason: c.Reason})
		return err
	})
	return img, err
}

func hasJob(tx kv.Tx, ref Ref) bool {
	return tx.Bucket(bucketJobIndex).Get([]byte(ref.String())) != nil
}

func enqueue(tx kv.Tx, job Job) (Job, error) {
	jobs := tx.Bucket(bucketJobs)
	id, err := jobs.NextSequence()
	if err != nil {
		return job, err
	}
	job.ID = id
	if err := putJSON(jobs, itob(id), &job); err != nil {
		return job, err
	}
	return job, tx.Bucket(bucketJobIndex).Put([]byte(job.Image.String()), itob(id))
}

// NextJob claims the oldest job that is due, not busy (busy reports jobs
// a worker of this process already runs) and not leased by another
// process: it leases the job to this process for the lease duration
// (WithLease). The worker renews the lease (RenewJob) while it runs; a
// process killed mid-job stops renewing, and another process claims the
// job once the lease has expired, which is how interrupted work resumes
// across replicas. A bbolt file is one process's: its leases are dropped
// at Open.
func (s *Store) NextJob(busy func(id uint64) bool) (Job, bool, error) {
	// Candidates are found in a read transaction, so idle polling of many
	// workers never takes the writer lock; the claim checks again.
	var cands []uint64
	now := s.now()
	err := s.db.View(func(tx kv.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		for k, v := c.First(); k != nil && len(cands) < 8; k, v = c.Next() {
			if busy(binary.BigEndian.Uint64(k)) {
				continue
			}
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode job %x: %w", k, err)
			}
			if claimable(j, now, s.owner) {
				cands = append(cands, j.ID)
			}
		}
		return nil
	})
	if err != nil {
		return Job{}, false, err
	}
	for _, id := range cands {
		var job Job
		claimed := false
		err := s.db.Update(func(tx kv.Tx) error {
			jobs := tx.Bucket(bucketJobs)
			if err := getJSON(jobs, itob(id), &job); err != nil {
				if errors.Is(err, ErrNotFound) {
					return nil // finished meanwhile
				}
				return err
			}
			now := s.now()
			if !claimable(job, now, s.owner) {
				return nil
			}
			job.Owner, job.LeaseUntil = s.owner, now.Add(s.lease).UTC()
			claimed = true
			return putJSON(jobs, itob(id), &job)
		})
		if err != nil {
			return Job{}, false, err
		}
		if claimed {
			return job, true, nil
		}
	}
	return Job{}, false, nil
}

// claimable reports whether owner may claim j at now: due, and not leased
// unexpired by another process.
func claimable(j Job, now time.Time, owner string) bool {
	if j.NotBefore.After(now) {
		return false
	}
	return j.Owner == "" || j.Owner == owner || !j.LeaseUntil.After(now)
}

// RenewJob extends this process's lease on job. It returns ErrLeaseLost
// when another process has claimed the job (this one stalled past its
// lease), and ErrNotFound when the job is gone (finished, or replaced by
// an admin's decision).
func (s *Store) RenewJob(job Job) error {
	return s.db.Update(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		var cur Job
		if err := getJSON(jobs, itob(job.ID), &cur); err != nil {
			return err
		}
		if err := s.owns(cur); err != nil {
			return err
		}
		cur.Owner, cur.LeaseUntil = s.owner, s.now().Add(s.lease).UTC()
		return putJSON(jobs, itob(job.ID), &cur)
	})
}

// owns fails with ErrLeaseLost when another process holds cur's lease.
func (s *Store) owns(cur Job) error {
	if cur.Owner != "" && cur.Owner != s.owner {
		return fmt.Errorf("job %d of %s, now run by %s: %w", cur.ID, cur.Image, cur.Owner, ErrLeaseLost)
	}
	return nil
}

// NextDue returns when the earliest not-yet-due job becomes due (zero if none waits).
func (s *Store) NextDue() (time.Time, error) {
	var next time.Time
	now := s.now()
	err := s.db.View(func(tx kv.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode job %x: %w", k, err)
			}
			// Jobs already due (zero or past NotBefore) do not wait.
			if j.NotBefore.After(now) && (next.IsZero() || j.NotBefore.Before(next)) {
				next = j.NotBefore
			}
			return nil
		})
	})
	return next, err
}

// FinishJob removes a job from the queue and applies c (when not nil)
// in the same transaction so the image never ends up finished without its
// final state or vice versa.
func (s *Store) FinishJob(job Job, c *Change) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		var cur Job
		switch err := getJSON(tx.Bucket(bucketJobs), itob(job.ID), &cur); {
		case err == nil:
			if err := s.owns(cur); err != nil {
				return err
			}
		case !errors.Is(err, ErrNotFound):
			return err
		}
		if err := deleteJob(tx, job); err != nil {
			return err
		}
		if c == nil {
			return nil
		}
		var err error
		img, err = transition(tx, job.Image, *c, s.now().UTC())
		return err
	})
	return img, err
}

// RetryJob records a failed attempt: the image moves to failed with the
// reason, and the job waits until notBefore.
func (s *Store) RetryJob(job Job, notBefore time.Time, c Change) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		var cur Job
		if err := getJSON(jobs, itob(job.ID), &cur); err != nil {
			return fmt.Errorf("job %d: %w", job.ID, err)
		}
		if err := s.owns(cur); err != nil {
			return err
		}
		cur.Attempts++
		cur.NotBefore = notBefore
		// Free for whichever process finds it due.
		cur.Owner, cur.LeaseUntil = "", time.Time{}
		if err := putJSON(jobs, itob(job.ID), &cur); err != nil {
			return err
		}
		inner := c.Mutate
		c.Mutate = func(img *Image) error {
			img.Attempts = cur.Attempts
			if inner != nil {
				return inner(img)
			}
			return nil
		}
		var err error
		img, err = transition(tx, job.Image, c, s.now().UTC())
		return err
	})
	return img, err
}

func deleteJob(tx kv.Tx, job Job) error {
	if err := tx.Bucket(bucketJobs).Delete(itob(job.ID)); err != nil {
		return err
	}
	idx := tx.Bucket(bucketJobIndex)
	key := []byte(job.Image.String())
	if id := idx.Get(key); id != nil && binary.BigEndian.Uint64(id) == job.ID {
		return idx.Delete(key)
	}
	return nil
}

// Jobs lists the queued jobs, oldest first.
func (s *Store) Jobs() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx kv.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("decode job %x: %w", k, err)
			}
			out = append(out, j)
			return nil
		})
	})
	return out, err
}

// QueueDepth returns the number of queued jobs.
func (s *Store) QueueDepth() int {
	n := 0
	_ = s.db.View(func(tx kv.Tx) error {
		n = tx.Bucket(bucketJobs).KeyN()
		return nil
	})
	return n
}

// Job returns the queued job for ref, if any.
func (s *Store) Job(ref Ref) (Job, error) {
	var job Job
	err := s.db.View(func(tx kv.Tx) error {
		id := tx.Bucket(bucketJobIndex).Get([]byte(ref.String()))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bucketJobs), id, &job)
	})
	if errors.Is(err, ErrNotFound) {
		return job, ErrNotFound
	}
	return job, err
}
