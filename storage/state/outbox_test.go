package state

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// eventList returns the types and subjects of events, "type subject".
func eventList(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type+" "+ev.Subject)
	}
	return out
}

// TestOutboxRecordsTransitions: with the outbox on, every transition into
// a state outside the pipeline, and every new flag, is an event written
// with the transition; pipeline states are not; a conflicting transition
// writes nothing; with the outbox off nothing is written.
func TestOutboxRecordsTransitions(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/ev", "ev")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	// Off: a transition records nothing.
	setState(t, s, r, StateFetching)
	setState(t, s, r, StateAwaitingApproval)
	if st, err := s.Outbox(10); err != nil || st.Enabled || len(st.Recent) != 0 {
		t.Fatalf("outbox off: %+v, %v", st, err)
	}
	if _, ok, err := s.EmitEvent(EventVulnDBUpdated, "", EventData{}); err != nil || ok {
		t.Fatalf("EmitEvent with the outbox off = %v, %v", ok, err)
	}
	if err := s.ConfigureOutbox([]string{"a"}, 1000); err != nil {
		t.Fatal(err)
	}
	steps := []Change{
		{To: StateApproved, Actor: "admin:alice", Action: "approve", Reason: "looks fine"},
		{To: StateRevoked, Actor: "admin:bob", Action: "revoke", Reason: "CVE"},
		{To: StatePending, Actor: "admin:bob", Action: "rescan"},
		{To: StateFetching, Actor: ActorPipeline, Action: "step:fetch"},
		{To: StateFailed, Actor: ActorPipeline, Action: "step:fetch", Reason: "503"},
		{To: StateFetching, Actor: ActorPipeline, Action: "step:fetch"},
		{To: StateApproved, Actor: ActorPipeline, Action: "approve", Reason: "every step passed"},
		{Actor: ActorPipeline, Action: "rescan", Reason: "rescan would reject", Mutate: func(i *Image) error { i.Flag = "rescan would reject"; return nil }},
		// The same flag again is no new event.
		{Actor: ActorPipeline, Action: "rescan", Reason: "rescan would reject", Mutate: func(i *Image) error { i.Flag = "rescan would reject"; return nil }},
		{To: StateRejected, Actor: ActorPipeline, Action: "step:policy", Reason: "CVE-1"},
	}
	for _, c := range steps {
		if _, err := s.Transition(r, c); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	if _, err := s.Transition(r, Change{From: []State{StateApproved}, To: StateRevoked, Actor: "admin"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflicting transition: %v", err)
	}
	if _, ok, err := s.EmitEvent(EventVulnDBUpdated, "", EventData{DB: &EventDB{SchemaVersion: "v6.0.2"}}); err != nil || !ok {
		t.Fatalf("EmitEvent = %v, %v", ok, err)
	}
	st, evs, err := s.PendingEvents("a", 100)
	if err != nil {
		t.Fatal(err)
	}
	sub := r.String()
	want := []string{
		"dev.airlock.image.approved " + sub, "dev.airlock.image.revoked " + sub, "dev.airlock.image.failed " + sub,
		"dev.airlock.image.approved " + sub, EventFlagged + " " + sub, "dev.airlock.image.rejected " + sub,
		EventVulnDBUpdated + " ",
	}
	if got := eventList(evs); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	if st.Delivered != 0 {
		t.Fatalf("new endpoint delivered = %d", st.Delivered)
	}
	ids := map[string]bool{}
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) || ev.ID == "" || ids[ev.ID] || ev.Time.IsZero() {
			t.Fatalf("event %d: seq %d id %q time %s", i, ev.Seq, ev.ID, ev.Time)
		}
		ids[ev.ID] = true
	}
	if d := evs[1].Data; d.State != StateRevoked || d.From != StateApproved || d.Actor != "admin:bob" || d.Reason != "CVE" || d.Repository != "library/ev" || d.Upstream != "docker.io" || d.Digest != r.Digest {
		t.Fatalf("revoked event data: %+v", d)
	}
	if d := evs[4].Data; d.Flag != "rescan would reject" || d.State != StateApproved {
		t.Fatalf("flagged event data: %+v", d)
	}
	if evs[6].Data.DB == nil || evs[6].Data.DB.SchemaVersion != "v6.0.2" {
		t.Fatalf("vulndb event: %+v", evs[6])
	}
	// The same events read again carry the same IDs.
	_, again, err := s.PendingEvents("a", 100)
	if err != nil || !slices.EqualFunc(evs, again, func(a, b Event) bool { return a.ID == b.ID && a.Seq == b.Seq }) {
		t.Fatalf("events read again differ: %v", err)
	}
}

