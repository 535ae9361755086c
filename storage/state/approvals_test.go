package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// approveFrom are the states an admin approval is allowed from (as in
// gate.Engine.Approve).
var approveFrom = []State{StateAwaitingApproval, StateRejected, StateRevoked, StateFailed}

func approveChange(actor, reason string) Change {
	return Change{From: approveFrom, To: StateApproved, Actor: actor, Action: "approve", Reason: reason}
}

// approveAs is one approval of r by actor with required approvers.
func approveAs(t *testing.T, s *Store, r Ref, required int, actor string) (Image, Quorum) {
	t.Helper()
	img, q, err := s.Approve(r, required, "", approveChange(actor, "reviewed by "+actor))
	if err != nil {
		t.Fatalf("Approve(%s) as %s: %v", r, actor, err)
	}
	return img, q
}

// finishJob removes r's queued job, as the pipeline does when it is done.
func finishJob(t *testing.T, s *Store, r Ref) {
	t.Helper()
	job, err := s.Job(r)
	if err != nil {
		t.Fatalf("job of %s: %v", r, err)
	}
	if _, err := s.FinishJob(job, nil); err != nil {
		t.Fatalf("finish job of %s: %v", r, err)
	}
}

// approvalsOf returns the actors of img's pending approvals.
func approvalsOf(img Image) []string {
	var out []string
	for _, a := range img.Approvals {
		out = append(out, a.Actor)
	}
	return out
}

