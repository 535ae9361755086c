package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/opencontainers/go-digest"
)

var (
	bucketImages   = []byte("images")
	bucketContent  = []byte("content")
	bucketTags     = []byte("tags")
	bucketJobs     = []byte("jobs")
	bucketJobIndex = []byte("jobindex")
	bucketAudit    = []byte("audit")
	// bucketVulns maps "<vuln id>\x00<image key>" to a vulnEntry; the
	// "where is CVE-X?" lookup is a prefix scan.
	bucketVulns = []byte("vulns")
	// bucketImageVulns maps an image key to the vuln IDs it has in
	// bucketVulns, so a new scan replaces the old entries.
	bucketImageVulns = []byte("imagevulns")
	// bucketLinks maps "<upstream>/<repo>@<digest>\x00<role>\x00<parent>"
	// to a Link: the roles in which manifests reference a digest.
	bucketLinks = []byte("links")
)

// maxTagHistory bounds the digests remembered per tag.
const maxTagHistory = 64

// Store is the state store, on a kv.DB: a bbolt file (one process) or a
// PostgreSQL database (several replicas). It is safe for concurrent use.
type Store struct {
	db    kv.DB
	now   func() time.Time
	owner string
	lease time.Duration
	// static is the memory of fail-static serving (nil when off).
	static *staticDecisions

	mu      sync.Mutex
	changed chan struct{}
	stop    context.CancelFunc
	watched chan struct{}
}

// Option configures a Store.
type Option func(*Store)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// buckets are the buckets every store has.
var buckets = [][]byte{
	bucketImages, bucketContent, bucketTags, bucketJobs, bucketJobIndex, bucketAudit,
	bucketVulns, bucketImageVulns, bucketLinks, bucketAuditRuns, bucketAuditMeta, bucketLeases,
	bucketPulls,
	bucketOutbox, bucketOutboxMeta, bucketEventSinks,
	bucketWatches,
	bucketTokens,
	bucketSessions,
}

// Open opens (creating if needed) the bbolt file at path. It fails fast,
// with a clear error, when another process holds the file. The file is
// this process's alone, so pipeline leases left by an earlier run of it
// (killed mid-job) are released: its jobs resume at once.
func Open(path string, opts ...Option) (*Store, error) {
	db, err := kv.OpenBolt(path)
	if err != nil {
		return nil, err
	}
	s, err := New(db, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	if err := s.releaseLeases(); err != nil {
		s.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	return s, nil
}

// New returns a store on db. When db is shared by several processes
// (kv.Watcher), Changed also fires for their commits.
func New(db kv.DB, opts ...Option) (*Store, error) {
	s := &Store{db: db, now: time.Now, changed: make(chan struct{}), owner: newOwner(), lease: DefaultLease}
	for _, o := range opts {
		o(s)
	}
	err := db.Update(func(tx kv.Tx) error {
		for _, b := range buckets {
			if err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if w, ok := db.(kv.Watcher); ok {
		ctx, cancel := context.WithCancel(context.Background())
		s.stop, s.watched = cancel, make(chan struct{})
		go func() {
			defer close(s.watched)
			w.Watch(ctx, s.notify)
		}()
	}
	return s, nil
}

// Close stops watching for other replicas' changes and closes the database.
func (s *Store) Close() error {
	if s.stop != nil {
		s.stop()
		<-s.watched
	}
	return s.db.Close()
}

// Ping checks that the state can be read: a round trip to PostgreSQL, a
// read transaction on bbolt. Cheap enough for every readiness probe.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.db.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return s.db.View(func(tx kv.Tx) error {
		_, _ = tx.Bucket(bucketImages).Cursor().First()
		return nil
	})
}

// Shared reports whether the store is shared with other processes.
func (s *Store) Shared() bool { return kv.Shared(s.db) }

// Changed returns a channel that is closed at the next committed state
// change (of any replica sharing the store). Take the channel before
// reading the state to never miss a change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Image returns the record of ref.
func (s *Store) Image(ref Ref) (Image, error) {
	var img Image
	err := s.db.View(func(tx kv.Tx) error {
		return getJSON(tx.Bucket(bucketImages), []byte(ref.String()), &img)
	})
	return img, err
}

// Images lists every image record, optionally only those in state st.
func (s *Store) Images(st State) ([]Image, error) {
	var out []Image
	err := s.db.View(func(tx kv.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			if st != "" {
				// Most records are in another state: read the state
				// alone first (BenchmarkImagesByState).
				got, err := recordState(v)
				if err != nil {
					return fmt.Errorf("decode image %s: %w", k, err)
				}
				if got != st {
					return nil
				}
			}
			var img Image
			if err := json.Unmarshal(v, &img); err != nil {
				return fmt.Errorf("decode image %s: %w", k, err)
			}
			out = append(out, img)
			return nil
		})
	})
	return out, err
}

