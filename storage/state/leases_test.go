package state

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/kv"
)

// replicas opens a second store on the same data as s (another replica),
// with clock c and its own owner name. Only PostgreSQL can be shared.
func replica(t *testing.T, where string, c *clock, owner string) *Store {
	t.Helper()
	if !onPostgres() {
		t.Skip("only a PostgreSQL store is shared by replicas")
	}
	s, err := reopen(t, where, WithClock(c.now), WithOwner(owner))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func never(uint64) bool { return false }

func TestJobLeaseOneProcess(t *testing.T) {
	c := newClock()
	s, _ := openStore(t, WithClock(c.now), WithOwner("a"))
	r := ref("library/a", "leased")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	job, ok, err := s.NextJob(never)
	if err != nil || !ok {
		t.Fatalf("NextJob = %v, %v", ok, err)
	}
	if job.Owner != "a" || !job.LeaseUntil.Equal(c.now().Add(DefaultLease)) {
		t.Errorf("claimed job lease = %q until %s", job.Owner, job.LeaseUntil)
	}
	c.advance(DefaultLease / 2)
	if err := s.RenewJob(job); err != nil {
		t.Fatalf("RenewJob = %v", err)
	}
	stored, _ := s.Job(r)
	if !stored.LeaseUntil.Equal(c.now().Add(DefaultLease)) {
		t.Errorf("renewed lease until %s, want %s", stored.LeaseUntil, c.now().Add(DefaultLease))
	}
	if _, err := s.FinishJob(job, &Change{From: []State{StatePending}, To: StateApproved, Actor: "pipeline", Action: "approve"}); err != nil {
		t.Fatalf("FinishJob = %v", err)
	}
	if err := s.RenewJob(job); !errors.Is(err, ErrNotFound) {
		t.Errorf("RenewJob of a finished job = %v, want ErrNotFound", err)
	}
}

// TestBoltReopenReleasesLeases: a bbolt file is one process's, so a
// restart resumes the jobs a kill interrupted at once, not after the lease.
func TestBoltReopenReleasesLeases(t *testing.T) {
	onlyBolt(t)
	c := newClock()
	s, path := openStore(t, WithClock(c.now), WithOwner("before"))
	r := ref("library/a", "killed")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.NextJob(never); !ok {
		t.Fatal("no job")
	}
	s.Close()
	s2, err := Open(path, WithClock(c.now), WithOwner("after"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if job, ok, err := s2.NextJob(never); err != nil || !ok || job.Owner != "after" {
		t.Fatalf("NextJob after reopen = %+v, %v, %v; want the job, claimed by the new process", job, ok, err)
	}
}

// TestJobLeaseAcrossReplicas: a replica that stops renewing loses its job
// to another after the lease, and its late result is refused.
func TestJobLeaseAcrossReplicas(t *testing.T) {
	c := newClock()
	a, where := openStore(t, WithClock(c.now), WithOwner("a"))
	b := replica(t, where, c, "b")
	r := ref("library/a", "contended")
	if _, _, err := a.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	job, ok, err := a.NextJob(never)
	if err != nil || !ok {
		t.Fatalf("a.NextJob = %v, %v", ok, err)
	}
	if _, ok, err := b.NextJob(never); err != nil || ok {
		t.Fatalf("b claimed a job a holds: %v, %v", ok, err)
	}
	// a renews in time: b still cannot take it.
	c.advance(DefaultLease - time.Second)
	if err := a.RenewJob(job); err != nil {
		t.Fatal(err)
	}
	c.advance(2 * time.Second)
	if _, ok, _ := b.NextJob(never); ok {
		t.Fatal("b claimed a job whose lease a renewed")
	}
	// a stalls past its lease: b takes the job over.
	c.advance(DefaultLease)
	bjob, ok, err := b.NextJob(never)
	if err != nil || !ok || bjob.ID != job.ID || bjob.Owner != "b" {
		t.Fatalf("b.NextJob after a's lease = %+v, %v, %v", bjob, ok, err)
	}
	if err := a.RenewJob(job); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a.RenewJob after b took over = %v, want ErrLeaseLost", err)
	}
	approve := &Change{From: []State{StatePending}, To: StateApproved, Actor: "pipeline", Action: "approve"}
	if _, err := a.FinishJob(job, approve); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a.FinishJob after b took over = %v, want ErrLeaseLost", err)
	}
	if _, err := a.RetryJob(job, c.now(), Change{From: []State{StatePending}, To: StateFailed, Actor: "pipeline", Action: "fail"}); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a.RetryJob after b took over = %v, want ErrLeaseLost", err)
	}
	if img, _ := b.Image(r); img.State != StatePending {
		t.Fatalf("a's late result was applied: %s", img.State)
	}
	if _, err := b.FinishJob(bjob, approve); err != nil {
		t.Fatalf("b.FinishJob = %v", err)
	}
	if img, _ := a.Image(r); img.State != StateApproved {
		t.Errorf("state after b finished = %s", img.State)
	}
}