func TestApproveQuorum(t *testing.T) {
	for _, tc := range []struct {
		name      string
		required  int
		approvers []string
		// approvedAt is the index of the approval that approves; -1: none.
		approvedAt int
		// refused are the indexes refused with ErrSameApprover.
		refused []int
	}{
		{"one required", 1, []string{"alice"}, 0, nil},
		{"zero means one", 0, []string{"alice"}, 0, nil},
		{"two required, one approver", 2, []string{"alice"}, -1, nil},
		{"two required, two approvers", 2, []string{"alice", "bob"}, 1, nil},
		{"two required, same approver twice", 2, []string{"alice", "alice"}, -1, []int{1}},
		{"two required, same approver twice then another", 2, []string{"alice", "alice", "bob"}, 2, []int{1}},
		{"bootstrap admin is one identity", 2, []string{"admin", "admin", "alice"}, 2, []int{1}},
		{"a token and an SSO login of one name are one person", 2, []string{"alice", "oidc:alice", "bob"}, 2, []int{1}},
		{"names are compared without case", 2, []string{"oidc:Alice", "alice", "oidc:bob"}, 2, []int{1}},
		{"different SSO people", 2, []string{"oidc:alice", "oidc:bob"}, 1, nil},
		{"three required", 3, []string{"alice", "bob", "bob", "carol"}, 3, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStore(t)
			r := ref("app", tc.name)
			entered := setState(t, s, r, StateRejected).Updated
			for i, actor := range tc.approvers {
				img, q, err := s.Approve(r, tc.required, "", approveChange(actor, "ok"))
				if slices.Contains(tc.refused, i) {
					if !errors.Is(err, ErrSameApprover) {
						t.Fatalf("approval %d by %s: %v, want ErrSameApprover", i, actor, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("approval %d by %s: %v", i, actor, err)
				}
				if q.Approved != (i == tc.approvedAt) {
					t.Fatalf("approval %d by %s: Approved = %v, want %v", i, actor, q.Approved, i == tc.approvedAt)
				}
				if q.Approved {
					if img.State != StateApproved || img.ApprovedBy != actor || len(img.Approvals) != 0 {
						t.Fatalf("after the last approval: %s by %q, approvals %v", img.State, img.ApprovedBy, approvalsOf(img))
					}
					continue
				}
				// Pending: nothing but the approval changed.
				if img.State != StateRejected || img.Updated != entered || q.Approvers[len(q.Approvers)-1] != actor {
					t.Fatalf("pending approval %d: state %s, updated %s (entered %s), approvers %v", i, img.State, img.Updated, entered, q.Approvers)
				}
				if got := approvalsOf(mustImage(t, s, r)); !slices.Equal(got, q.Approvers) {
					t.Fatalf("stored approvals %v, want %v", got, q.Approvers)
				}
			}
			final := mustImage(t, s, r)
			if want := tc.approvedAt >= 0; (final.State == StateApproved) != want {
				t.Fatalf("final state %s, approved wanted: %v", final.State, want)
			}
		})
	}
}

// TestApproveAudit checks the words the audit log (and the console's
// timeline) shows, and the refusal of a second approval by the same one.
func TestApproveAudit(t *testing.T) {
	s, _ := openStore(t)
	r := ref("app", "audit")
	setState(t, s, r, StateAwaitingApproval)
	approveAs(t, s, r, 2, "alice")
	_, _, err := s.Approve(r, 2, "", approveChange("alice", "again"))
	if !errors.Is(err, ErrSameApprover) || err.Error() != "approval 1 of 2 by alice already recorded; a different approver must approve" {
		t.Fatalf("alice again: %v", err)
	}
	approveAs(t, s, r, 2, "bob")
	es := mustAudit(t, s, r.String())
	if len(es) < 2 {
		t.Fatalf("audit %+v", es)
	}
	last, first := es[0], es[1]
	if first.Actor != "alice" || first.Action != "approve" || first.From != StateAwaitingApproval || first.To != StateAwaitingApproval ||
		first.Reason != "approval 1 of 2: reviewed by alice" {
		t.Errorf("first approval's entry %+v", first)
	}
	if last.Actor != "bob" || last.Action != "approve" || last.To != StateApproved ||
		last.Reason != "approval 2 of 2 (with alice): reviewed by bob" {
		t.Errorf("second approval's entry %+v", last)
	}
	if n := len(slices.DeleteFunc(es, func(e Entry) bool { return e.Action != "approve" })); n != 2 {
		t.Errorf("%d approve entries, want 2 (the refused one is not recorded)", n)
	}
}

// TestApprovalsEndWithTheState: approvals belong to the state the image
// was in when they were given. Every way the state changes clears them.
func TestApprovalsEndWithTheState(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, s *Store, r Ref)
	}{
		{"revoke", func(t *testing.T, s *Store, r Ref) {
			if _, err := s.Transition(r, Change{To: StateRevoked, Actor: "carol", Action: "revoke", Reason: "no"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"rescan", func(t *testing.T, s *Store, r Ref) {
			if _, err := s.Reset(r, Change{Actor: "carol", Action: "rescan", Reason: "again"}); err != nil {
				t.Fatal(err)
			}
			// The pipeline takes it back to where it was.
			if _, err := s.Transition(r, Change{To: StateFetching, Actor: ActorPipeline, Action: "step:fetch"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Transition(r, Change{To: StateAwaitingApproval, Actor: ActorPipeline, Action: "step:verify"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"the same state set again", func(t *testing.T, s *Store, r Ref) {
			if _, err := s.Transition(r, Change{To: StateAwaitingApproval, Actor: ActorPipeline, Action: "step:verify"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"a pull after failure", func(t *testing.T, s *Store, r Ref) {
			finishJob(t, s, r)
			if _, err := s.Transition(r, Change{To: StateFailed, Actor: ActorPipeline, Action: "step:fetch", Reason: "upstream down"}); err != nil {
				t.Fatal(err)
			}
			// Keep an approval given to the failed image itself.
			approveAs(t, s, r, 2, "alice")
			if _, queued, err := s.Request(r, "pull"); err != nil || !queued {
				t.Fatalf("Request = %v, %v", queued, err)
			}
			if img := mustImage(t, s, r); img.State != StatePending || len(img.Approvals) != 0 {
				t.Fatalf("after the pull: %s with approvals %v", img.State, approvalsOf(img))
			}
			if _, err := s.Transition(r, Change{To: StateAwaitingApproval, Actor: ActorPipeline, Action: "step:verify"}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStore(t)
			r := ref("app", tc.name)
			setState(t, s, r, StateAwaitingApproval)
			approveAs(t, s, r, 2, "alice")
			tc.change(t, s, r)
			img := mustImage(t, s, r)
			if len(img.Approvals) != 0 {
				t.Fatalf("approvals after %s: %v", tc.name, approvalsOf(img))
			}
			if !slices.Contains(approveFrom, img.State) {
				setState(t, s, r, StateAwaitingApproval)
			}
			// Bob's approval is now the first of two, not the second.
			img, q := approveAs(t, s, r, 2, "bob")
			if q.Approved || q.Count != 1 || img.State == StateApproved {
				t.Fatalf("bob after %s: %+v, state %s", tc.name, q, img.State)
			}
		})
	}
}

// TestApprovalsKeptByNonStateChanges: what does not decide on the image
// (a pin, a pull record, a tag moving) leaves its pending approvals.
func TestApprovalsKeptByNonStateChanges(t *testing.T) {
	s, _ := openStore(t)
	r := ref("app", "kept")
	setState(t, s, r, StateRejected)
	approveAs(t, s, r, 2, "alice")
	if _, err := s.SetPinned(r, true, "carol", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordPulls([]PullRecord{{Ref: r, Pulls: 1, Last: time.Now()}}, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTag(r.Upstream, r.Repository, "v1", r.Digest, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	if got := approvalsOf(mustImage(t, s, r)); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("approvals %v, want [alice]", got)
	}
	if _, q := approveAs(t, s, r, 2, "bob"); !q.Approved {
		t.Fatalf("bob: %+v", q)
	}
}

func TestApprovalExpires(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	r := ref("app", "expiry")
	setState(t, s, r, StateRejected)
	approveAs(t, s, r, 2, "alice")
	clk.advance(ApprovalTTL - time.Second)
	if img := mustImage(t, s, r); len(img.PendingApprovals(clk.now())) != 1 {
		t.Fatalf("approval gone before its time: %v", approvalsOf(img))
	}
	clk.advance(time.Second)
	if img := mustImage(t, s, r); len(img.PendingApprovals(clk.now())) != 0 {
		t.Fatalf("approval still pending after %s", ApprovalTTL)
	}
	// Bob comes too late to complete alice's approval: his is the first.
	img, q := approveAs(t, s, r, 2, "bob")
	if q.Approved || !slices.Equal(approvalsOf(img), []string{"bob"}) {
		t.Fatalf("bob after expiry: %+v, approvals %v", q, approvalsOf(img))
	}
	// Alice, whose approval expired, may approve again, and completes.
	if _, q := approveAs(t, s, r, 2, "alice"); !q.Approved {
		t.Fatalf("alice after bob: %+v", q)
	}
}

// TestApproveHands: with signing, the completing approval hands the
// image to a sign job in the same transaction; a pending one queues none.
func TestApproveHands(t *testing.T) {
	s, _ := openStore(t)
	r := ref("app", "sign")
	setState(t, s, r, StateRejected)
	finishJob(t, s, r)
	c := approveChange("alice", "ok")
	c.To = StateSigning
	if _, q, err := s.Approve(r, 2, JobSign, c); err != nil || q.Approved {
		t.Fatalf("alice: %+v, %v", q, err)
	}
	if _, err := s.Job(r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a pending approval queued a job: %v", err)
	}
	c.Actor = "bob"
	img, q, err := s.Approve(r, 2, JobSign, c)
	if err != nil || !q.Approved || img.State != StateSigning {
		t.Fatalf("bob: %+v, %s, %v", q, img.State, err)
	}
	job, err := s.Job(r)
	if err != nil || job.Kind != JobSign || job.Actor != "bob" || !strings.Contains(job.Reason, "with alice") {
		t.Fatalf("sign job %+v, %v", job, err)
	}
}

// TestApproveRefusedStates: no approval, pending or not, is recorded for
// an image the pipeline still works on or one already approved.
func TestApproveRefusedStates(t *testing.T) {
	s, _ := openStore(t)
	for _, st := range []State{StatePending, StateScanning, StateSigning, StateApproved, StatePurged} {
		r := ref("app", "refused-"+string(st))
		setState(t, s, r, st)
		if _, _, err := s.Approve(r, 2, "", approveChange("alice", "ok")); !errors.Is(err, ErrConflict) {
			t.Errorf("approve from %s: %v, want ErrConflict", st, err)
		}
		if img := mustImage(t, s, r); len(img.Approvals) != 0 {
			t.Errorf("approval recorded on a %s image: %v", st, approvalsOf(img))
		}
	}
	if _, _, err := s.Approve(ref("app", "none"), 2, "", approveChange("alice", "ok")); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve an unknown image: %v, want ErrNotFound", err)
	}
}

// replicas returns n stores on one state: on PostgreSQL n replicas, each
// with its own connections; on bbolt the one store n times (a bbolt file
// is one process's, whose goroutines share it).
func replicas(t *testing.T, n int) []*Store {
	t.Helper()
	s, where := openStore(t)
	out := []*Store{s}
	for len(out) < n {
		if !onPostgres() {
			out = append(out, s)
			continue
		}
		o, err := reopen(t, where)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		out = append(out, o)
	}
	return out
}

// TestApproveRace: approvers racing on several replicas. However they
// interleave, different approvers end in exactly one approval once the
// count is reached, and one approver never approves alone however often
// it races with itself.
func TestApproveRace(t *testing.T) {
	rounds := 20
	if onPostgres() {
		rounds = 8
	}
	for _, tc := range []struct {
		name      string
		required  int
		approvers []string
		approved  bool
	}{
		{"two different", 2, []string{"alice", "bob"}, true},
		{"three for two", 2, []string{"alice", "bob", "carol"}, true},
		{"same one four times", 2, []string{"alice", "alice", "alice", "alice"}, false},
		{"same one and another", 2, []string{"alice", "alice", "alice", "bob"}, true},
		{"three of three", 3, []string{"alice", "bob", "carol", "bob"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stores := replicas(t, len(tc.approvers))
			for round := range rounds {
				r := ref("race", fmt.Sprintf("%s-%d", tc.name, round))
				setState(t, stores[0], r, StateRejected)
				var (
					wg       sync.WaitGroup
					mu       sync.Mutex
					approved []string
					pending  = map[string]int{}
				)
				start := make(chan struct{})
				for i, actor := range tc.approvers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						_, q, err := stores[i].Approve(r, tc.required, "", approveChange(actor, "race"))
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil && q.Approved:
							approved = append(approved, actor)
						case err == nil:
							pending[actor]++
						case errors.Is(err, ErrSameApprover), errors.Is(err, ErrConflict):
							// Someone else's approval counted, or it was already approved.
						default:
							t.Errorf("%s: %v", actor, err)
						}
					}()
				}
				close(start)
				wg.Wait()
				want := 0
				if tc.approved {
					want = 1
				}
				if len(approved) != want {
					t.Fatalf("round %d: approved by %v, want %d approval", round, approved, want)
				}
				for actor, n := range pending {
					if n > 1 {
						t.Fatalf("round %d: %s counted %d times", round, actor, n)
					}
				}
				img := mustImage(t, stores[0], r)
				if (img.State == StateApproved) != tc.approved {
					t.Fatalf("round %d: state %s", round, img.State)
				}
				if tc.approved && len(pending) != tc.required-1 {
					t.Fatalf("round %d: pending approvals by %v before %v approved", round, pending, approved)
				}
				var toApproved int
				for _, e := range mustAudit(t, stores[0], r.String()) {
					if e.To == StateApproved {
						toApproved++
					}
				}
				if toApproved != want {
					t.Fatalf("round %d: %d transitions to approved in the audit log", round, toApproved)
				}
			}
		})
	}
}
