package state

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// clock is a settable time source for WithClock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// openStore opens a store on the engine under test (see backend_test.go)
// and closes it at the end of the test. It returns where the store lives,
// for reopen.
func openStore(t *testing.T, opts ...Option) (*Store, string) {
	t.Helper()
	where := newWhere(t)
	s, err := reopen(t, where, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, where
}

func dgst(s string) digest.Digest { return digest.FromString(s) }

func ref(repo, content string) Ref {
	return Ref{Upstream: "docker.io", Repository: repo, Digest: dgst(content)}
}

func mustImage(t *testing.T, s *Store, r Ref) Image {
	t.Helper()
	img, err := s.Image(r)
	if err != nil {
		t.Fatalf("Image(%s): %v", r, err)
	}
	return img
}

func mustAudit(t *testing.T, s *Store, image string) []Entry {
	t.Helper()
	es, err := s.Audit(image, 0)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return es
}

// setState moves r to st (creating the record through Request first).
func setState(t *testing.T, s *Store, r Ref, st State) Image {
	t.Helper()
	if _, err := s.Image(r); errors.Is(err, ErrNotFound) {
		if _, _, err := s.Request(r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	img, err := s.Transition(r, Change{To: st, Actor: "test", Action: "set", Reason: "set to " + string(st)})
	if err != nil {
		t.Fatalf("Transition(%s -> %s): %v", r, st, err)
	}
	return img
}

func TestRefStringAndParse(t *testing.T) {
	r := ref("library/alpine", "a")
	if got, want := r.String(), "docker.io/library/alpine@"+string(dgst("a")); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	back, err := ParseRef(r.String())
	if err != nil || back != r {
		t.Fatalf("ParseRef(%q) = %+v, %v", r.String(), back, err)
	}
	for _, bad := range []string{
		"docker.io/library/alpine",
		"docker.io@" + string(dgst("a")),
		"/library/alpine@" + string(dgst("a")),
		"docker.io/library/alpine@sha256:nothex",
		"docker.io/library/alpine@",
	} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) succeeded", bad)
		}
	}
}

func TestStates(t *testing.T) {
	for _, st := range States {
		if !st.Valid() {
			t.Errorf("%s is not Valid", st)
		}
	}
	if State("bogus").Valid() || State("").Valid() {
		t.Error("unknown state is Valid")
	}
	in := map[State]bool{StatePending: true, StateFetching: true, StateVerifying: true, StateScanning: true, StateSigning: true}
	for _, st := range States {
		if st.InPipeline() != in[st] {
			t.Errorf("%s.InPipeline() = %v", st, st.InPipeline())
		}
	}
}

func TestRequestConcurrentIsIdempotent(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/alpine", "v1")
	const callers = 50
	var wg sync.WaitGroup
	var queued atomic.Int32
	errs := make(chan error, callers)
	start := make(chan struct{})
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			img, q, err := s.Request(r, "pull")
			if err != nil {
				errs <- err
				return
			}
			if img.Ref != r || !img.State.InPipeline() {
				errs <- fmt.Errorf("Request returned %+v", img)
				return
			}
			if q {
				queued.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := queued.Load(); n != 1 {
		t.Errorf("%d callers report they queued a job, want exactly 1", n)
	}
	jobs, err := s.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Image != r || jobs[0].Kind != JobPull || jobs[0].Actor != "pull" {
		t.Errorf("jobs = %+v, want one pull job for %s", jobs, r)
	}
	if d := s.QueueDepth(); d != 1 {
		t.Errorf("QueueDepth = %d", d)
	}
	imgs, err := s.Images("")
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].State != StatePending {
		t.Errorf("images = %+v, want one pending image", imgs)
	}
	requests := 0
	for _, e := range mustAudit(t, s, "") {
		if e.Action == "request" {
			requests++
			if e.Image != r.String() || e.To != StatePending || e.Actor != "pull" {
				t.Errorf("request entry = %+v", e)
			}
		}
	}
	if requests != 1 {
		t.Errorf("%d request audit entries, want 1", requests)
	}
}

