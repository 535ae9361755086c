package state

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/kv"
)

// The event outbox: state changes that webhooks announce, written in the
// same transaction as the change itself, so an event exists if and only
// if its change committed. Each event gets the next sequence number of
// bucketOutbox (its key) and an ID that never changes, so a receiver can
// drop the duplicates at-least-once delivery may bring.
//
// Every webhook endpoint has a delivery cursor in bucketEventSinks: the
// sequence number through which it has taken (or, by its filters, skipped)
// every event. An endpoint takes events strictly in outbox order, which
// keeps the order of every image's events; an event that every cursor has
// passed is pruned. The outbox is bounded (Outbox.MaxPending): beyond the
// bound the oldest events are dropped, counted, and each cursor behind
// them counts them as lost for its endpoint.
var (
	// bucketOutbox maps a sequence number (big-endian) to an Event.
	bucketOutbox = []byte("outbox")
	// bucketOutboxMeta holds the outbox's configuration (keyOutboxConfig;
	// its absence means no outbox: nothing is recorded) and the count of
	// dropped events (keyOutboxDropped).
	bucketOutboxMeta = []byte("outboxmeta")
	// bucketEventSinks maps an endpoint name to its EndpointState.
	bucketEventSinks = []byte("eventsinks")

	keyOutboxConfig  = []byte("config")
	keyOutboxDropped = []byte("dropped")
)

// Event types. An image entering any state outside the pipeline emits
// EventImagePrefix + state (awaiting-approval, approved, rejected, failed,
// revoked, purged, ...); see ImageEventType.
const (
	// EventImagePrefix starts the type of every image event.
	EventImagePrefix = "dev.airlock.image."
	// EventFlagged: a rescan (with scan.on_rescan_fail: flag) or the
	// malware step (malware.action: flag) set or changed an image's flag;
	// the image stays in its state.
	EventFlagged = EventImagePrefix + "flagged"
	// EventVulnDBUpdated: a new vulnerability database was installed
	// (airlock db import, or the scheduled update).
	EventVulnDBUpdated = "dev.airlock.vulndb.updated"
	// EventMalwareDBUpdated: clamd's signatures changed (airlock malware
	// reload, or malware.db_dir changed).
	EventMalwareDBUpdated = "dev.airlock.malwaredb.updated"
)

// ImageEventType returns the type of the event an image entering st emits.
func ImageEventType(st State) string { return EventImagePrefix + string(st) }

// EventTypes lists every event type the store can emit.
func EventTypes() []string {
	var out []string
	for _, st := range States {
		if !st.InPipeline() {
			out = append(out, ImageEventType(st))
		}
	}
	return append(out, EventFlagged, EventVulnDBUpdated, EventMalwareDBUpdated)
}

// Event is one entry of the outbox.
type Event struct {
	// Seq is the event's position in the outbox: events are delivered in
	// Seq order.
	Seq uint64 `json:"seq"`
	// ID is unique and stable: a redelivery carries the same ID.
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Subject is the image ("<upstream>/<repo>@<digest>") of an image event.
	Subject string    `json:"subject,omitempty"`
	Data    EventData `json:"data"`
}

