package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/kv"
)

// SweepLease is the named lease the content garbage collector holds while
// it re-checks references and deletes blobs. A writer that records a
// reference to content it found already stored calls WaitSweep after the
// reference committed and then makes sure the content is there: either
// the sweep's re-check (which starts after it took this lease) saw the
// reference, or the writer waited for the sweep to end and stores again
// what it deleted.
const SweepLease = "gc:sweep"

// GCLease is the named lease that makes one retention and GC run at a
// time across the replicas of a shared store.
const GCLease = "gc:run"

// ActorRetention is the audit actor of purges made by retention.
const ActorRetention = "retention"

// LeaseHeld reports whether anyone (this process included) holds the named
// lease unexpired, and until when.
func (s *Store) LeaseHeld(name string) (bool, time.Time, error) {
	var l lease
	found := false
	err := s.db.View(func(tx kv.Tx) error {
		raw := tx.Bucket(bucketLeases).Get([]byte(name))
		if raw == nil {
			return nil
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("decode lease %s: %w", name, err)
		}
		found = true
		return nil
	})
	if err != nil || !found || !l.Until.After(s.now()) {
		return false, time.Time{}, err
	}
	return true, l.Until, nil
}

// WaitSweep returns once no content sweep is running (SweepLease is not
// held, or expired: a collector killed mid-sweep deletes nothing more).
// See SweepLease for the protocol.
func (s *Store) WaitSweep(ctx context.Context) error {
	for {
		changed := s.Changed()
		held, until, err := s.LeaseHeld(SweepLease)
		if err != nil {
			return fmt.Errorf("wait for content sweep: %w", err)
		}
		if !held {
			return nil
		}
		wait := min(max(until.Sub(s.now()), 10*time.Millisecond), time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// RepoLink is a Link with the repository ("<upstream>/<repo>") it was
// recorded in.
type RepoLink struct {
	Repo string
	Link
}

// Snapshot is one consistent read of what retention and the content
// garbage collector decide on: every image record, tag and link.
type Snapshot struct {
	Images []Image
	Tags   []Tag
	Links  []RepoLink
}

// Snapshot reads every image record, tag and link in one read transaction.
func (s *Store) Snapshot() (Snapshot, error) {
	var snap Snapshot
	err := s.db.View(func(tx kv.Tx) error {
		err := tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("decode image %s: %w", k, err)
			}
			snap.Images = append(snap.Images, img)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketTags).ForEach(func(k, v []byte) error {
			var t Tag
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode tag %s: %w", k, err)
			}
			snap.Tags = append(snap.Tags, t)
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketLinks).ForEach(func(k, v []byte) error {
			l, err := decodeLinkKey(k, v)
			if err != nil {
				return err
			}
			snap.Links = append(snap.Links, l)
			return nil
		})
	})
	return snap, err
}

// decodeLinkKey decodes a bucketLinks entry: the key is
// "<upstream>/<repo>@<digest>\x00<role>\x00<parent>" (see linkKey).
func decodeLinkKey(k, v []byte) (RepoLink, error) {
	var l RepoLink
	if err := json.Unmarshal(v, &l.Link); err != nil {
		return l, fmt.Errorf("decode link %q: %w", k, err)
	}
	name, rest, ok := bytes.Cut(k, []byte{0})
	if !ok {
		return l, fmt.Errorf("link key %q: no role", k)
	}
	role, parent, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return l, fmt.Errorf("link key %q: no parent", k)
	}
	at := bytes.LastIndexByte(name, '@')
	if at < 0 {
		return l, fmt.Errorf("link key %q: no digest", k)
	}
	l.Repo = string(name[:at])
	l.Digest, l.Role, l.Parent = digest.Digest(name[at+1:]), Role(role), digest.Digest(parent)
	return l, nil
}

// PurgeCheck is what must still hold when a purge planned on a snapshot
// is applied: an image pinned, pulled or changed since is not purged.
type PurgeCheck struct {
	// From lists the states the image may be purged from.
	From []State
	// LastPulled is the last pull the plan saw: a later pull keeps it.
	LastPulled time.Time
}

// ErrRetained is returned by Purge for an image that must be kept after
// all (pinned, pulled or queued since the plan was made).
var ErrRetained = errors.New("retained")

// Purge moves ref to StatePurged with reason, audited as action "purge" by
// actor, in one transaction, if check still holds and the image has no
// queued job. Its record, tags and audit trail stay; its content is
// released for the garbage collector (the record's digests no longer
// count as references). It fails with ErrConflict when the state moved
// on and ErrRetained when the image was pinned or pulled since.
func (s *Store) Purge(ref Ref, check PurgeCheck, actor, reason string) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		if hasJob(tx, ref) {
			return fmt.Errorf("%s has a queued job: %w", ref, ErrRetained)
		}
		var err error
		img, err = transition(tx, ref, Change{
			From: check.From, To: StatePurged, Actor: actor, Action: "purge", Reason: reason,
			Mutate: func(i *Image) error {
				if i.Pinned {
					return fmt.Errorf("%s is pinned: %w", ref, ErrRetained)
				}
				if i.LastPulled.After(check.LastPulled) {
					return fmt.Errorf("%s was pulled at %s: %w", ref, i.LastPulled.Format(time.RFC3339), ErrRetained)
				}
				i.Attempts, i.Permanent, i.RetryAt, i.Flag = 0, false, time.Time{}, ""
				return nil
			},
		}, s.now().UTC())
		return err
	})
	return img, err
}

// requeuePurged moves a purged image back to pending for a pull, audited:
// the caller queues its pull job, which fetches it again.
func requeuePurged(tx kv.Tx, img *Image, actor string, now time.Time) error {
	got, err := transition(tx, img.Ref, Change{
		From: []State{StatePurged}, To: StatePending, Actor: actor, Action: "request",
		Reason: "pulled again after purge: fetching it again for the whole pipeline",
		Mutate: func(i *Image) error {
			i.Attempts, i.Permanent, i.RetryAt = 0, false, time.Time{}
			return nil
		},
	}, now)
	if err != nil {
		return err
	}
	*img = got
	return nil
}

// SetPinned pins (exempts from retention) or unpins ref, audited as
// action "pin" or "unpin". It fails with ErrConflict when ref already is.
// A pin changes no state: the record's Updated stays when the image
// entered its state, which retention.denied_after counts from (a revoked
// image pinned and unpinned again has been revoked all along).
func (s *Store) SetPinned(ref Ref, pinned bool, actor, reason string) (Image, error) {
	action := "unpin"
	if pinned {
		action = "pin"
	}
	if reason == "" {
		reason = action + "ned by an admin"
		if pinned {
			reason = "pinned by an admin: exempt from retention"
		}
	}
	var img Image
	err := s.update(func(tx kv.Tx) error {
		var updated time.Time
		var err error
		img, err = transition(tx, ref, Change{Actor: actor, Action: action, Reason: reason, Mutate: func(i *Image) error {
			if i.Pinned == pinned {
				return fmt.Errorf("%s is already %sned: %w", ref, action, ErrConflict)
			}
			i.Pinned, updated = pinned, i.Updated
			return nil
		}}, s.now().UTC())
		if err != nil {
			return err
		}
		img.Updated = updated
		return putJSON(tx.Bucket(bucketImages), []byte(ref.String()), &img)
	})
	return img, err
}