func TestRequestByState(t *testing.T) {
	tests := []struct {
		state      State
		wantQueued bool
		wantState  State
	}{
		{StateApproved, false, StateApproved},
		{StateAwaitingApproval, false, StateAwaitingApproval},
		{StateRejected, false, StateRejected},
		{StateRevoked, false, StateRevoked},
		// A failed image without a job is queued again by the next pull.
		{StateFailed, true, StatePending},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			s, _ := openStore(t)
			r := ref("library/alpine", "x")
			if _, _, err := s.Request(r, "pull"); err != nil {
				t.Fatal(err)
			}
			job, err := s.Job(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.FinishJob(job, &Change{To: tt.state, Actor: "test", Action: "set"}); err != nil {
				t.Fatal(err)
			}
			before := len(mustAudit(t, s, ""))
			img, queued, err := s.Request(r, "pull")
			if err != nil {
				t.Fatal(err)
			}
			if queued != tt.wantQueued || img.State != tt.wantState {
				t.Errorf("Request on %s = (%s, queued %v), want (%s, %v)", tt.state, img.State, queued, tt.wantState, tt.wantQueued)
			}
			if got := s.QueueDepth(); got != map[bool]int{true: 1, false: 0}[tt.wantQueued] {
				t.Errorf("QueueDepth = %d", got)
			}
			after := mustAudit(t, s, "")
			if tt.wantQueued {
				if len(after) != before+1 || after[0].From != StateFailed || after[0].To != StatePending {
					t.Errorf("audit after re-request = %+v", after[:len(after)-before])
				}
				if mustImage(t, s, r).Attempts != 0 {
					t.Error("attempts not reset")
				}
			} else if len(after) != before {
				t.Errorf("Request on %s wrote %d audit entries", tt.state, len(after)-before)
			}
		})
	}
}

func TestTransitionConflictChangesNothing(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	r := ref("library/alpine", "c")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	before := mustImage(t, s, r)
	auditBefore := mustAudit(t, s, "")
	clk.advance(time.Minute)

	_, err := s.Transition(r, Change{From: []State{StateAwaitingApproval, StateRejected}, To: StateApproved, Actor: "admin", Action: "approve", Reason: "ok"})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Transition from the wrong state = %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), string(StatePending)) {
		t.Errorf("conflict error %q does not say the current state", err)
	}
	// A failing Mutate rolls back as well.
	boom := errors.New("boom")
	_, err = s.Transition(r, Change{To: StateFetching, Actor: "pipeline", Action: "step:fetch", Mutate: func(img *Image) error {
		img.Reason = "half-done"
		return boom
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("Transition with failing Mutate = %v", err)
	}
	after := mustImage(t, s, r)
	if after.State != before.State || after.Reason != before.Reason || !after.Updated.Equal(before.Updated) {
		t.Errorf("image changed: before %+v\nafter %+v", before, after)
	}
	if auditAfter := mustAudit(t, s, ""); !slices.Equal(auditAfter, auditBefore) {
		t.Errorf("audit changed: before %+v\nafter %+v", auditBefore, auditAfter)
	}
	// Unknown images are not found, not conflicts.
	if _, err := s.Transition(ref("library/alpine", "nope"), Change{To: StateApproved}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Transition(unknown) = %v, want ErrNotFound", err)
	}
}

func TestEveryTransitionIsAudited(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	r := ref("library/alpine", "t")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		from   []State
		to     State
		actor  string
		action string
		reason string
	}{
		{[]State{StatePending}, StateFetching, "pipeline", "step:fetch", "fetch in progress"},
		{[]State{StateFetching}, StateAwaitingApproval, "pipeline", "step:policy", "manual policy"},
		{[]State{StateAwaitingApproval}, StateApproved, "admin:alice", "approve", "looks good"},
		{nil, "", "admin:bob", "note", "same state, audited"},
		{[]State{StateApproved}, StateRevoked, "admin:bob", "revoke", "CVE-2024-0001"},
		{nil, StateApproved, "admin:alice", "approve", "fixed upstream"},
	}
	prev := StatePending
	for i, st := range steps {
		clk.advance(time.Second)
		n := len(mustAudit(t, s, ""))
		img, err := s.Transition(r, Change{From: st.from, To: st.to, Actor: st.actor, Action: st.action, Reason: st.reason})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		want := st.to
		if want == "" {
			want = prev
		}
		if img.State != want {
			t.Errorf("step %d: state %s, want %s", i, img.State, want)
		}
		if !img.Updated.Equal(clk.now()) {
			t.Errorf("step %d: Updated %s, want %s", i, img.Updated, clk.now())
		}
		es := mustAudit(t, s, "")
		if len(es) != n+1 {
			t.Fatalf("step %d: %d audit entries written, want 1", i, len(es)-n)
		}
		e := es[0] // newest first
		if e.Image != r.String() || e.From != prev || e.To != want || e.Actor != st.actor || e.Action != st.action || e.Reason != st.reason || !e.Time.Equal(clk.now()) {
			t.Errorf("step %d: audit entry %+v", i, e)
		}
		if es[0].Seq <= es[1].Seq {
			t.Errorf("audit sequence not increasing: %d after %d", es[0].Seq, es[1].Seq)
		}
		prev = want
	}
	img := mustImage(t, s, r)
	if img.ApprovedBy != "admin:alice" || !img.ApprovedAt.Equal(clk.now()) {
		t.Errorf("approval not recorded: by %q at %s", img.ApprovedBy, img.ApprovedAt)
	}
	if img.Reason != "fixed upstream" {
		t.Errorf("reason = %q", img.Reason)
	}
}