// TestOutboxCursorsAndPruning: each endpoint has its own progress; an
// event is pruned once every endpoint has handled it; an endpoint added
// later starts at the end; failures are recorded and cleared by progress.
func TestOutboxCursorsAndPruning(t *testing.T) {
	c := newClock()
	s, _ := openStore(t, WithClock(c.now))
	if err := s.ConfigureOutbox([]string{"a", "b"}, 1000); err != nil {
		t.Fatal(err)
	}
	emit := func(n int) {
		for i := 0; i < n; i++ {
			if _, _, err := s.EmitEvent(EventVulnDBUpdated, "", EventData{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	emit(5)
	if err := s.AckEvents("a", 5, Progress{Sent: 5}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Outbox(10)
	if err != nil || st.Kept != 5 || st.LastSeq != 5 {
		t.Fatalf("after a took all: %+v, %v", st, err)
	}
	next := c.now().Add(time.Minute)
	fs, err := s.EventFailed("b", 1, "connection refused", next)
	if err != nil || fs.Attempts != 1 || fs.FailingSeq != 1 {
		t.Fatalf("failed once: %+v, %v", fs, err)
	}
	if fs, err = s.EventFailed("b", 1, "503", next); err != nil || fs.Attempts != 2 || fs.LastError != "503" {
		t.Fatalf("failed twice: %+v, %v", fs, err)
	}
	if err := s.AckEvents("b", 3, Progress{Sent: 2, Skipped: 1}); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Outbox(10)
	if st.Kept != 2 || st.FirstSeq != 4 {
		t.Fatalf("after b took 3: kept %d first %d", st.Kept, st.FirstSeq)
	}
	for _, e := range st.Endpoints {
		if e.Name == "b" && (e.Attempts != 0 || e.Pending != 2 || e.Sent != 2 || e.Skipped != 1 || e.LastSuccess.IsZero() || e.LastError != "503") {
			t.Fatalf("endpoint b: %+v", e)
		}
	}
	// A new endpoint starts at the end; a removed one no longer holds events back.
	if err := s.ConfigureOutbox([]string{"a", "c"}, 1000); err != nil {
		t.Fatal(err)
	}
	if _, evs, err := s.PendingEvents("c", 10); err != nil || len(evs) != 0 {
		t.Fatalf("new endpoint pending: %d, %v", len(evs), err)
	}
	if _, _, err := s.PendingEvents("b", 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed endpoint: %v", err)
	}
	st, _ = s.Outbox(10)
	if st.Kept != 0 {
		t.Fatalf("events every endpoint has are kept: %d", st.Kept)
	}
	emit(1)
	if _, evs, _ := s.PendingEvents("c", 10); len(evs) != 1 || evs[0].Seq != 6 {
		t.Fatalf("new endpoint gets new events: %+v", evs)
	}
	// Off empties it.
	if err := s.ConfigureOutbox(nil, 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Outbox(10); st.Enabled || st.Kept != 0 || len(st.Endpoints) != 0 {
		t.Fatalf("disabled outbox: %+v", st)
	}
}

// TestOutboxBound: beyond max pending the oldest events are dropped and
// counted; an endpoint behind them sees the gap.
func TestOutboxBound(t *testing.T) {
	s, _ := openStore(t)
	if err := s.ConfigureOutbox([]string{"slow"}, 3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, _, err := s.EmitEvent(EventVulnDBUpdated, fmt.Sprint(i), EventData{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Outbox(10)
	if err != nil || st.Kept != 3 || st.Dropped != 2 || st.FirstSeq != 3 || len(st.Recent) != 3 || st.Recent[0].Seq != 5 {
		t.Fatalf("bounded outbox: %+v, %v", st, err)
	}
	es, evs, err := s.PendingEvents("slow", 10)
	if err != nil || es.Delivered != 0 || len(evs) != 3 || evs[0].Seq != 3 {
		t.Fatalf("pending after drops: %+v %d, %v", es, len(evs), err)
	}
}

// TestOutboxSurvivesRestart: events and progress are in the store: a
// process that opens it again (or another replica) continues where the
// last one stopped, with the same IDs.
func TestOutboxSurvivesRestart(t *testing.T) {
	where := newWhere(t)
	s, err := reopen(t, where)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigureOutbox([]string{"a"}, 100); err != nil {
		t.Fatal(err)
	}
	r := ref("library/restart", "restart")
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	setState(t, s, r, StateAwaitingApproval)
	setState(t, s, r, StateApproved)
	_, before, err := s.PendingEvents("a", 10)
	if err != nil || len(before) != 2 {
		t.Fatalf("before restart: %d, %v", len(before), err)
	}
	if err := s.AckEvents("a", before[0].Seq, Progress{Sent: 1}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := reopen(t, where)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.ConfigureOutbox([]string{"a"}, 100); err != nil {
		t.Fatal(err)
	}
	setState(t, s2, r, StateRevoked)
	_, after, err := s2.PendingEvents("a", 10)
	if err != nil || len(after) != 2 || after[0].ID != before[1].ID || after[1].Type != ImageEventType(StateRevoked) || after[1].Seq != 3 {
		t.Fatalf("after restart: %+v, %v", after, err)
	}
}

// TestEventTypesCoverStates: every state outside the pipeline has a type.
func TestEventTypesCoverStates(t *testing.T) {
	types := EventTypes()
	for _, st := range []State{StateAwaitingApproval, StateApproved, StateRejected, StateFailed, StateRevoked} {
		if !slices.Contains(types, ImageEventType(st)) {
			t.Errorf("no event type for %s", st)
		}
	}
	if slices.Contains(types, ImageEventType(StatePending)) {
		t.Error("pipeline states emit no event")
	}
}
