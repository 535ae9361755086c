package state

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestMergePullers(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	list := []Puller{
		{Addr: "10.0.0.1", UserAgent: "containerd/1.7", Last: t0, Pulls: 2},
		{Addr: "10.0.0.2", UserAgent: "docker/27", Last: t0.Add(-time.Hour), Pulls: 1},
	}
	add := []Puller{
		// Same client, later: counts add, the later time stays.
		{Addr: "10.0.0.1", UserAgent: "containerd/1.7", Last: t0.Add(time.Minute), Pulls: 3, Heads: 1},
		// Same address, other agent: another client.
		{Addr: "10.0.0.1", UserAgent: "podman/5", Last: t0.Add(-time.Minute), Pulls: 1},
		// An older time never moves a newer one back.
		{Addr: "10.0.0.2", UserAgent: "docker/27", Last: t0.Add(-2 * time.Hour), Pulls: 1},
	}
	got := MergePullers(list, add, 10)
	want := []Puller{
		{Addr: "10.0.0.1", UserAgent: "containerd/1.7", Last: t0.Add(time.Minute), Pulls: 5, Heads: 1},
		{Addr: "10.0.0.1", UserAgent: "podman/5", Last: t0.Add(-time.Minute), Pulls: 1},
		{Addr: "10.0.0.2", UserAgent: "docker/27", Last: t0.Add(-time.Hour), Pulls: 2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("merged\n got %v\nwant %v", got, want)
	}
	if list[0].Pulls != 2 {
		t.Errorf("MergePullers changed its input: %v", list)
	}
	if got := MergePullers(list, add, 2); len(got) != 2 || got[1].UserAgent != "podman/5" {
		t.Errorf("keep 2: got %v, want the two newest", got)
	}
	if got := MergePullers(list, add, 0); len(got) != 0 {
		t.Errorf("keep 0: got %v", got)
	}
}

func TestRecordPullsAddsAndBounds(t *testing.T) {
	c := newClock()
	s, _ := openStore(t, WithClock(c.now))
	r := ref("library/pulled", "a")
	setState(t, s, r, StateApproved)
	before := mustImage(t, s, r)

	t0 := c.now().Add(time.Minute)
	var pullers []Puller
	for i := range 30 {
		pullers = append(pullers, Puller{Addr: fmt.Sprintf("10.0.0.%d", i), UserAgent: "containerd/1.7", Last: t0.Add(time.Duration(i) * time.Second), Pulls: 1})
	}
	if err := s.RecordPulls([]PullRecord{{Ref: r, Pulls: 30, Last: t0.Add(29 * time.Second), Pullers: pullers}}, 20); err != nil {
		t.Fatal(err)
	}
	img, list, err := s.Pulls(r)
	if err != nil {
		t.Fatal(err)
	}
	if img.PullCount != 30 || !img.LastPulled.Equal(t0.Add(29*time.Second)) {
		t.Errorf("after the first batch: pull_count %d, last_pulled %s", img.PullCount, img.LastPulled)
	}
	if len(list) != 20 || list[0].Addr != "10.0.0.29" || list[19].Addr != "10.0.0.10" {
		t.Fatalf("recent pullers: %d entries, want the 20 newest first: %v", len(list), list)
	}
	// Nothing else of the record changed, and no audit entry was written.
	if img.State != StateApproved || img.Reason != before.Reason || !img.Updated.Equal(before.Updated) {
		t.Errorf("record changed beyond its pull fields: %+v", img)
	}
	auditBefore := len(mustAudit(t, s, r.String()))

	// A second batch (another replica's, say) adds; an older batch does
	// not move last_pulled back; a HEAD-only batch counts no pull.
	err = s.RecordPulls([]PullRecord{
		{Ref: r, Pulls: 2, Last: t0, Pullers: []Puller{{Addr: "10.0.0.29", UserAgent: "containerd/1.7", Last: t0, Pulls: 2}}},
		{Ref: r, Pulls: 0, Last: t0.Add(time.Hour), Pullers: []Puller{{Addr: "10.9.9.9", UserAgent: "kubelet", Last: t0.Add(time.Hour), Heads: 1}}},
	}, 20)
	if err != nil {
		t.Fatal(err)
	}
	img, list, err = s.Pulls(r)
	if err != nil {
		t.Fatal(err)
	}
	if img.PullCount != 32 || !img.LastPulled.Equal(t0.Add(time.Hour)) {
		t.Errorf("after the second batch: pull_count %d, last_pulled %s", img.PullCount, img.LastPulled)
	}
	if len(list) != 20 || list[0].Addr != "10.9.9.9" || list[0].Heads != 1 || list[0].Pulls != 0 {
		t.Errorf("the HEAD-only client is not first: %v", list[:2])
	}
	if list[1].Addr != "10.0.0.29" || list[1].Pulls != 3 {
		t.Errorf("the same client twice is not one entry with summed pulls: %v", list[1])
	}
	if n := len(mustAudit(t, s, r.String())); n != auditBefore {
		t.Errorf("pull records wrote %d audit entries", n-auditBefore)
	}

	// A smaller bound cuts the list at the next flush.
	if err := s.RecordPulls([]PullRecord{{Ref: r, Pulls: 1, Last: t0, Pullers: []Puller{{Addr: "10.0.0.1", UserAgent: "containerd/1.7", Last: t0, Pulls: 1}}}}, 3); err != nil {
		t.Fatal(err)
	}
	if _, list, _ = s.Pulls(r); len(list) != 3 {
		t.Errorf("keep 3: %d entries", len(list))
	}
}

func TestRecordPullsSkipsUnknownAndKeepsState(t *testing.T) {
	s, _ := openStore(t)
	known := ref("library/known", "k")
	setState(t, s, known, StateApproved)
	unknown := ref("library/unknown", "u")
	now := time.Now().UTC()
	if err := s.RecordPulls([]PullRecord{
		{Ref: unknown, Pulls: 1, Last: now, Pullers: []Puller{{Addr: "1.2.3.4", Last: now, Pulls: 1}}},
		{Ref: known, Pulls: 1, Last: now, Pullers: []Puller{{Addr: "1.2.3.4", Last: now, Pulls: 1}}},
	}, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("a pull record created a record: %v", err)
	}
	if _, _, err := s.Pulls(unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pulls of an unknown image: %v, want ErrNotFound", err)
	}
	// A revoke keeps the pulls: "who pulled the image we just revoked?".
	setState(t, s, known, StateRevoked)
	img, list, err := s.Pulls(known)
	if err != nil {
		t.Fatal(err)
	}
	if img.State != StateRevoked || img.PullCount != 1 || len(list) != 1 {
		t.Errorf("after revoke: state %s, pull_count %d, pullers %v", img.State, img.PullCount, list)
	}
	// Pull records never undo a transition: a flush after the revoke
	// keeps the image revoked.
	if err := s.RecordPulls([]PullRecord{{Ref: known, Pulls: 1, Last: now}}, 20); err != nil {
		t.Fatal(err)
	}
	if img := mustImage(t, s, known); img.State != StateRevoked || img.PullCount != 2 {
		t.Errorf("after a later flush: state %s, pull_count %d", img.State, img.PullCount)
	}
}

// TestRecordPullsReplicas flushes from two stores on the same location
// at once (two replicas on PostgreSQL; on bbolt the same store twice):
// every count arrives.
func TestRecordPullsReplicas(t *testing.T) {
	a, where := openStore(t)
	b := a
	if onPostgres() {
		var err error
		if b, err = reopen(t, where); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
	}
	r := ref("library/ha", "h")
	setState(t, a, r, StateApproved)
	const flushes = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*flushes)
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range flushes {
				now := time.Now()
				errs <- s.RecordPulls([]PullRecord{{Ref: r, Pulls: 3, Last: now, Pullers: []Puller{{Addr: fmt.Sprintf("replica-%d", i), UserAgent: "ua", Last: now, Pulls: 3}}}}, 20)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	img, list, err := a.Pulls(r)
	if err != nil {
		t.Fatal(err)
	}
	if img.PullCount != 2*flushes*3 {
		t.Errorf("pull_count %d, want %d", img.PullCount, 2*flushes*3)
	}
	if len(list) != 2 || list[0].Pulls+list[1].Pulls != 2*flushes*3 {
		t.Errorf("pullers %v", list)
	}
}