// TestClaimsAcrossReplicas: workers of three replicas claiming at once
// each get distinct jobs; every job is claimed exactly once.
func TestClaimsAcrossReplicas(t *testing.T) {
	c := newClock()
	a, where := openStore(t, WithClock(c.now), WithOwner("r0"))
	stores := []*Store{a, replica(t, where, c, "r1"), replica(t, where, c, "r2")}
	const jobs = 30
	for i := range jobs {
		if _, _, err := a.Request(ref("library/herd", string(rune('a'+i))), "pull"); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	claimed := map[uint64]string{}
	var wg sync.WaitGroup
	for _, s := range stores {
		for range 3 { // workers per replica
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					// Like the engine's busy set: what this replica runs.
					job, ok, err := s.NextJob(func(id uint64) bool { mu.Lock(); defer mu.Unlock(); return claimed[id] == s.Owner() })
					if err != nil {
						t.Error(err)
						return
					}
					if !ok {
						return
					}
					mu.Lock()
					if prev, dup := claimed[job.ID]; dup && prev != s.Owner() {
						t.Errorf("job %d claimed by %s and %s", job.ID, prev, s.Owner())
					}
					claimed[job.ID] = s.Owner()
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(claimed) != jobs {
		t.Errorf("%d jobs claimed, want %d", len(claimed), jobs)
	}
}

// TestTransitionConflictAcrossReplicas: of two replicas moving one image
// out of the same state at once, exactly one wins and the other gets
// ErrConflict, as two goroutines on one bbolt file do.
func TestTransitionConflictAcrossReplicas(t *testing.T) {
	c := newClock()
	a, where := openStore(t, WithClock(c.now))
	stores := []*Store{a, a}
	if onPostgres() {
		stores[1] = replica(t, where, c, "b")
	}
	for round := range 20 {
		r := ref("library/race", string(rune('a'+round)))
		if _, _, err := a.Request(r, "pull"); err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.Transition(r, Change{From: []State{StatePending}, To: StateFetching, Actor: "pipeline", Action: "step:fetch"})
			}()
		}
		wg.Wait()
		wins, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrConflict):
				conflicts++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if wins != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d won, %d conflicted; want 1 and 1", round, wins, conflicts)
		}
		if entries := mustAudit(t, a, r.String()); len(entries) != 2 { // requested, fetching
			t.Fatalf("round %d: %d audit entries, want 2 (the loser left none)", round, len(entries))
		}
	}
}

func TestTryLease(t *testing.T) {
	c := newClock()
	a, where := openStore(t, WithClock(c.now), WithOwner("a"))
	held, _, err := a.TryLease("fetch:sha256:x")
	if err != nil || !held {
		t.Fatalf("a.TryLease = %v, %v", held, err)
	}
	if !onPostgres() {
		return
	}
	b := replica(t, where, c, "b")
	held, until, err := b.TryLease("fetch:sha256:x")
	if err != nil || held || !until.Equal(c.now().Add(DefaultLease)) {
		t.Fatalf("b.TryLease while a holds it = %v until %s, %v", held, until, err)
	}
	// b may not release a's lease.
	if err := b.ReleaseLease("fetch:sha256:x"); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := b.TryLease("fetch:sha256:x"); held {
		t.Fatal("b released a's lease")
	}
	if err := a.ReleaseLease("fetch:sha256:x"); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := b.TryLease("fetch:sha256:x"); !held {
		t.Fatal("b cannot take a released lease")
	}
	// b is killed: its lease expires and a takes it; pruning finds nothing
	// expired after, and one expired lease before.
	c.advance(DefaultLease + time.Second)
	if n, err := a.PruneLeases(); err != nil || n != 1 {
		t.Errorf("PruneLeases = %d, %v; want 1", n, err)
	}
	if held, _, _ := a.TryLease("fetch:sha256:x"); !held {
		t.Fatal("a cannot take an expired lease")
	}
}

