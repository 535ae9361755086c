package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/kv"
)

// bucketWatches holds watched repositories: the ones added through the
// admin API under "def\x00<image>", and the last run of every watch (from
// the config file or the API) under "status\x00<image>", so that any
// replica can report it and only a due watch runs again.
var bucketWatches = []byte("watches")

var (
	watchDefPrefix    = []byte("def\x00")
	watchStatusPrefix = []byte("status\x00")
)

// MaxWatchedTags bounds the tags a watch's status remembers.
const MaxWatchedTags = 1000

// Watch is a watched repository added at run time (airlock watch add).
type Watch struct {
	// Image is "<upstream>/<repository>", canonical (upstream name, not alias).
	Image string `json:"image"`
	// Tags are the tag patterns (glob, "regex:…", "semver:…").
	Tags []string `json:"tags"`
	// Interval is how often the upstream is checked.
	Interval time.Duration `json:"interval"`
	// MaxNewPerRun bounds the pipelines the watch has running at once.
	MaxNewPerRun int `json:"max_new_per_run"`
	// CreatedBy is the admin who added it.
	CreatedBy string `json:"created_by,omitempty"`
	// Created is when it was added.
	Created time.Time `json:"created"`
}

// WatchStatus is what the last run of a watch found and did.
type WatchStatus struct {
	// Image is the watch's "<upstream>/<repository>".
	Image string `json:"image"`
	// LastRun is when the last run started; the next is due Interval after it.
	LastRun time.Time `json:"last_run"`
	// Duration is how long the last run took.
	Duration time.Duration `json:"duration"`
	// Error is why the last run failed or stopped early ("" when it did not).
	Error string `json:"error,omitempty"`
	// Listed is how many tags the upstream listed (at most the cap).
	Listed int `json:"listed"`
	// Truncated says the upstream has more tags than were considered.
	Truncated bool `json:"truncated,omitempty"`
	// Matched is how many listed tags matched the patterns.
	Matched int `json:"matched"`
	// Queued is how many new pipelines the run started.
	Queued int `json:"queued"`
	// Deferred is how many new digests wait for a later run
	// (max_new_per_run was reached).
	Deferred int `json:"deferred,omitempty"`
	// Tags are the matching tags and the digest each pointed to upstream.
	Tags []WatchedTag `json:"tags,omitempty"`
	// Runner is the process (lease owner) that ran it.
	Runner string `json:"runner,omitempty"`
}

// WatchedTag is one matching tag of a watch's last run.
type WatchedTag struct {
	Tag    string        `json:"tag"`
	Digest digest.Digest `json:"digest,omitempty"`
	// State is the digest's image state after the run ("" when unknown).
	State State `json:"state,omitempty"`
	// Error is why the tag could not be resolved or queued.
	Error string `json:"error,omitempty"`
}

func watchKey(prefix []byte, image string) []byte {
	return append(append([]byte(nil), prefix...), image...)
}

// AddWatch stores a watch added at run time, audited as actor's
// "watch-add". A watch of the same image already stored is ErrConflict.
func (s *Store) AddWatch(w Watch, actor string) (Watch, error) {
	if w.Image == "" || strings.ContainsRune(w.Image, 0) {
		return w, errors.New("watch: image must not be empty")
	}
	err := s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketWatches)
		key := watchKey(watchDefPrefix, w.Image)
		if b.Get(key) != nil {
			return fmt.Errorf("watch %s: already watched: %w", w.Image, ErrConflict)
		}
		now := s.now().UTC()
		w.Created, w.CreatedBy = now, actor
		if err := putJSON(b, key, &w); err != nil {
			return err
		}
		return appendAudit(tx, Entry{Time: now, Actor: actor, Image: w.Image, Action: "watch-add",
			Reason: fmt.Sprintf("tags %s every %s", strings.Join(w.Tags, " "), w.Interval)})
	})
	return w, err
}

// RemoveWatch deletes a watch added at run time, and its status, audited
// as actor's "watch-remove". ErrNotFound when no such watch is stored.
func (s *Store) RemoveWatch(image, actor string) error {
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketWatches)
		key := watchKey(watchDefPrefix, image)
		if b.Get(key) == nil {
			return fmt.Errorf("watch %s: %w", image, ErrNotFound)
		}
		if err := b.Delete(key); err != nil {
			return err
		}
		if err := b.Delete(watchKey(watchStatusPrefix, image)); err != nil {
			return err
		}
		return appendAudit(tx, Entry{Time: s.now().UTC(), Actor: actor, Image: image, Action: "watch-remove", Reason: "no longer watched"})
	})
}

// Watches lists the watches added at run time, sorted by image.
func (s *Store) Watches() ([]Watch, error) {
	var out []Watch
	err := s.db.View(func(tx kv.Tx) error {
		c := tx.Bucket(bucketWatches).Cursor()
		for k, v := c.Seek(watchDefPrefix); k != nil && bytes.HasPrefix(k, watchDefPrefix); k, v = c.Next() {
			var w Watch
			if err := json.Unmarshal(v, &w); err != nil {
				return fmt.Errorf("decode watch %q: %w", k[len(watchDefPrefix):], err)
			}
			out = append(out, w)
		}
		return nil
	})
	return out, err
}

// WatchStatus returns the last run of the watch of image (ErrNotFound
// before its first run).
func (s *Store) WatchStatus(image string) (WatchStatus, error) {
	var st WatchStatus
	err := s.db.View(func(tx kv.Tx) error {
		return getJSON(tx.Bucket(bucketWatches), watchKey(watchStatusPrefix, image), &st)
	})
	return st, err
}

// SetWatchStatus records a watch's run. Tags beyond MaxWatchedTags are dropped.
func (s *Store) SetWatchStatus(st WatchStatus) error {
	if st.Image == "" {
		return errors.New("watch status: image must not be empty")
	}
	if len(st.Tags) > MaxWatchedTags {
		st.Tags = st.Tags[:MaxWatchedTags]
	}
	// A plain write: a watch's run is no state change anyone waits for.
	return s.db.Update(func(tx kv.Tx) error {
		return putJSON(tx.Bucket(bucketWatches), watchKey(watchStatusPrefix, st.Image), &st)
	})
}