// recordState reads the state of an encoded Image. encoding/json writes
// fields in declaration order, so "state" comes within the first few
// keys, after the Ref's plain strings: scanning those is a small part of
// decoding the record. A record laid out otherwise (a nested value or an
// escaped string first, "state" more than once) is decoded as a whole,
// for its state alone.
func recordState(v []byte) (State, error) {
	stateKey := []byte(`"state"`)
	i := 0
	skip := func() {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
			i++
		}
	}
	// str reads a string without escapes at i; false when there is none.
	str := func() ([]byte, bool) {
		skip()
		if i >= len(v) || v[i] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(v[i+1:], '"')
		if end < 0 || bytes.IndexByte(v[i+1:i+1+end], '\\') >= 0 {
			return nil, false
		}
		s := v[i+1 : i+1+end]
		i += end + 2
		return s, true
	}
	skip()
	if i < len(v) && v[i] == '{' {
		i++
		for range 8 {
			key, ok := str()
			if skip(); !ok || i >= len(v) || v[i] != ':' {
				break
			}
			i++
			val, ok := str()
			if !ok {
				break
			}
			if string(key) == "state" {
				if bytes.Count(v, stateKey) == 1 {
					return State(val), nil
				}
				// The key again later (which encoding/json would
				// take), or the word elsewhere: decode.
				break
			}
			if skip(); i >= len(v) || v[i] != ',' {
				break
			}
			i++
		}
	}
	var head struct {
		State State `json:"state"`
	}
	if err := json.Unmarshal(v, &head); err != nil {
		return "", err
	}
	return head.State, nil
}

// Request makes sure ref has a record and, unless it is approved or waits
// for an admin decision, a queued pull job. However many clients ask at
// once, one record and one job result. It returns the record and whether
// this call queued a job.
//
// A failed image is queued again only when its failure was transient and
// its RetryAt has passed (see needsJob): pulls are anonymous, and must
// not be able to turn one broken image into endless jobs and audit entries.
func (s *Store) Request(ref Ref, actor string) (Image, bool, error) {
	// Fast path without a write transaction: most requests find the
	// image already known and queued.
	img, err := s.Image(ref)
	if err == nil && !needsJob(img, s.now()) {
		return img, false, nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return img, false, err
	}
	queued := false
	err = s.update(func(tx kv.Tx) error {
		queued = false
		images := tx.Bucket(bucketImages)
		key := []byte(ref.String())
		now := s.now().UTC()
		err := getJSON(images, key, &img)
		switch {
		case errors.Is(err, ErrNotFound):
			img = Image{Ref: ref, State: StatePending, Created: now, Updated: now, Reason: "queued for the pipeline",
				// A pull by tag records the tag before the image exists.
				Tags: currentTags(tx, ref)}
			if err := putJSON(images, key, &img); err != nil {
				return err
			}
			if err := appendAudit(tx, Entry{Time: now, Actor: actor, Image: ref.String(), To: StatePending, Action: "request", Reason: "first pull"}); err != nil {
				return err
			}
		case err != nil:
			return err
		case !needsJob(img, now):
			return nil
		}
		if hasJob(tx, ref) {
			return nil
		}
		if img.State == StateFailed {
			from := img.State
			img.State, img.Reason, img.Attempts, img.Updated = StatePending, "queued again by a pull", 0, now
			img.RetryAt, img.Approvals = time.Time{}, nil
			if err := putJSON(images, key, &img); err != nil {
				return err
			}
			if err := appendAudit(tx, Entry{Time: now, Actor: actor, Image: ref.String(), From: from, To: StatePending, Action: "request", Reason: "pulled again after failure"}); err != nil {
				return err
			}
		}
		if img.State == StatePurged {
			if err := requeuePurged(tx, &img, actor, now); err != nil {
				return err
			}
		}
		queued = true
		_, err = enqueue(tx, Job{Kind: JobPull, Image: ref, Created: now, Actor: actor})
		return err
	})
	return img, queued, err
}