// EventData is what an event says about its image or database.
type EventData struct {
	Image      string        `json:"image,omitempty"`
	Upstream   string        `json:"upstream,omitempty"`
	Repository string        `json:"repository,omitempty"`
	Digest     digest.Digest `json:"digest,omitempty"`
	// State is the image's state after the change, From the one before.
	State State  `json:"state,omitempty"`
	From  State  `json:"from,omitempty"`
	Flag  string `json:"flag,omitempty"`
	// Reason is the change's reason (an admin's words, a policy's verdict).
	Reason   string   `json:"reason,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Actor    string   `json:"actor,omitempty"`
	Action   string   `json:"action,omitempty"`
	Attempts int      `json:"attempts,omitempty"`
	// Severities counts the vulnerabilities of the image's last scan.
	Severities map[string]int `json:"severities,omitempty"`
	// Violations lists the first failed policy rules.
	Violations []string `json:"violations,omitempty"`
	// DB describes the database of a vulndb or malwaredb event.
	DB *EventDB `json:"db,omitempty"`
}

// EventDB describes an installed vulnerability or malware database.
type EventDB struct {
	Built         time.Time `json:"built,omitzero"`
	SchemaVersion string    `json:"schema_version,omitempty"`
	Checksum      string    `json:"checksum,omitempty"`
	Source        string    `json:"source,omitempty"`
	// Detail says more, e.g. clamd's version line.
	Detail string `json:"detail,omitempty"`
}

// outboxConfig is the stored configuration of the outbox.
type outboxConfig struct {
	MaxPending int `json:"max_pending"`
}

// EndpointState is an endpoint's delivery progress.
type EndpointState struct {
	Name string `json:"name"`
	// Delivered is the sequence number through which the endpoint has
	// taken or skipped every event.
	Delivered uint64 `json:"delivered"`
	// Sent, Skipped and Lost count events posted, left out by the
	// endpoint's filters, and dropped by the bound before it took them.
	Sent    uint64 `json:"sent"`
	Skipped uint64 `json:"skipped"`
	Lost    uint64 `json:"lost,omitempty"`
	// Attempts counts the failed attempts at the next event (FailingSeq).
	Attempts    int       `json:"attempts,omitempty"`
	FailingSeq  uint64    `json:"failing_seq,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// NextAttempt is when the failing event is tried again.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Since       time.Time `json:"since"`
}

// EndpointStatus is an endpoint's state plus how many events wait for it.
type EndpointStatus struct {
	EndpointState
	Pending uint64 `json:"pending"`
}

// OutboxStatus is what `airlock events` shows.
type OutboxStatus struct {
	Enabled    bool   `json:"enabled"`
	MaxPending int    `json:"max_pending,omitempty"`
	Kept       int    `json:"kept"`
	FirstSeq   uint64 `json:"first_seq,omitempty"`
	LastSeq    uint64 `json:"last_seq"`
	// Dropped counts events the bound dropped before every endpoint took them.
	Dropped   uint64           `json:"dropped"`
	Endpoints []EndpointStatus `json:"endpoints"`
	// Recent lists the newest events kept, newest first.
	Recent []Event `json:"recent"`
}

// Progress is what a deliverer reports with AckEvents.
type Progress struct {
	Sent, Skipped, Lost uint64
}

// pruneOutboxBatch bounds the delivered events one transaction prunes.
const pruneOutboxBatch = 1000

