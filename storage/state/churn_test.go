package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/opencontainers/go-digest"
)

// failImage requests r and finishes its job as failed with the marks the
// engine would set.
func failImage(t *testing.T, s *Store, r Ref, permanent bool, retryAt time.Time) {
	t.Helper()
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	job, err := s.Job(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishJob(job, &Change{To: StateFailed, Actor: ActorPipeline, Action: "step:fetch", Reason: "fetch failed",
		Mutate: func(i *Image) error { i.Permanent, i.RetryAt = permanent, retryAt; return nil }}); err != nil {
		t.Fatal(err)
	}
}

// TestRequestOfFailedImage: a pull re-queues a failed image only when its
// failure was transient and its backoff window has passed, and then once.
func TestRequestOfFailedImage(t *testing.T) {
	tests := []struct {
		name       string
		permanent  bool
		retryIn    time.Duration // RetryAt relative to now
		wantQueued bool
	}{
		{"permanent", true, 0, false},
		{"permanent, window passed", true, -time.Hour, false},
		{"transient, in its window", false, time.Minute, false},
		{"transient, window passed", false, -time.Second, true},
		{"transient, no window (older records)", false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s, _ := openStore(t, WithClock(clk.now))
			r := ref("library/broken", tt.name)
			var retryAt time.Time
			if tt.retryIn != 0 {
				retryAt = clk.now().Add(tt.retryIn)
			}
			failImage(t, s, r, tt.permanent, retryAt)
			before := len(mustAudit(t, s, ""))
			queued := 0
			for i := 0; i < 300; i++ {
				_, q, err := s.Request(r, "pull")
				if err != nil {
					t.Fatal(err)
				}
				if q {
					queued++
				}
			}
			want := map[bool]int{true: 1, false: 0}[tt.wantQueued]
			if queued != want {
				t.Errorf("300 pulls queued %d jobs, want %d", queued, want)
			}
			if got := len(mustAudit(t, s, "")) - before; got != want {
				t.Errorf("300 pulls wrote %d audit entries, want %d", got, want)
			}
			img := mustImage(t, s, r)
			if tt.wantQueued && (img.State != StatePending || !img.RetryAt.IsZero()) {
				t.Errorf("re-queued image: state %s, RetryAt %s", img.State, img.RetryAt)
			}
			if !tt.wantQueued && img.State != StateFailed {
				t.Errorf("image not re-queued is %s", img.State)
			}
			// Once the window passes, a transient failure is queued again.
			if !tt.permanent && !tt.wantQueued {
				clk.advance(tt.retryIn)
				if _, q, _ := s.Request(r, "pull"); !q {
					t.Error("pull after the window did not queue the image")
				}
			}
		})
	}
}