func TestTransitionMutateAndChanged(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/alpine", "m")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	changed := s.Changed()
	select {
	case <-changed:
		t.Fatal("Changed closed before any change")
	default:
	}
	_, err := s.Transition(r, Change{To: StateFetching, Actor: "pipeline", Action: "step:fetch", Mutate: func(img *Image) error {
		img.MediaType, img.Size, img.ContentSize = "application/vnd.oci.image.manifest.v1+json", 100, 1000
		img.SetStep(StepResult{Step: "fetch", Status: "passed"})
		img.SetStep(StepResult{Step: "fetch", Status: "passed", Detail: "again"})
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not closed after a transition")
	}
	img := mustImage(t, s, r)
	if !img.Fetched() || len(img.Steps) != 1 || img.Steps[0].Detail != "again" {
		t.Errorf("mutation not stored: %+v", img)
	}
}

func TestRecordTagHistoryAndLastApproved(t *testing.T) {
	s, _ := openStore(t)
	const repo = "library/nginx"
	d1, d2, d3 := dgst("n1"), dgst("n2"), dgst("n3")
	r1, r2, r3 := ref(repo, "n1"), ref(repo, "n2"), ref(repo, "n3")

	if _, err := s.Tag("docker.io", repo, "latest"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Tag before any record = %v, want ErrNotFound", err)
	}
	// d1 is pulled and approved.
	if _, err := s.RecordTag("docker.io", repo, "latest", d1, "mt1"); err != nil {
		t.Fatal(err)
	}
	setState(t, s, r1, StateApproved)
	// The tag moves to d2 (revoked) and then to d3 (pending, newest).
	if _, err := s.RecordTag("docker.io", repo, "latest", d2, "mt2"); err != nil {
		t.Fatal(err)
	}
	setState(t, s, r2, StateRevoked)
	if _, _, err := s.Request(r3, "pull"); err != nil {
		t.Fatal(err)
	}
	tag, err := s.RecordTag("docker.io", repo, "latest", d3, "mt3")
	if err != nil {
		t.Fatal(err)
	}
	// Recording the current digest again changes nothing.
	again, err := s.RecordTag("docker.io", repo, "latest", d3, "mt3")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []Tag{tag, again} {
		if got := historyDigests(tg); !slices.Equal(got, []digest.Digest{d1, d2, d3}) {
			t.Fatalf("history = %v, want [d1 d2 d3]", got)
		}
	}
	if cur, ok := tag.Current(); !ok || cur.Digest != d3 || cur.MediaType != "mt3" {
		t.Errorf("Current = %+v, %v", cur, ok)
	}
	if tag.Upstream != "docker.io" || tag.Repository != repo || tag.Name != "latest" {
		t.Errorf("tag = %+v", tag)
	}
	// The image that exists when the tag is recorded learns its tag name.
	if img := mustImage(t, s, r3); !slices.Contains(img.Tags, "latest") {
		t.Errorf("image tags = %v", img.Tags)
	}

	img, ok, err := s.LastApproved(tag)
	if err != nil || !ok || img.Digest != d1 {
		t.Fatalf("LastApproved = %s, %v, %v; want d1 (d3 pending, d2 revoked)", img.Digest, ok, err)
	}
	// Once d3 is approved it is the last approved one.
	setState(t, s, r3, StateApproved)
	if img, ok, _ := s.LastApproved(tag); !ok || img.Digest != d3 {
		t.Errorf("LastApproved = %s, %v; want d3", img.Digest, ok)
	}
	// Revoking everything leaves nothing to serve.
	setState(t, s, r3, StateRevoked)
	setState(t, s, r1, StateRevoked)
	if img, ok, err := s.LastApproved(tag); ok || err != nil {
		t.Errorf("LastApproved with all revoked = %s, %v, %v", img.Digest, ok, err)
	}

	// A digest seen before moves to the end when the tag points back to it.
	tag, err = s.RecordTag("docker.io", repo, "latest", d1, "mt1")
	if err != nil {
		t.Fatal(err)
	}
	if got := historyDigests(tag); !slices.Equal(got, []digest.Digest{d2, d3, d1}) {
		t.Errorf("history after moving back = %v, want [d2 d3 d1]", got)
	}
	// Digests without an image record are skipped.
	tg := Tag{Upstream: "docker.io", Repository: repo, Name: "x", History: []TagEntry{{Digest: dgst("unknown")}}}
	if _, ok, err := s.LastApproved(tg); ok || err != nil {
		t.Errorf("LastApproved(unknown digests) = %v, %v", ok, err)
	}
}

func TestTagHistoryIsBounded(t *testing.T) {
	s, _ := openStore(t)
	var last Tag
	for i := 0; i < maxTagHistory+10; i++ {
		var err error
		if last, err = s.RecordTag("docker.io", "library/busybox", "latest", dgst(fmt.Sprint(i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if len(last.History) != maxTagHistory {
		t.Fatalf("history has %d entries, want %d", len(last.History), maxTagHistory)
	}
	if cur, _ := last.Current(); cur.Digest != dgst(fmt.Sprint(maxTagHistory+9)) {
		t.Errorf("current = %s", cur.Digest)
	}
}

func TestTagsListsOneRepository(t *testing.T) {
	s, _ := openStore(t)
	for _, x := range []struct{ repo, tag string }{
		{"library/alpine", "3.20"},
		{"library/alpine", "3.19"},
		{"library/alpine-extra", "1"},
		{"library/alpine/sub", "2"},
		{"library/alpin", "3"},
	} {
		if _, err := s.RecordTag("docker.io", x.repo, x.tag, dgst(x.repo+x.tag), ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordTag("ghcr.io", "library/alpine", "other-upstream", dgst("g"), ""); err != nil {
		t.Fatal(err)
	}
	tags, err := s.Tags("docker.io", "library/alpine")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range tags {
		names = append(names, tg.Name)
	}
	if !slices.Equal(names, []string{"3.19", "3.20"}) {
		t.Errorf("Tags = %v, want [3.19 3.20]", names)
	}
}

func historyDigests(t Tag) []digest.Digest {
	var out []digest.Digest
	for _, e := range t.History {
		out = append(out, e.Digest)
	}
	return out
}

func TestJobQueue(t *testing.T) {
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	r1, r2 := ref("library/a", "1"), ref("library/b", "2")
	for _, r := range []Ref{r1, r2} {
		if _, q, err := s.Request(r, "pull"); err != nil || !q {
			t.Fatalf("Request(%s) = queued %v, %v", r, q, err)
		}
	}
	j1, err := s.Job(r1)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := s.Job(r2)
	if err != nil {
		t.Fatal(err)
	}
	if j1.ID >= j2.ID {
		t.Fatalf("job ids not increasing: %d, %d", j1.ID, j2.ID)
	}
	none := func(uint64) bool { return false }
	busy := func(ids ...uint64) func(uint64) bool {
		return func(id uint64) bool { return slices.Contains(ids, id) }
	}

	// The oldest due job comes first; busy jobs are skipped.
	if j, ok, err := s.NextJob(none); err != nil || !ok || j.ID != j1.ID {
		t.Fatalf("NextJob = %d, %v, %v; want %d", j.ID, ok, err, j1.ID)
	}
	if j, ok, _ := s.NextJob(busy(j1.ID)); !ok || j.ID != j2.ID {
		t.Fatalf("NextJob(busy j1) = %d, %v; want %d", j.ID, ok, j2.ID)
	}
	if _, ok, _ := s.NextJob(busy(j1.ID, j2.ID)); ok {
		t.Fatal("NextJob returned a busy job")
	}

	// A failed attempt: image failed with the reason, job waits for its backoff.
	img, err := s.RetryJob(j1, clk.now().Add(time.Minute), Change{
		From: []State{StatePending}, To: StateFailed, Actor: "pipeline", Action: "step:fetch", Reason: "upstream 500",
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.State != StateFailed || img.Attempts != 1 || img.Reason != "upstream 500" {
		t.Errorf("after RetryJob: %+v", img)
	}
	j1, _ = s.Job(r1)
	if j1.Attempts != 1 || !j1.NotBefore.Equal(clk.now().Add(time.Minute)) {
		t.Errorf("retried job = %+v", j1)
	}
	if j, ok, _ := s.NextJob(none); !ok || j.ID != j2.ID {
		t.Fatalf("NextJob with j1 backing off = %d, %v; want %d", j.ID, ok, j2.ID)
	}
	if _, ok, _ := s.NextJob(busy(j2.ID)); ok {
		t.Fatal("NextJob returned a job that is not due yet")
	}
	// j1 is the only job that waits: NextDue says when it is due.
	if next, err := s.NextDue(); err != nil || !next.Equal(j1.NotBefore) {
		t.Errorf("NextDue = %s, %v; want %s", next, err, j1.NotBefore)
	}
	// A second failure counts on.
	if img, err = s.RetryJob(j1, clk.now().Add(2*time.Minute), Change{
		From: []State{StateFailed}, To: StateFailed, Actor: "pipeline", Action: "step:fetch", Reason: "upstream 500 again",
	}); err != nil || img.Attempts != 2 {
		t.Fatalf("second RetryJob = attempts %d, %v", img.Attempts, err)
	}
	clk.advance(3 * time.Minute)
	if j, ok, _ := s.NextJob(none); !ok || j.ID != j1.ID || j.Attempts != 2 {
		t.Fatalf("NextJob after the backoff = %+v, %v; want job %d", j, ok, j1.ID)
	}

	// A FinishJob whose transition conflicts changes nothing: the job stays.
	if _, err := s.FinishJob(j2, &Change{From: []State{StateApproved}, To: StateRevoked}); !errors.Is(err, ErrConflict) {
		t.Fatalf("FinishJob with a conflicting change = %v", err)
	}
	if _, err := s.Job(r2); err != nil {
		t.Fatalf("job gone after a failed FinishJob: %v", err)
	}
	// FinishJob removes the job and its index entry with the final state.
	img, err = s.FinishJob(j2, &Change{From: []State{StatePending}, To: StateAwaitingApproval, Actor: "pipeline", Action: "step:policy", Reason: "held"})
	if err != nil || img.State != StateAwaitingApproval {
		t.Fatalf("FinishJob = %+v, %v", img, err)
	}
	if _, err := s.Job(r2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Job after FinishJob = %v, want ErrNotFound", err)
	}
	if d := s.QueueDepth(); d != 1 {
		t.Errorf("QueueDepth = %d, want 1", d)
	}
	// Without the index entry the image can be queued again (by a rescan).
	if _, created, err := s.Enqueue(r2, JobRescan, "admin"); err != nil || !created {
		t.Errorf("Enqueue after FinishJob = created %v, %v", created, err)
	}
	// Finishing without a change only drops the job.
	if _, err := s.FinishJob(j1, nil); err != nil {
		t.Fatal(err)
	}
	if mustImage(t, s, r1).State != StateFailed {
		t.Error("FinishJob(nil) changed the image")
	}
	jobs, _ := s.Jobs()
	if len(jobs) != 1 || jobs[0].Image != r2 || jobs[0].Kind != JobRescan {
		t.Errorf("jobs = %+v", jobs)
	}
}

func TestEnqueueIsIdempotent(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/a", "e")
	setState(t, s, r, StateApproved)
	job, _ := s.Job(r)
	if _, err := s.FinishJob(job, nil); err != nil {
		t.Fatal(err)
	}
	j1, created1, err := s.Enqueue(r, JobRescan, "admin")
	if err != nil || !created1 {
		t.Fatalf("Enqueue = %v, %v", created1, err)
	}
	j2, created2, err := s.Enqueue(r, JobRescan, "admin")
	if err != nil || created2 || j2.ID != j1.ID {
		t.Fatalf("second Enqueue = %+v, created %v, %v", j2, created2, err)
	}
	if s.QueueDepth() != 1 {
		t.Errorf("QueueDepth = %d", s.QueueDepth())
	}
}

func TestResetQueuesPipelineAgain(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/a", "reset")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	job, _ := s.Job(r)
	if _, err := s.FinishJob(job, &Change{To: StateRevoked, Actor: "admin", Action: "revoke"}); err != nil {
		t.Fatal(err)
	}
	img, err := s.Reset(r, Change{Actor: "admin", Action: "rescan", Reason: "check again"})
	if err != nil || img.State != StatePending {
		t.Fatalf("Reset = %+v, %v", img, err)
	}
	if j, err := s.Job(r); err != nil || j.Kind != JobPull {
		t.Errorf("Job after Reset = %+v, %v", j, err)
	}
	// Reset of an image that still has a job keeps the one job.
	if _, err := s.Reset(r, Change{Actor: "admin", Action: "rescan"}); err != nil {
		t.Fatal(err)
	}
	if s.QueueDepth() != 1 {
		t.Errorf("QueueDepth = %d, want 1", s.QueueDepth())
	}
	if e := mustAudit(t, s, r.String())[1]; e.From != StateRevoked || e.To != StatePending || e.Action != "rescan" || e.Reason != "check again" {
		t.Errorf("reset audit entry = %+v", e)
	}
}

func TestAuditFilterAndLimit(t *testing.T) {
	s, _ := openStore(t)
	a1, a2, b := ref("library/a", "1"), ref("library/a", "2"), ref("library/ab", "3")
	for _, r := range []Ref{a1, a2, b} {
		setState(t, s, r, StateApproved)
	}
	if err := s.Record(Entry{Actor: "admin", Image: a1.String(), Action: "rescan", Reason: "why not"}); err != nil {
		t.Fatal(err)
	}
	all := mustAudit(t, s, "")
	if len(all) != 7 {
		t.Fatalf("%d entries, want 7", len(all))
	}
	if all[0].Action != "rescan" || all[0].Time.IsZero() {
		t.Errorf("newest entry = %+v", all[0])
	}
	if got := mustAudit(t, s, a1.String()); len(got) != 3 {
		t.Errorf("entries of %s = %d, want 3", a1, len(got))
	}
	// A repository name selects the entries of all its digests, not those of
	// a repository whose name merely starts the same.
	if got := mustAudit(t, s, "docker.io/library/a"); len(got) != 5 {
		t.Errorf("entries of the repository = %d, want 5", len(got))
	}
	limited, err := s.Audit("", 2)
	if err != nil || len(limited) != 2 || limited[0].Seq != all[0].Seq {
		t.Errorf("Audit(limit 2) = %+v, %v", limited, err)
	}
}

func TestRestartKeepsQueue(t *testing.T) {
	s, path := openStore(t)
	r1, r2 := ref("library/a", "r1"), ref("library/b", "r2")
	for _, r := range []Ref{r1, r2} {
		if _, _, err := s.Request(r, "pull"); err != nil {
			t.Fatal(err)
		}
	}
	// r1 was in the middle of its fetch when the process went away.
	if _, err := s.Transition(r1, Change{From: []State{StatePending}, To: StateFetching, Actor: "pipeline", Action: "step:fetch"}); err != nil {
		t.Fatal(err)
	}
	jobsBefore, _ := s.Jobs()
	auditBefore := mustAudit(t, s, "")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := reopen(t, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	jobsAfter, err := s2.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(jobsBefore, jobsAfter, func(a, b Job) bool {
		return a.ID == b.ID && a.Image == b.Image && a.Kind == b.Kind && a.Created.Equal(b.Created)
	}) || len(jobsAfter) != 2 {
		t.Fatalf("jobs after reopen = %+v, want %+v", jobsAfter, jobsBefore)
	}
	// Every queued job is due again: interrupted work resumes.
	if j, ok, err := s2.NextJob(func(uint64) bool { return false }); err != nil || !ok || j.Image != r1 {
		t.Errorf("NextJob after reopen = %+v, %v, %v", j, ok, err)
	}
	if img, err := s2.Image(r1); err != nil || img.State != StateFetching {
		t.Errorf("image after reopen = %+v, %v", img, err)
	}
	if got, _ := s2.Audit("", 0); len(got) != len(auditBefore) {
		t.Errorf("audit after reopen has %d entries, want %d", len(got), len(auditBefore))
	}
	// New jobs get fresh ids after the old ones.
	r3 := ref("library/c", "r3")
	if _, _, err := s2.Request(r3, "pull"); err != nil {
		t.Fatal(err)
	}
	j3, _ := s2.Job(r3)
	if j3.ID <= jobsBefore[len(jobsBefore)-1].ID {
		t.Errorf("new job id %d reuses an old one", j3.ID)
	}
}

func TestOpenLockedFile(t *testing.T) {
	onlyBolt(t)
	_, path := openStore(t)
	start := time.Now()
	s2, err := Open(path)
	if err == nil {
		s2.Close()
		t.Fatal("opening the same file twice succeeded")
	}
	if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say the file %s is locked", err, path)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to fail", d)
	}
}

func TestPing(t *testing.T) {
	s, _ := openStore(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
}

func TestOpenBadPath(t *testing.T) {
	onlyBolt(t)
	_, err := Open(filepath.Join(t.TempDir(), "missing-dir", "airlock.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestNextDue checks NextDue in both queue orders: jobs that are already
// due never hide one that waits.
func TestNextDue(t *testing.T) {
	for _, waitingFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("waiting first %v", waitingFirst), func(t *testing.T) {
			clk := newClock()
			s, _ := openStore(t, WithClock(clk.now))
			if next, err := s.NextDue(); err != nil || !next.IsZero() {
				t.Fatalf("NextDue on an empty queue = %s, %v", next, err)
			}
			waiting, due := ref("library/w", "w"), ref("library/d", "d")
			order := []Ref{due, waiting}
			if waitingFirst {
				order = []Ref{waiting, due}
			}
			for _, r := range order {
				if _, _, err := s.Request(r, "pull"); err != nil {
					t.Fatal(err)
				}
			}
			if next, _ := s.NextDue(); !next.IsZero() {
				t.Fatalf("NextDue with every job due = %s, want zero", next)
			}
			job, _ := s.Job(waiting)
			at := clk.now().Add(30 * time.Second)
			if _, err := s.RetryJob(job, at, Change{To: StateFailed, Actor: "pipeline", Action: "step:fetch"}); err != nil {
				t.Fatal(err)
			}
			if next, err := s.NextDue(); err != nil || !next.Equal(at) {
				t.Errorf("NextDue = %s, %v; want %s", next, err, at)
			}
			clk.advance(time.Minute)
			if next, _ := s.NextDue(); !next.IsZero() {
				t.Errorf("NextDue once the job is due = %s, want zero", next)
			}
		})
	}
}

// TestRequestAfterRecordTag: a pull by tag records the tag before the
// image record exists; the record created next carries the tag.
func TestRequestAfterRecordTag(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/alpine", "tagged")
	for _, tag := range []string{"3.20", "latest"} {
		if _, err := s.RecordTag("docker.io", r.Repository, tag, r.Digest, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A tag that moved on to another digest, and the same tag in another repository, do not count.
	if _, err := s.RecordTag("docker.io", r.Repository, "old", r.Digest, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTag("docker.io", r.Repository, "old", dgst("newer"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTag("docker.io", "library/alpine-x", "other", r.Digest, ""); err != nil {
		t.Fatal(err)
	}
	img, _, err := s.Request(r, "pull")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(img.Tags)
	if !slices.Equal(img.Tags, []string{"3.20", "latest"}) {
		t.Errorf("tags of the new record = %v, want [3.20 latest]", img.Tags)
	}
	if got := mustImage(t, s, r).Tags; len(got) != 2 {
		t.Errorf("stored tags = %v", got)
	}
}