// currentTags lists the tags of ref's repository that resolve to ref's digest.
func currentTags(tx kv.Tx, ref Ref) []string {
	var out []string
	prefix := []byte(ref.Repo() + ":")
	c := tx.Bucket(bucketTags).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var t Tag
		if json.Unmarshal(v, &t) != nil {
			continue
		}
		if cur, ok := t.Current(); ok && cur.Digest == ref.Digest {
			out = append(out, t.Name)
		}
	}
	return out
}

// needsJob reports whether a pull at now should queue pipeline work for
// img: an image in the pipeline (its job may be gone after a crash), or a
// failed one whose failure was transient once its RetryAt has passed. A
// permanent failure waits for an admin's rescan.
func needsJob(img Image, now time.Time) bool {
	switch {
	case img.State.InPipeline():
		return true
	case img.State == StateFailed:
		return !img.Permanent && !now.Before(img.RetryAt)
	case img.State == StatePurged:
		// Retention released its content: a pull fetches it again and
		// runs the whole pipeline, like a new image.
		return true
	}
	return false
}

// Change is one state transition.
type Change struct {
	// From lists the states the transition is allowed from; empty allows any.
	From []State
	// To is the new state; empty keeps the state (an audited update).
	To State
	// Actor is who made the change ("pipeline", "pull", or the admin API
	// identity: "admin" or an API token's name).
	Actor string
	// Action names the change in the audit log ("approve", "revoke", "step:fetch").
	Action string
	// Reason is why, shown to clients and admins.
	Reason string
	// Mutate, if set, edits the record inside the same transaction.
	Mutate func(*Image) error
}

// Transition applies c to ref's record and appends its audit entry, in one
// transaction. It returns ErrConflict when the record is not in c.From.
func (s *Store) Transition(ref Ref, c Change) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		var err error
		img, err = transition(tx, ref, c, s.now().UTC())
		return err
	})
	return img, err
}

func transition(tx kv.Tx, ref Ref, c Change, now time.Time) (Image, error) {
	images := tx.Bucket(bucketImages)
	key := []byte(ref.String())
	var img Image
	if err := getJSON(images, key, &img); err != nil {
		return img, fmt.Errorf("%s: %w", ref, err)
	}
	if len(c.From) > 0 && !slices.Contains(c.From, img.State) {
		return img, fmt.Errorf("%s is %s, not %v: %w", ref, img.State, c.From, ErrConflict)
	}
	from, prevFlag := img.State, img.Flag
	if c.Mutate != nil {
		if err := c.Mutate(&img); err != nil {
			return img, err
		}
	}
	if c.To != "" {
		img.State = c.To
		img.Reason = c.Reason
		// Pending approvals were given to the image as it was: any
		// decision that sets its state (even the same one again) ends them.
		img.Approvals = nil
	}
	img.Updated = now
	if img.State == StateApproved && from != StateApproved {
		img.ApprovedAt, img.ApprovedBy = now, c.Actor
	}
	if err := putJSON(images, key, &img); err != nil {
		return img, err
	}
	e := Entry{Time: now, Actor: c.Actor, Image: ref.String(), From: from, To: img.State, Action: c.Action, Reason: c.Reason}
	if err := appendAudit(tx, e); err != nil {
		return img, err
	}
	// The event exists iff the transition commits (outbox.go).
	return img, recordEvents(tx, from, prevFlag, img, c, now)
}