// retryLoop plays the engine's transitions for one job that fails
// attempts times with backoff and then gives up.
func retryLoop(t *testing.T, s *Store, clk *clock, r Ref, attempts int) {
	t.Helper()
	job, err := s.Job(r)
	if err != nil {
		t.Fatal(err)
	}
	for a := 1; a <= attempts; a++ {
		clk.advance(time.Second)
		if _, err := s.Transition(r, Change{To: StateFetching, Actor: ActorPipeline, Action: "step:fetch", Reason: "fetch in progress"}); err != nil {
			t.Fatal(err)
		}
		reason := fmt.Sprintf("fetch failed: GET /v2/x/blobs/sha256:abc: 503 after %dms", 100*a)
		if a == attempts {
			reason += fmt.Sprintf(" (gave up after %d attempts)", a)
			if _, err := s.FinishJob(job, &Change{To: StateFailed, Actor: ActorPipeline, Action: "step:fetch", Reason: reason}); err != nil {
				t.Fatal(err)
			}
			return
		}
		reason += fmt.Sprintf(" (attempt %d of %d; retrying in %ds)", a, attempts, a)
		if _, err := s.RetryJob(job, clk.now(), Change{To: StateFailed, Actor: ActorPipeline, Action: "step:fetch", Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRetryTransitionsAreFolded(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	r := ref("library/flaky", "f")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	retryLoop(t, s, clk, r, 8)
	es := mustAudit(t, s, r.String())
	// request, pending->fetching, fetching->failed (x8), failed->fetching (x7).
	if len(es) != 4 {
		for _, e := range es {
			t.Logf("%+v", e)
		}
		t.Fatalf("8 attempts wrote %d audit entries, want 4", len(es))
	}
	byKey := map[string]Entry{}
	for _, e := range es {
		byKey[string(e.From)+">"+string(e.To)] = e
	}
	if e := byKey["fetching>failed"]; e.Repeats != 7 || !strings.Contains(e.Reason, "gave up after 8") || !e.Last.Equal(clk.now()) || !e.Time.Before(e.Last) {
		t.Errorf("folded failure entry = %+v; want 7 repeats, the latest reason and time", e)
	}
	if e := byKey["failed>fetching"]; e.Repeats != 6 {
		t.Errorf("folded retry entry = %+v; want 6 repeats", e)
	}
	if e := byKey["pending>fetching"]; e.Repeats != 0 {
		t.Errorf("first attempt entry folded: %+v", e)
	}

	// A pull that queues the image again is its own entry and starts a new
	// run: the next attempts are not folded into the entries before it.
	clk.advance(time.Hour)
	if _, q, err := s.Request(r, "pull"); err != nil || !q {
		t.Fatalf("Request = %v, %v", q, err)
	}
	retryLoop(t, s, clk, r, 3)
	es = mustAudit(t, s, r.String())
	if len(es) != 8 {
		t.Fatalf("after a re-queue and 3 attempts: %d entries, want 8", len(es))
	}
	if es[3].Action != "request" || es[3].Actor != "pull" {
		t.Errorf("entry before the second run = %+v, want the pull's request", es[3])
	}
	for _, e := range es[:3] {
		if e.Seq < es[3].Seq {
			t.Errorf("second run folded into the first: %+v", e)
		}
	}

	// An admin action between retries is never folded, and the pipeline
	// entries after it are appended after it.
	if err := s.Record(Entry{Actor: "admin:alice", Image: r.String(), Action: "note", Reason: "looking"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(Entry{Actor: "admin:alice", Image: r.String(), Action: "note", Reason: "looking"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(r, Change{To: StateFetching, Actor: ActorPipeline, Action: "step:fetch", Reason: "fetch in progress"}); err != nil {
		t.Fatal(err)
	}
	es = mustAudit(t, s, r.String())
	if len(es) != 11 || es[0].From != StateFailed || es[0].Repeats != 0 || es[1].Actor != "admin:alice" || es[2].Actor != "admin:alice" {
		t.Errorf("after two admin notes and a retry: %d entries, newest %+v", len(es), es[:3])
	}
	if n, err := s.AuditCount(); err != nil || n != len(mustAudit(t, s, "")) {
		t.Errorf("AuditCount = %d, %v; the log holds %d", n, err, len(mustAudit(t, s, "")))
	}
}

// TestResumedRunIsNotFolded: a job resumed after a restart repeats its
// steps without having failed; every one of them is recorded.
func TestResumedRunIsNotFolded(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/resumed", "r")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	for _, st := range []State{StateFetching, StateScanning, StateFetching, StateScanning, StateAwaitingApproval} {
		if _, err := s.Transition(r, Change{To: st, Actor: ActorPipeline, Action: "step:" + string(st), Reason: string(st) + " in progress"}); err != nil {
			t.Fatal(err)
		}
	}
	if es := mustAudit(t, s, r.String()); len(es) != 6 {
		t.Errorf("request and 5 transitions wrote %d entries, want 6", len(es))
	}
}

// TestFinalStateEndsRun: an approval ends the run, so the same pipeline
// transition later (a scheduled rescan each day) is recorded each time.
func TestFinalStateEndsRun(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/ok", "ok")
	setState(t, s, r, StateApproved)
	for i := 0; i < 3; i++ {
		if _, err := s.Transition(r, Change{From: []State{StateApproved}, Actor: ActorPipeline, Action: "rescan", Reason: "rescan passed"}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, e := range mustAudit(t, s, r.String()) {
		if e.Action == "rescan" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("3 rescans of an approved image wrote %d entries, want 3", n)
	}
}

func TestReasonClass(t *testing.T) {
	tests := []struct{ a, b string }{
		{"fetch failed: 503 after 1.2s (attempt 2 of 8; retrying in 400ms)", "fetch failed: 503 after 0.9s (attempt 7 of 8; retrying in 1m0s)"},
		{"fetch failed: 503 (attempt 7 of 8; retrying in 1m0s)", "fetch failed: 503 (gave up after 8 attempts; a pull after 2025-01-01T00:00:00Z queues it again)"},
	}
	for _, tt := range tests {
		if reasonClass(tt.a) != reasonClass(tt.b) {
			t.Errorf("%q and %q are in different classes: %q, %q", tt.a, tt.b, reasonClass(tt.a), reasonClass(tt.b))
		}
	}
	if reasonClass("fetch failed: 503") == reasonClass("verify failed: 503") {
		t.Error("different failures share a class")
	}
	if a, b := "fetch blob sha256:37c52fff1569: 403 Forbidden", "fetch blob sha256:2a97cf3613a7: 403 Forbidden"; reasonClass(a) != reasonClass(b) {
		t.Errorf("failures of two blobs are in different classes: %q, %q", reasonClass(a), reasonClass(b))
	}
	if got := reasonClass("GET http://127.0.0.1:38703/v2/x: 503 after 1.2s"); got != "GET http://#.#.#.#:#/v#/x: # after #.#s" {
		t.Errorf("reasonClass = %q", got)
	}
}

// seedAudit writes entries straight into the log, as appendAudit does.
func seedAudit(t *testing.T, s *Store, es []Entry) {
	t.Helper()
	err := s.db.Update(func(tx kv.Tx) error {
		for _, e := range es {
			if err := appendAudit(tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPruneAudit(t *testing.T) {
	day := 24 * time.Hour
	// The log, oldest first: ages in days, actors.
	log := []struct {
		age   time.Duration
		actor string
	}{
		{100 * day, "admin:old"},  // 0: admin, beyond max_age
		{100 * day, "pull"},       // 1
		{50 * day, "pipeline"},    // 2
		{40 * day, "admin:alice"}, // 3
		{30 * day, "pull"},        // 4
		{20 * day, "admin"},       // 5
		{10 * day, "pipeline"},    // 6
		{day, "scheduler"},        // 7
	}
	tests := []struct {
		name       string
		maxAge     time.Duration
		maxEntries int
		keep       []int
	}{
		{"no bounds", 0, 0, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"age only", 90 * day, 0, []int{2, 3, 4, 5, 6, 7}},
		{"count only keeps admins", 0, 4, []int{0, 3, 5, 7}},
		{"count and age", 90 * day, 5, []int{3, 4, 5, 6, 7}},
		{"count below the admins", 90 * day, 1, []int{3, 5}},
		{"count within bound", 0, 8, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"age removes admins older than it", 25 * day, 0, []int{5, 6, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s, _ := openStore(t, WithClock(clk.now))
			var es []Entry
			for i, l := range log {
				es = append(es, Entry{Time: clk.now().Add(-l.age), Actor: l.actor, Image: fmt.Sprintf("docker.io/x@%d", i), Action: "a", Reason: fmt.Sprint(i)})
			}
			seedAudit(t, s, es)
			removed, err := s.PruneAudit(tt.maxAge, tt.maxEntries)
			if err != nil {
				t.Fatal(err)
			}
			var kept []int
			got := mustAudit(t, s, "")
			for i := len(got) - 1; i >= 0; i-- {
				var n int
				fmt.Sscan(got[i].Reason, &n)
				kept = append(kept, n)
			}
			if !slices.Equal(kept, tt.keep) {
				t.Errorf("kept %v, want %v", kept, tt.keep)
			}
			if removed != len(log)-len(tt.keep) {
				t.Errorf("PruneAudit = %d removed, want %d", removed, len(log)-len(tt.keep))
			}
			if n, _ := s.AuditCount(); n != len(tt.keep) {
				t.Errorf("AuditCount = %d after pruning, want %d", n, len(tt.keep))
			}
		})
	}
}

// TestPruneAuditManyBatches: pruning crosses batches, past a long run of
// admin entries it must keep, and a folded entry's latest time counts.
func TestPruneAuditManyBatches(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	var es []Entry
	at := clk.now().Add(-time.Hour)
	for i := 0; i < pruneBatch+100; i++ {
		es = append(es, Entry{Time: at, Actor: "admin:a", Image: "docker.io/x@a", Action: "approve"})
	}
	for i := 0; i < pruneBatch+100; i++ {
		es = append(es, Entry{Time: at, Actor: "pull", Image: fmt.Sprintf("docker.io/x@%d", i), Action: "request"})
	}
	seedAudit(t, s, es)
	const max = pruneBatch + 150
	removed, err := s.PruneAudit(0, max)
	if err != nil {
		t.Fatal(err)
	}
	if removed != len(es)-max {
		t.Errorf("removed %d, want %d", removed, len(es)-max)
	}
	got := mustAudit(t, s, "")
	admins := 0
	for _, e := range got {
		if IsAdminActor(e.Actor) {
			admins++
		}
	}
	if len(got) != max || admins != pruneBatch+100 {
		t.Errorf("after pruning: %d entries, %d admin; want %d and all %d admin", len(got), admins, max, pruneBatch+100)
	}

	// An old entry whose latest repeat is recent is not old.
	s2, _ := openStore(t, WithClock(clk.now))
	seedAudit(t, s2, []Entry{{Time: clk.now().Add(-48 * time.Hour), Last: clk.now().Add(-time.Minute), Actor: ActorPipeline, Image: "docker.io/x@f", Action: "step:fetch"}})
	if n, err := s2.PruneAudit(24*time.Hour, 0); err != nil || n != 0 {
		t.Errorf("PruneAudit of a recently repeated entry = %d, %v; want 0", n, err)
	}
}

// TestAuditCountOfOlderStore: a store written before the count existed
// counts its entries once, then keeps the count.
func TestAuditCountOfOlderStore(t *testing.T) {
	s, _ := openStore(t)
	seedAudit(t, s, []Entry{{Actor: "a", Image: "i"}, {Actor: "b", Image: "i"}, {Actor: "c", Image: "i"}})
	// An older file: Open created the meta bucket, but it holds no count.
	if err := s.db.Update(func(tx kv.Tx) error { return tx.Bucket(bucketAuditMeta).Delete(keyAuditCount) }); err != nil {
		t.Fatal(err)
	}
	if n, err := s.AuditCount(); err != nil || n != 3 {
		t.Fatalf("AuditCount without the count = %d, %v", n, err)
	}
	if err := s.Record(Entry{Actor: "admin", Image: "i", Action: "note"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.AuditCount(); n != 4 {
		t.Errorf("AuditCount after one more = %d, want 4", n)
	}
}

func TestResetRunsWaitingJobNow(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	r := ref("library/backoff", "b")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	job, _ := s.Job(r)
	for i := 0; i < 3; i++ {
		if _, err := s.RetryJob(job, clk.now().Add(time.Hour), Change{To: StateFailed, Actor: ActorPipeline, Action: "step:fetch", Reason: "503",
			Mutate: func(i *Image) error { i.RetryAt = clk.now().Add(time.Hour); return nil }}); err != nil {
			t.Fatal(err)
		}
	}
	none := func(uint64) bool { return false }
	if _, ok, _ := s.NextJob(none); ok {
		t.Fatal("a job waiting for its backoff is due")
	}
	img, err := s.Reset(r, Change{Actor: "admin:alice", Action: "rescan", Reason: "upstream fixed"})
	if err != nil {
		t.Fatal(err)
	}
	if img.State != StatePending || img.Attempts != 0 || !img.RetryAt.IsZero() || img.Permanent {
		t.Errorf("image after Reset = state %s, attempts %d, retry at %s, permanent %v", img.State, img.Attempts, img.RetryAt, img.Permanent)
	}
	got, ok, err := s.NextJob(none)
	if err != nil || !ok {
		t.Fatalf("no job due right after the rescan: %v", err)
	}
	if got.ID != job.ID || got.Kind != JobPull || got.Attempts != 0 || got.Actor != "admin:alice" {
		t.Errorf("rescheduled job = %+v", got)
	}
	if s.QueueDepth() != 1 {
		t.Errorf("QueueDepth = %d, want 1", s.QueueDepth())
	}
	// A permanent failure is reset too: rescan is how an admin retries it.
	r2 := ref("library/empty", "e")
	failImage(t, s, r2, true, time.Time{})
	if img, err := s.Reset(r2, Change{Actor: "admin", Action: "rescan"}); err != nil || img.Permanent || img.State != StatePending {
		t.Fatalf("Reset of a permanent failure = %+v, %v", img, err)
	}
	if _, err := s.Job(r2); err != nil {
		t.Errorf("no job after resetting a permanent failure: %v", err)
	}
}

func TestRevokeByTag(t *testing.T) {
	const repo, tag = "library/app", "latest"
	type step struct {
		do   func(t *testing.T, s *Store, clk *clock)
		want digest.Digest // what LastApproved gives; "" for nothing
	}
	dA, dB, dC := dgst("A"), dgst("B"), dgst("C")
	rA, rB, rC := ref(repo, "A"), ref(repo, "B"), ref(repo, "C")
	approve := func(r Ref) func(*testing.T, *Store, *clock) {
		return func(t *testing.T, s *Store, clk *clock) { clk.advance(time.Second); setState(t, s, r, StateApproved) }
	}
	record := func(d digest.Digest) func(*testing.T, *Store, *clock) {
		return func(t *testing.T, s *Store, clk *clock) {
			clk.advance(time.Second)
			if _, err := s.RecordTag("docker.io", repo, tag, d, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	revoke := func(r Ref, refuse bool) func(*testing.T, *Store, *clock) {
		return func(t *testing.T, s *Store, clk *clock) {
			clk.advance(time.Second)
			if _, _, err := s.RevokeByTag(r, tag, refuse, Change{From: []State{StateApproved, StateRevoked}, To: StateRevoked, Actor: "admin:bob", Action: "revoke"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	byDigest := func(r Ref) func(*testing.T, *Store, *clock) {
		return func(t *testing.T, s *Store, clk *clock) { clk.advance(time.Second); setState(t, s, r, StateRevoked) }
	}
	// A then B pulled and approved: the tag serves B.
	base := []step{{record(dA), ""}, {approve(rA), dA}, {record(dB), dA}, {approve(rB), dB}}
	tests := []struct {
		name  string
		steps []step
	}{
		{"by tag refuses the fallback", []step{{revoke(rB, true), ""}}},
		{"allow fallback falls back", []step{{revoke(rB, false), dA}}},
		{"by digest falls back", []step{{byDigest(rB), dA}}},
		{"a newer digest approved lifts the refusal", []step{
			{revoke(rB, true), ""}, {record(dC), ""}, {approve(rC), dC},
			// Revoking C later still does not fall back past B.
			{byDigest(rC), ""},
		}},
		{"re-approving the revoked digest serves it", []step{{revoke(rB, true), ""}, {approve(rB), dB}}},
		{"a re-pushed older digest stays refused", []step{{revoke(rB, true), ""}, {record(dA), ""}}},
		{"revoked by digest, then refused by tag", []step{{byDigest(rB), dA}, {revoke(rB, true), ""}}},
		{"a second refusal by tag", []step{
			{revoke(rB, true), ""}, {record(dC), ""}, {approve(rC), dC}, {revoke(rC, true), ""}, {approve(rB), dB},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			s, _ := openStore(t, WithClock(clk.now))
			stale, _ := s.Tag("docker.io", repo, tag)
			for i, st := range append(slices.Clone(base), tt.steps...) {
				st.do(t, s, clk)
				cur, err := s.Tag("docker.io", repo, tag)
				if err != nil {
					t.Fatal(err)
				}
				if i == len(base)-1 {
					stale = cur
				}
				for name, tg := range map[string]Tag{"stored": cur, "stale": stale} {
					if i < len(base) && name == "stale" {
						continue
					}
					img, ok, err := s.LastApproved(tg)
					if err != nil {
						t.Fatal(err)
					}
					var got digest.Digest
					if ok {
						got = img.Digest
					}
					if got != st.want {
						t.Errorf("step %d: LastApproved(%s tag) = %q, want %q", i, name, short(got), short(st.want))
					}
				}
			}
		})
	}

	// The refusal is audited, and a tag that no longer holds the digest is a conflict.
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	for _, st := range base {
		st.do(t, s, clk)
	}
	if _, _, err := s.RevokeByTag(rC, tag, true, Change{To: StateRevoked, Actor: "admin", Action: "revoke"}); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
		t.Errorf("RevokeByTag of a digest the tag never held = %v", err)
	}
	img, tg, err := s.RevokeByTag(rB, tag, true, Change{To: StateRevoked, Actor: "admin:bob", Action: "revoke", Reason: "CVE"})
	if err != nil || img.State != StateRevoked {
		t.Fatalf("RevokeByTag = %s, %v", img.State, err)
	}
	if tg.Refusal == nil || tg.Refusal.Digest != dB || !slices.Equal(tg.Refusal.Through, []digest.Digest{dA, dB}) || tg.Refusal.By != "admin:bob" {
		t.Errorf("refusal = %+v", tg.Refusal)
	}
	es := mustAudit(t, s, rB.String())
	if es[0].Action != "refuse-tag" || !strings.Contains(es[0].Reason, "tag latest is refused until a digest newer than "+string(dB)) || es[1].Action != "revoke" {
		t.Errorf("audit of a revoke by tag = %+v, %+v", es[0], es[1])
	}
}

func short(d digest.Digest) string {
	if d == "" {
		return ""
	}
	for _, n := range []string{"A", "B", "C"} {
		if d == dgst(n) {
			return n
		}
	}
	return string(d)
}
