package state

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// bucketLeases maps a lease name (e.g. "fetch:sha256:…") to a lease: who
// does a piece of work that only one process of a shared store should do.
var bucketLeases = []byte("leases")

// DefaultLease is how long a lease lasts unless renewed (gate.lease).
const DefaultLease = 30 * time.Second

// lease is a stored lease.
type lease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// WithOwner names this process in the leases it takes (default: host,
// PID and a random suffix, unique per start).
func WithOwner(id string) Option { return func(s *Store) { s.owner = id } }

// WithLease sets how long job and fetch leases last unless renewed.
func WithLease(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.lease = d
		}
	}
}

func newOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Owner returns the name this process takes leases under.
func (s *Store) Owner() string { return s.owner }

// LeaseDuration returns how long a lease lasts unless renewed.
func (s *Store) LeaseDuration() time.Duration { return s.lease }

// TryLease takes the named lease for this process unless another process
// holds it unexpired. It reports whether this process holds it now (taking
// it again renews it) and, if not, until when the other holds it.
func (s *Store) TryLease(name string) (bool, time.Time, error) {
	held, until := false, time.Time{}
	err := s.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketLeases)
		now := s.now()
		var l lease
		if raw := b.Get([]byte(name)); raw != nil {
			if err := json.Unmarshal(raw, &l); err == nil && l.Owner != s.owner && l.Until.After(now) {
				until = l.Until
				return nil
			}
		}
		held = true
		return putJSON(b, []byte(name), lease{Owner: s.owner, Until: now.Add(s.lease)})
	})
	return held, until, err
}

// ReleaseLease gives up the named lease if this process holds it.
func (s *Store) ReleaseLease(name string) error {
	return s.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketLeases)
		var l lease
		if raw := b.Get([]byte(name)); raw != nil {
			if err := json.Unmarshal(raw, &l); err == nil && l.Owner != s.owner {
				return nil
			}
			return b.Delete([]byte(name))
		}
		return nil
	})
}

// PruneLeases removes expired leases (left by processes killed while
// holding them) and returns how many.
func (s *Store) PruneLeases() (int, error) {
	n := 0
	err := s.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketLeases)
		now := s.now()
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var l lease
			if json.Unmarshal(v, &l) != nil || !l.Until.After(now) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// releaseLeases drops every lease and job lease: a bbolt file is one
// process's, so whatever an earlier run of it held is free again.
func (s *Store) releaseLeases() error {
	return s.db.Update(func(tx kv.Tx) error {
		if err := tx.ClearBucket(bucketLeases); err != nil {
			return err
		}
		jobs := tx.Bucket(bucketJobs)
		var held []Job
		err := jobs.ForEach(func(k, v []byte) error {
			var j Job
			if json.Unmarshal(v, &j) == nil && j.Owner != "" {
				held = append(held, j)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, j := range held {
			j.Owner, j.LeaseUntil = "", time.Time{}
			if err := putJSON(jobs, itob(j.ID), &j); err != nil {
				return err
			}
		}
		return nil
	})
}

// KeepLease renews the named lease, which the caller holds, every third of
// the lease duration until the returned stop is called; stop returns once
// the renewing has ended. A renewal that fails is retried at the next
// tick: the lease expires by itself if this process cannot reach the
// store.
func (s *Store) KeepLease(name string) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(s.LeaseDuration() / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_, _, _ = s.TryLease(name)
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}