// RecordTag stores that tag now resolves to d upstream and returns the
// tag's history. It also adds the tag name to the image record, if any.
func (s *Store) RecordTag(upstream, repo, tag string, d digest.Digest, mediaType string) (Tag, error) {
	var t Tag
	key := []byte(upstream + "/" + repo + ":" + tag)
	// Re-resolving a tag to the digest it already has is the common case:
	// skip the write transaction for it.
	err := s.db.View(func(tx kv.Tx) error { return getJSON(tx.Bucket(bucketTags), key, &t) })
	if err == nil {
		if cur, ok := t.Current(); ok && cur.Digest == d {
			return t, nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		return t, err
	}
	err = s.update(func(tx kv.Tx) error {
		now := s.now().UTC()
		t = Tag{}
		b := tx.Bucket(bucketTags)
		if err := getJSON(b, key, &t); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		t.Upstream, t.Repository, t.Name, t.ResolvedAt = upstream, repo, tag, now
		if cur, ok := t.Current(); ok && cur.Digest == d {
			return putJSON(b, key, &t)
		}
		// A digest seen before moves to the end: it is current again.
		t.History = slices.DeleteFunc(t.History, func(e TagEntry) bool { return e.Digest == d })
		t.History = append(t.History, TagEntry{Digest: d, MediaType: mediaType, FirstSeen: now})
		if len(t.History) > maxTagHistory {
			t.History = t.History[len(t.History)-maxTagHistory:]
		}
		if err := putJSON(b, key, &t); err != nil {
			return err
		}
		ref := Ref{Upstream: upstream, Repository: repo, Digest: d}
		images := tx.Bucket(bucketImages)
		var img Image
		if err := getJSON(images, []byte(ref.String()), &img); err == nil && !slices.Contains(img.Tags, tag) {
			img.Tags = append(img.Tags, tag)
			return putJSON(images, []byte(ref.String()), &img)
		}
		return nil
	})
	return t, err
}

// Tag returns the history of one tag.
func (s *Store) Tag(upstream, repo, tag string) (Tag, error) {
	var t Tag
	err := s.db.View(func(tx kv.Tx) error {
		return getJSON(tx.Bucket(bucketTags), []byte(upstream+"/"+repo+":"+tag), &t)
	})
	return t, err
}

// LastApproved returns the newest digest in the tag's history whose image
// is approved right now and that the tag's refusal (an admin's revoke by
// tag) does not hold back. The stored tag record is authoritative: a
// caller may hold a Tag read before the admin acted.
func (s *Store) LastApproved(t Tag) (Image, bool, error) {
	var out Image
	found := false
	err := s.db.View(func(tx kv.Tx) error {
		var stored Tag
		switch err := getJSON(tx.Bucket(bucketTags), tagKey(t.Upstream, t.Repository, t.Name), &stored); {
		case err == nil:
			t = stored
		case !errors.Is(err, ErrNotFound):
			return err
		}
		images := tx.Bucket(bucketImages)
		for i := len(t.History) - 1; i >= 0; i-- {
			var img Image
			ref := Ref{Upstream: t.Upstream, Repository: t.Repository, Digest: t.History[i].Digest}
			err := getJSON(images, []byte(ref.String()), &img)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if img.State == StateApproved && !t.Refusal.Refuses(img) {
				out, found = img, true
				return nil
			}
		}
		return nil
	})
	return out, found, err
}

// tagKey is the key of a tag record: "<upstream>/<repo>:<tag>".
func tagKey(upstream, repo, tag string) []byte {
	return []byte(upstream + "/" + repo + ":" + tag)
}

// Tags lists the tag records of one repository, sorted by name.
func (s *Store) Tags(upstream, repo string) ([]Tag, error) {
	var out []Tag
	prefix := []byte(upstream + "/" + repo + ":")
	err := s.db.View(func(tx kv.Tx) error {
		c := tx.Bucket(bucketTags).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			// "repo:tag" keys of a longer repository name share no prefix
			// with this one because ':' cannot appear in a repository.
			var t Tag
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode tag %s: %w", k, err)
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// Audit returns audit entries, newest first; image filters by the image
// key ("" for all), limit caps the count (0 for no cap).
func (s *Store) Audit(image string, limit int) ([]Entry, error) {
	var out []Entry
	err := s.db.View(func(tx kv.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode audit %x: %w", k, err)
			}
			if image != "" && e.Image != image && !strings.HasPrefix(e.Image, image+"@") {
				continue
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// Record appends an audit entry that changes no state (e.g. "rescan requested").
func (s *Store) Record(e Entry) error {
	return s.db.Update(func(tx kv.Tx) error {
		if e.Time.IsZero() {
			e.Time = s.now().UTC()
		}
		return appendAudit(tx, e)
	})
}

// update runs fn in a write transaction and wakes Changed waiters after it commits.
func (s *Store) update(fn func(kv.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return err
	}
	s.notify()
	return nil
}

func getJSON(b kv.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func putJSON(b kv.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put(key, raw)
}

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Buckets returns the names of the buckets a store keeps, for copying a
// store to another engine (kv.Export, kv.Copy).
func Buckets() [][]byte {
	out := make([][]byte, len(buckets))
	copy(out, buckets)
	return out
}