// TestChangedAcrossReplicas: a state change through one replica wakes the
// held pulls of another.
func TestChangedAcrossReplicas(t *testing.T) {
	c := newClock()
	a, where := openStore(t, WithClock(c.now))
	b := replica(t, where, c, "b")
	r := ref("library/a", "wake")
	if _, _, err := a.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // b's listener is connected
	ch := b.Changed()
	start := time.Now()
	if _, err := a.Transition(r, Change{From: []State{StatePending}, To: StateApproved, Actor: "admin:x", Action: "approve"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Logf("b woke %s after a's commit", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("b was not woken within 5s of a's approval")
	}
	if dec, err := b.ManifestDecision(r.Upstream, r.Repository, r.Digest); err != nil || !dec.Serve {
		t.Errorf("b's decision right after a's approval = %+v, %v", dec, err)
	}
}

// TestFailStatic: with the database down, a replica serves what it saw
// approved within the window, refuses the rest (and what it saw too
// long ago) with ErrUnavailable, and says it is degraded.
func TestFailStatic(t *testing.T) {
	if !onPostgres() {
		t.Skip("fail-static is about an unreachable PostgreSQL")
	}
	srv := pgtest.Start(t) // its own server: this test stops it
	dsn := srv.NewDatabase(t)
	c := newClock()
	db, err := kv.OpenPostgres(context.Background(), dsn, kv.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, WithClock(c.now), WithFailStatic(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seen, unseen := ref("library/a", "seen"), ref("library/a", "unseen")
	for _, r := range []Ref{seen, unseen} {
		if _, _, err := s.Request(r, "pull"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Transition(r, Change{From: []State{StatePending}, To: StateApproved, Actor: "admin:x", Action: "approve"}); err != nil {
			t.Fatal(err)
		}
	}
	if dec, err := s.ManifestDecision(seen.Upstream, seen.Repository, seen.Digest); err != nil || !dec.Serve {
		t.Fatalf("decision with the database up = %+v, %v", dec, err)
	}
	if d, _ := s.Degraded(); d {
		t.Fatal("degraded with the database up")
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with the database up = %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with the database down = %v, want ErrUnavailable", err)
	}
	c.advance(4 * time.Minute)
	if dec, err := s.ManifestDecision(seen.Upstream, seen.Repository, seen.Digest); err != nil || !dec.Serve {
		t.Errorf("seen image with the database down = %+v, %v; want served", dec, err)
	}
	if d, since := s.Degraded(); !d || since.IsZero() {
		t.Error("not degraded with the database down")
	}
	if _, err := s.ManifestDecision(unseen.Upstream, unseen.Repository, unseen.Digest); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unseen image with the database down = %v, want ErrUnavailable", err)
	}
	// The same digest as a blob was never seen as one.
	if _, err := s.BlobDecision(seen.Upstream, seen.Repository, seen.Digest); !errors.Is(err, ErrUnavailable) {
		t.Errorf("seen manifest asked for as a blob = %v, want ErrUnavailable", err)
	}
	c.advance(2 * time.Minute)
	if _, err := s.ManifestDecision(seen.Upstream, seen.Repository, seen.Digest); !errors.Is(err, ErrUnavailable) {
		t.Errorf("image seen 6m ago with a 5m window = %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	if dec, err := s.ManifestDecision(unseen.Upstream, unseen.Repository, unseen.Digest); err != nil || !dec.Serve {
		t.Errorf("decision after the database is back = %+v, %v", dec, err)
	}
	if d, _ := s.Degraded(); d {
		t.Error("still degraded after the database is back")
	}
}
