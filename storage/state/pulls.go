package state

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// bucketPulls maps an image key to a pullList: the image's most recent
// pullers, newest first, at most as many as RecordPulls was told to keep.
var bucketPulls = []byte("pulls")

// Puller is one client that pulled an image: its network address and user
// agent, when it last asked, and how often.
type Puller struct {
	// Addr is the client's address as Airlock saw it: the TCP peer, so a
	// load balancer or NAT in front of Airlock shows as itself.
	Addr string `json:"addr"`
	// UserAgent is the client's User-Agent, truncated and stripped of
	// control characters.
	UserAgent string `json:"user_agent,omitempty"`
	// Last is when this client last fetched (GET) or checked (HEAD) the
	// image's manifest.
	Last time.Time `json:"last"`
	// Pulls counts the client's manifest GETs while it was on the list,
	// Heads its manifest HEADs (a tag or digest check that downloaded
	// nothing: kubelet's imagePullPolicy Always, containerd's resolve).
	Pulls int64 `json:"pulls"`
	Heads int64 `json:"heads,omitempty"`
}

// same reports whether p and o are the same client.
func (p Puller) same(o Puller) bool { return p.Addr == o.Addr && p.UserAgent == o.UserAgent }

// PullRecord is what one replica saw of one image's pulls since its last
// flush.
type PullRecord struct {
	Ref Ref
	// Pulls counts manifest GETs; they add to the image's pull_count.
	Pulls int64
	// Last is the latest GET or HEAD; it moves the image's last_pulled
	// forward (never back).
	Last time.Time
	// Pullers are the clients behind these pulls, one entry per client.
	Pullers []Puller
}

// pullList is the stored value of bucketPulls.
type pullList struct {
	Pullers []Puller `json:"pullers"`
}

// MergePullers adds the pullers of add to list: one entry per client
// (address and user agent), with their counts summed and the later time
// kept; the result is sorted newest first and cut to the keep newest. keep
// below 1 keeps none.
func MergePullers(list, add []Puller, keep int) []Puller {
	out := slices.Clone(list)
	for _, p := range add {
		i := slices.IndexFunc(out, p.same)
		if i < 0 {
			out = append(out, p)
			continue
		}
		q := &out[i]
		q.Pulls += p.Pulls
		q.Heads += p.Heads
		if p.Last.After(q.Last) {
			q.Last = p.Last
		}
	}
	slices.SortStableFunc(out, func(a, b Puller) int { return b.Last.Compare(a.Last) })
	if keep < 0 {
		keep = 0
	}
	if len(out) > keep {
		out = out[:keep]
	}
	return out
}

// RecordPulls adds a batch of pull records in one transaction: each
// image's pull_count grows by its GETs, its last_pulled moves forward to
// the latest GET or HEAD, and its list of recent pullers is merged with
// the batch's and cut to the keep newest. Counts add up, so several
// replicas flushing their own batches never overwrite each other's.
// Records of images without a record (never requested, or removed since)
// are skipped: pulls alone never create state.
//
// It writes no audit entry and does not wake Changed waiters: pull
// records change nothing about what is served.
func (s *Store) RecordPulls(batch []PullRecord, keep int) error {
	if len(batch) == 0 {
		return nil
	}
	err := s.db.Update(func(tx kv.Tx) error {
		images, pulls := tx.Bucket(bucketImages), tx.Bucket(bucketPulls)
		for _, rec := range batch {
			key := []byte(rec.Ref.String())
			var img Image
			if err := getJSON(images, key, &img); err != nil {
				// Absent, or a record this version cannot decode:
				// either way not something a pull may write.
				continue
			}
			img.PullCount += rec.Pulls
			if last := rec.Last.UTC(); last.After(img.LastPulled) {
				img.LastPulled = last
			}
			if err := putJSON(images, key, &img); err != nil {
				return err
			}
			var stored pullList
			if err := getJSON(pulls, key, &stored); err != nil && !errors.Is(err, ErrNotFound) {
				// Only pull records: a list that does not decode is
				// replaced rather than blocking every later flush.
				stored = pullList{}
			}
			add := make([]Puller, len(rec.Pullers))
			for i, p := range rec.Pullers {
				p.Last = p.Last.UTC()
				add[i] = p
			}
			stored.Pullers = MergePullers(stored.Pullers, add, keep)
			if err := putJSON(pulls, key, &stored); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record pulls of %d images: %w", len(batch), err)
	}
	return nil
}

// Pulls returns ref's record and its recent pullers, newest first, read in
// one transaction.
func (s *Store) Pulls(ref Ref) (Image, []Puller, error) {
	var img Image
	var list pullList
	err := s.db.View(func(tx kv.Tx) error {
		if err := getJSON(tx.Bucket(bucketImages), []byte(ref.String()), &img); err != nil {
			return err
		}
		if err := getJSON(tx.Bucket(bucketPulls), []byte(ref.String()), &list); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return img, nil, fmt.Errorf("pulls of %s: %w", ref, err)
	}
	return img, list.Pullers, nil
}