// ConfigureOutbox enables the outbox for the named endpoints, keeping at
// most maxPending events: an endpoint seen for the first time starts at
// the current end of the outbox (it gets the events recorded from now
// on), and the progress of endpoints no longer named is dropped. With no
// endpoints the outbox is disabled and emptied: no events are recorded.
// Processes sharing a store must configure the same endpoints.
func (s *Store) ConfigureOutbox(endpoints []string, maxPending int) error {
	return s.db.Update(func(tx kv.Tx) error {
		meta, sinks := tx.Bucket(bucketOutboxMeta), tx.Bucket(bucketEventSinks)
		if len(endpoints) == 0 {
			if meta.Get(keyOutboxConfig) == nil {
				return nil
			}
			for _, b := range [][]byte{bucketOutbox, bucketOutboxMeta, bucketEventSinks} {
				if err := tx.ClearBucket(b); err != nil {
					return fmt.Errorf("disable outbox: %w", err)
				}
			}
			return nil
		}
		if maxPending < 1 {
			return errors.New("outbox: max pending must be positive")
		}
		if err := putJSON(meta, keyOutboxConfig, outboxConfig{MaxPending: maxPending}); err != nil {
			return err
		}
		tail := tx.Bucket(bucketOutbox).Sequence()
		now := s.now().UTC()
		var stale [][]byte
		err := sinks.ForEach(func(k, _ []byte) error {
			if !slices.Contains(endpoints, string(k)) {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := sinks.Delete(k); err != nil {
				return err
			}
		}
		for _, name := range endpoints {
			if sinks.Get([]byte(name)) != nil {
				continue
			}
			if err := putJSON(sinks, []byte(name), EndpointState{Name: name, Delivered: tail, Since: now}); err != nil {
				return err
			}
		}
		return pruneOutbox(tx)
	})
}

// recordEvents writes the events of one transition (img was from, with
// flag prevFlag, before c) to the outbox in the transition's transaction.
func recordEvents(tx kv.Tx, from State, prevFlag string, img Image, c Change, now time.Time) error {
	if tx.Bucket(bucketOutboxMeta).Get(keyOutboxConfig) == nil {
		return nil
	}
	data := func() EventData {
		d := EventData{
			Image: img.Ref.String(), Upstream: img.Upstream, Repository: img.Repository, Digest: img.Digest,
			State: img.State, From: from, Flag: img.Flag, Reason: c.Reason, Tags: img.Tags,
			Actor: c.Actor, Action: c.Action, Attempts: img.Attempts,
		}
		if d.Reason == "" {
			d.Reason = img.Reason
		}
		if img.Scan != nil {
			d.Severities = img.Scan.Severities
		}
		if img.Policy != nil && !img.Policy.Pass {
			d.Violations = img.Policy.Violations
		}
		return d
	}
	if img.State != from && !img.State.InPipeline() {
		ev := Event{Type: ImageEventType(img.State), Time: now, Subject: img.Ref.String(), Data: data()}
		if _, err := appendEvent(tx, ev); err != nil {
			return err
		}
	}
	if img.Flag != "" && img.Flag != prevFlag {
		d := data()
		d.Reason = img.Flag
		ev := Event{Type: EventFlagged, Time: now, Subject: img.Ref.String(), Data: d}
		if _, err := appendEvent(tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// appendEvent writes ev with the next sequence number and a new ID, then
// drops the oldest events beyond the bound. The outbox must be enabled.
func appendEvent(tx kv.Tx, ev Event) (Event, error) {
	var cfg outboxConfig
	if err := getJSON(tx.Bucket(bucketOutboxMeta), keyOutboxConfig, &cfg); err != nil {
		return ev, fmt.Errorf("outbox config: %w", err)
	}
	b := tx.Bucket(bucketOutbox)
	seq, err := b.NextSequence()
	if err != nil {
		return ev, fmt.Errorf("outbox sequence: %w", err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return ev, fmt.Errorf("event id: %w", err)
	}
	ev.Seq = seq
	ev.ID = fmt.Sprintf("%012d-%s", seq, hex.EncodeToString(rnd[:]))
	ev.Time = ev.Time.UTC()
	if err := putJSON(b, itob(seq), &ev); err != nil {
		return ev, err
	}
	// Events are only ever removed from the front, so the kept ones are
	// the contiguous range first..seq.
	k, _ := b.Cursor().First()
	if k == nil || cfg.MaxPending <= 0 {
		return ev, nil
	}
	first := binary.BigEndian.Uint64(k)
	kept := seq - first + 1
	if kept <= uint64(cfg.MaxPending) {
		return ev, nil
	}
	drop := kept - uint64(cfg.MaxPending)
	for i := uint64(0); i < drop; i++ {
		if err := b.Delete(itob(first + i)); err != nil {
			return ev, fmt.Errorf("outbox bound: %w", err)
		}
	}
	meta := tx.Bucket(bucketOutboxMeta)
	var dropped uint64
	if v := meta.Get(keyOutboxDropped); len(v) == 8 {
		dropped = binary.BigEndian.Uint64(v)
	}
	return ev, meta.Put(keyOutboxDropped, itob(dropped+drop))
}

// EmitEvent records an event that is not an image transition (a new
// vulnerability DB) in its own transaction. It reports false, recording
// nothing, when the outbox is disabled.
func (s *Store) EmitEvent(typ, subject string, data EventData) (Event, bool, error) {
	var ev Event
	recorded := false
	err := s.update(func(tx kv.Tx) error {
		if tx.Bucket(bucketOutboxMeta).Get(keyOutboxConfig) == nil {
			return nil
		}
		var err error
		ev, err = appendEvent(tx, Event{Type: typ, Time: s.now(), Subject: subject, Data: data})
		recorded = err == nil
		return err
	})
	return ev, recorded, err
}

// PendingEvents returns endpoint's progress and up to limit events after
// it, in order. ErrNotFound means the endpoint is not configured.
func (s *Store) PendingEvents(endpoint string, limit int) (EndpointState, []Event, error) {
	var (
		st  EndpointState
		out []Event
	)
	err := s.db.View(func(tx kv.Tx) error {
		if err := getJSON(tx.Bucket(bucketEventSinks), []byte(endpoint), &st); err != nil {
			return fmt.Errorf("endpoint %s: %w", endpoint, err)
		}
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(itob(st.Delivered + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event %x: %w", k, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	return st, out, err
}

// AckEvents records that endpoint has handled every event through seq
// (posted, or skipped by its filters), clears its failure, and prunes
// events every endpoint has handled.
func (s *Store) AckEvents(endpoint string, through uint64, p Progress) error {
	return s.db.Update(func(tx kv.Tx) error {
		sinks := tx.Bucket(bucketEventSinks)
		var st EndpointState
		if err := getJSON(sinks, []byte(endpoint), &st); err != nil {
			return fmt.Errorf("endpoint %s: %w", endpoint, err)
		}
		if through > st.Delivered {
			st.Delivered = through
		}
		st.Sent += p.Sent
		st.Skipped += p.Skipped
		st.Lost += p.Lost
		if st.FailingSeq <= st.Delivered {
			st.Attempts, st.FailingSeq, st.NextAttempt = 0, 0, time.Time{}
		}
		if p.Sent > 0 {
			st.LastSuccess = s.now().UTC()
		}
		if err := putJSON(sinks, []byte(endpoint), &st); err != nil {
			return err
		}
		return pruneOutbox(tx)
	})
}

// EventFailed records a failed delivery of the event seq to endpoint and
// when it is tried again; it returns the endpoint's state.
func (s *Store) EventFailed(endpoint string, seq uint64, msg string, next time.Time) (EndpointState, error) {
	var st EndpointState
	err := s.db.Update(func(tx kv.Tx) error {
		sinks := tx.Bucket(bucketEventSinks)
		if err := getJSON(sinks, []byte(endpoint), &st); err != nil {
			return fmt.Errorf("endpoint %s: %w", endpoint, err)
		}
		if st.FailingSeq != seq {
			st.Attempts = 0
		}
		st.Attempts++
		st.FailingSeq, st.LastError, st.LastErrorAt, st.NextAttempt = seq, msg, s.now().UTC(), next.UTC()
		return putJSON(sinks, []byte(endpoint), &st)
	})
	return st, err
}

// pruneOutbox removes up to pruneOutboxBatch events that every endpoint
// has handled.
func pruneOutbox(tx kv.Tx) error {
	var low uint64
	found := false
	err := tx.Bucket(bucketEventSinks).ForEach(func(k, v []byte) error {
		var st EndpointState
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("decode endpoint %s: %w", k, err)
		}
		if !found || st.Delivered < low {
			low, found = st.Delivered, true
		}
		return nil
	})
	if err != nil || !found {
		return err
	}
	b := tx.Bucket(bucketOutbox)
	var del [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= low && len(del) < pruneOutboxBatch; k, _ = c.Next() {
		del = append(del, append([]byte(nil), k...))
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("prune outbox: %w", err)
		}
	}
	return nil
}

// Outbox reports the outbox: its bounds, every endpoint's progress and
// failure, and the newest recent events.
func (s *Store) Outbox(recent int) (OutboxStatus, error) {
	var out OutboxStatus
	err := s.db.View(func(tx kv.Tx) error {
		meta := tx.Bucket(bucketOutboxMeta)
		var cfg outboxConfig
		switch err := getJSON(meta, keyOutboxConfig, &cfg); {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		out.Enabled, out.MaxPending = true, cfg.MaxPending
		if v := meta.Get(keyOutboxDropped); len(v) == 8 {
			out.Dropped = binary.BigEndian.Uint64(v)
		}
		b := tx.Bucket(bucketOutbox)
		out.LastSeq = b.Sequence()
		c := b.Cursor()
		if k, _ := c.First(); k != nil {
			out.FirstSeq = binary.BigEndian.Uint64(k)
			out.Kept = int(out.LastSeq - out.FirstSeq + 1)
		}
		for k, v := c.Last(); k != nil && len(out.Recent) < recent; k, v = c.Prev() {
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode event %x: %w", k, err)
			}
			out.Recent = append(out.Recent, ev)
		}
		return tx.Bucket(bucketEventSinks).ForEach(func(k, v []byte) error {
			var st EndpointState
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("decode endpoint %s: %w", k, err)
			}
			es := EndpointStatus{EndpointState: st}
			if out.LastSeq > st.Delivered {
				es.Pending = out.LastSeq - st.Delivered
			}
			out.Endpoints = append(out.Endpoints, es)
			return nil
		})
	})
	return out, err
}
