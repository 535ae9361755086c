package state

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// ActorPipeline is the audit actor of the pipeline's own transitions; its
// repeated retry transitions are folded (see appendAudit).
const ActorPipeline = "pipeline"

// SystemActors are the audit actors of Airlock itself: the pipeline, a
// pull, the rescan scheduler, retention and watches. No API token may
// take one of these names.
var SystemActors = []string{ActorPipeline, "pull", "scheduler", "retention", "watch"}

// IsAdminActor reports whether actor is a person or robot acting through
// the admin API: the bootstrap "admin", an API token's name, or
// "admin:<name>" of entries written before API tokens. That is every
// actor but the SystemActors (and "" of entries without one). Admin
// actions are never folded, and audit pruning keeps them for the whole of
// audit.max_age.
func IsAdminActor(actor string) bool {
	if actor == "" {
		return false
	}
	return !slices.Contains(SystemActors, actor)
}

var (
	// bucketAuditRuns maps an image key to its current retry run: the
	// fold keys and sequence numbers of the pipeline entries written
	// since the run started (see appendAudit).
	bucketAuditRuns = []byte("auditruns")
	// bucketAuditMeta holds the audit log's entry count, so pruning by
	// count needs no walk over the whole log.
	bucketAuditMeta = []byte("auditmeta")
	keyAuditCount   = []byte("count")
)

// maxRunKeys bounds the distinct fold keys remembered per image; beyond
// it the oldest is forgotten (a later repeat of it is appended again).
const maxRunKeys = 32

// auditRun is an image's current run of pipeline entries.
type auditRun struct {
	// Failed is set once the run recorded a failure: only then is it a
	// retry loop whose repeats are folded.
	Failed bool     `json:"failed,omitempty"`
	Keys   []runKey `json:"keys"`
}

// runKey is one entry of an image's run.
type runKey struct {
	Key string `json:"k"`
	Seq uint64 `json:"s"`
}

// appendAudit writes e to the audit log in tx, folding automatic retries.
//
// The folding rule: an entry by the pipeline (ActorPipeline) whose image,
// action, from-state, to-state and reason class equal those of an entry
// in the image's current run, once that run has recorded a failure, is not
// appended; instead that earlier entry's Repeats goes up by one and its
// Last time and Reason become the new entry's. A run is the sequence of
// pipeline entries of one image since the last entry of that image by
// anyone else (a pull's request, an admin action, the scheduler) and since
// the pipeline last moved the image to a state that is neither in the
// pipeline nor failed (approved, rejected, awaiting-approval, revoked):
// those entries end the run, and the next pipeline entry starts a new one.
// Only a run with a failure folds, so a job resumed after a restart, which
// repeats its steps without having failed, is recorded in full. The reason
// class is the reason without its retry annotation (" (attempt …" or
// " (gave up …") and with digests and digit runs read as one token (see
// reasonClass), so "attempt 3 of 8, 503 after 1.2s" repeats "attempt 2 of
// 8, 503 after 0.9s".
//
// So a job that retries with backoff leaves one entry per distinct
// transition, not one per attempt, while every entry by another actor —
// every admin action, every pull that queued work — is always appended,
// and a run never spans one, so the log's order between actors is exact.
// The fold happens in the caller's transaction, like the transition it
// records.
func appendAudit(tx kv.Tx, e Entry) error {
	// Open creates the bucket: no bucket work on this hot write path.
	runs := tx.Bucket(bucketAuditRuns)
	imageKey := []byte(e.Image)
	ends := e.Actor != ActorPipeline || endsRun(e.To)
	var run auditRun
	if e.Actor == ActorPipeline && e.Image != "" {
		if raw := runs.Get(imageKey); raw != nil {
			// A run that does not decode is only an optimisation lost.
			_ = json.Unmarshal(raw, &run)
		}
		key := foldKey(e)
		for i, r := range run.Keys {
			if !run.Failed || r.Key != key {
				continue
			}
			folded, err := foldInto(tx, r.Seq, e)
			if err != nil {
				return err
			}
			if folded {
				if ends {
					return runs.Delete(imageKey)
				}
				return nil
			}
			// The entry was pruned: forget it and append anew.
			run.Keys = append(run.Keys[:i], run.Keys[i+1:]...)
			break
		}
	}
	seq, err := putAudit(tx, e)
	if err != nil {
		return err
	}
	switch {
	case e.Image == "":
		return nil
	case ends:
		return runs.Delete(imageKey)
	}
	run.Failed = run.Failed || e.To == StateFailed
	run.Keys = append(run.Keys, runKey{Key: foldKey(e), Seq: seq})
	if len(run.Keys) > maxRunKeys {
		run.Keys = run.Keys[len(run.Keys)-maxRunKeys:]
	}
	raw, err := json.Marshal(run)
	if err != nil {
		return fmt.Errorf("encode audit run: %w", err)
	}
	return runs.Put(imageKey, raw)
}

// endsRun reports whether a pipeline entry into state to ends the image's
// retry run: the pipeline is done with it, for now.
func endsRun(to State) bool {
	return to != "" && !to.InPipeline() && to != StateFailed
}

// putAudit appends e with the next sequence number and counts it.
func putAudit(tx kv.Tx, e Entry) (uint64, error) {
	b := tx.Bucket(bucketAudit)
	// Counted before the put: a store without a count counts its
	// entries once, and this one is not among them yet.
	n, err := auditCount(tx)
	if err != nil {
		return 0, err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("audit sequence: %w", err)
	}
	e.Seq = seq
	if err := putJSON(b, itob(seq), &e); err != nil {
		return 0, err
	}
	return seq, setAuditCount(tx, n+1)
}

