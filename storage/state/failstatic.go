package state

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/kv"
)

// failStaticMax bounds the approvals remembered for fail-static serving:
// the set is filled by requests, so it must not grow with them. Past the
// bound the oldest sightings go first.
const failStaticMax = 200_000

// WithFailStatic makes decisions survive a state database that cannot be
// reached, for window: a manifest or blob this process saw served (its
// image approved) less than window ago is served again; anything else is
// refused with the database error (the proxy answers 503). Zero (the
// default) refuses everything while the database is away.
//
// The trade-off, documented for state.fail_static: while this process
// cannot reach the database it cannot see a revoke either, so a revoke
// made meanwhile through a replica that still reaches it is honoured here
// only when the window ends or the database is back.
func WithFailStatic(window time.Duration) Option {
	return func(s *Store) {
		if window > 0 {
			s.static = &staticDecisions{window: window, seen: map[string]staticSeen{}}
		}
	}
}

type staticSeen struct {
	dec Decision
	at  time.Time
}

type staticDecisions struct {
	window time.Duration

	mu    sync.Mutex
	seen  map[string]staticSeen
	order []string // insertion order, for the bound
	down  time.Time
}

// Degraded reports whether the state database was unreachable at the
// last decision, and since when.
func (s *Store) Degraded() (bool, time.Time) {
	if s.static == nil {
		return false, time.Time{}
	}
	s.static.mu.Lock()
	defer s.static.mu.Unlock()
	return !s.static.down.IsZero(), s.static.down
}

// FailStatic returns the fail-static window (0 when off).
func (s *Store) FailStatic() time.Duration {
	if s.static == nil {
		return 0
	}
	return s.static.window
}

// decide runs a decision and, with fail-static on, remembers what it
// served and answers from that memory while the database is away.
func (s *Store) decide(kind, upstream, repo string, d digest.Digest, rule func(view, Ref) (Decision, error)) (Decision, error) {
	var dec Decision
	ref := Ref{Upstream: upstream, Repository: repo, Digest: d}
	err := s.db.View(func(tx kv.Tx) error {
		var err error
		dec, err = rule(txView{tx}, ref)
		return err
	})
	fs := s.static
	if fs == nil {
		return dec, err
	}
	key := kind + "\x00" + ref.String()
	now := s.now()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if err == nil {
		fs.down = time.Time{}
		if dec.Serve {
			fs.remember(key, dec, now)
		} else {
			delete(fs.seen, key)
		}
		return dec, nil
	}
	if !errors.Is(err, kv.ErrUnavailable) {
		return dec, err
	}
	if fs.down.IsZero() {
		fs.down = now
	}
	if seen, ok := fs.seen[key]; ok && now.Sub(seen.at) < fs.window {
		return seen.dec, nil
	}
	return dec, fmt.Errorf("%w (fail-static: %s not seen approved in the last %s)", err, ref, fs.window)
}

func (fs *staticDecisions) remember(key string, dec Decision, now time.Time) {
	if _, ok := fs.seen[key]; !ok {
		fs.order = append(fs.order, key)
	}
	fs.seen[key] = staticSeen{dec: dec, at: now}
	for len(fs.order) > failStaticMax {
		delete(fs.seen, fs.order[0])
		fs.order = fs.order[1:]
	}
	if cap(fs.order) > 4*failStaticMax {
		// Reslicing from the front never frees the array: copy now and then.
		fs.order = append([]string(nil), fs.order...)
	}
}