// foldInto folds e into the entry at seq; false means that entry is gone.
func foldInto(tx kv.Tx, seq uint64, e Entry) (bool, error) {
	b := tx.Bucket(bucketAudit)
	var old Entry
	raw := b.Get(itob(seq))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, &old); err != nil || old.Image != e.Image {
		return false, nil
	}
	old.Repeats++
	old.Last = e.Time
	old.Reason = e.Reason
	return true, putJSON(b, itob(seq), &old)
}

// foldKey is what makes two pipeline entries of one image repeats.
func foldKey(e Entry) string {
	return e.Action + "\x00" + string(e.From) + "\x00" + string(e.To) + "\x00" + reasonClass(e.Reason)
}

// reasonClass drops the retry annotation the engine appends and reads
// what varies between attempts that failed the same way as one token:
// every run of 8 or more hex digits (a digest, a request ID) and every run
// of decimal digits (a port, a duration, a count).
func reasonClass(reason string) string {
	for _, mark := range []string{" (attempt ", " (gave up "} {
		if i := strings.Index(reason, mark); i >= 0 {
			reason = reason[:i]
		}
	}
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	var sb strings.Builder
	for i := 0; i < len(reason); {
		j := i
		for j < len(reason) && isHex(reason[j]) {
			j++
		}
		if j-i >= 8 {
			sb.WriteByte('#')
			i = j
			continue
		}
		if j == i {
			j = i + 1 // not a hex digit: copy it
		}
		digits := false
		for _, c := range []byte(reason[i:j]) {
			if c >= '0' && c <= '9' {
				if !digits {
					sb.WriteByte('#')
				}
				digits = true
				continue
			}
			digits = false
			sb.WriteByte(c)
		}
		i = j
	}
	return sb.String()
}

// auditCount returns the number of audit entries. A store written before
// the count existed counts its entries once, here.
func auditCount(tx kv.Tx) (uint64, error) {
	if meta := tx.Bucket(bucketAuditMeta); meta != nil {
		if v := meta.Get(keyAuditCount); len(v) == 8 {
			return binary.BigEndian.Uint64(v), nil
		}
	}
	n := uint64(tx.Bucket(bucketAudit).KeyN())
	if tx.Writable() {
		if err := setAuditCount(tx, n); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func setAuditCount(tx kv.Tx, n uint64) error {
	return tx.Bucket(bucketAuditMeta).Put(keyAuditCount, itob(n))
}

// AuditCount returns the number of entries in the audit log.
func (s *Store) AuditCount() (int, error) {
	var n uint64
	err := s.db.View(func(tx kv.Tx) error {
		var err error
		n, err = auditCount(tx)
		return err
	})
	return int(n), err
}

// pruneBatch bounds the entries one pruning transaction looks at, so a
// pass over a large log never holds the write lock for long.
const pruneBatch = 5000

// PruneAudit bounds the audit log, oldest entries first: it removes every
// entry older than maxAge (by its latest occurrence), and while the log
// holds more than maxEntries entries it removes entries that are not admin
// actions (IsAdminActor). An admin action younger than maxAge is never
// removed, so the log may stay above maxEntries when admins alone fill it.
// Zero disables either bound. It returns how many entries it removed.
func (s *Store) PruneAudit(maxAge time.Duration, maxEntries int) (int, error) {
	if maxAge <= 0 && maxEntries <= 0 {
		return 0, nil
	}
	cutoff := s.now().Add(-maxAge)
	removed := 0
	var from []byte // where the next batch starts: past the admin entries kept
	for {
		done := false
		err := s.db.Update(func(tx kv.Tx) error {
			count, err := auditCount(tx)
			if err != nil {
				return err
			}
			b := tx.Bucket(bucketAudit)
			c := b.Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			var del [][]byte
			for seen := 0; ; k, v = c.Next() {
				if k == nil {
					done = true
					break
				}
				if seen == pruneBatch {
					from = append([]byte(nil), k...)
					break
				}
				seen++
				var e Entry
				if err := json.Unmarshal(v, &e); err != nil {
					// An entry that cannot be read is no evidence of anything.
					del = append(del, append([]byte(nil), k...))
					continue
				}
				at := e.Time
				if e.Last.After(at) {
					at = e.Last
				}
				old := maxAge > 0 && at.Before(cutoff)
				over := maxEntries > 0 && sub(count, len(del)) > uint64(maxEntries)
				if !old && !over {
					// Entries are in time order: none after this one is
					// old, and the log is within its count.
					done = true
					break
				}
				if old || !IsAdminActor(e.Actor) {
					del = append(del, append([]byte(nil), k...))
				}
			}
			for _, key := range del {
				if err := b.Delete(key); err != nil {
					return fmt.Errorf("prune audit: %w", err)
				}
			}
			removed += len(del)
			return setAuditCount(tx, sub(count, len(del)))
		})
		if err != nil {
			return removed, fmt.Errorf("prune audit: %w", err)
		}
		if done {
			return removed, nil
		}
	}
}

// sub is n-k, never below zero: a count that went wrong must not make
// pruning believe the log is huge.
func sub(n uint64, k int) uint64 {
	if uint64(k) > n {
		return 0
	}
	return n - uint64(k)
}
