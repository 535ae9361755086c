package state

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// approvedNoJob makes r approved with no queued job.
func approvedNoJob(t *testing.T, s *Store, r Ref) Image {
	t.Helper()
	if _, _, err := s.Request(r, "pull"); err != nil {
		t.Fatal(err)
	}
	job, err := s.Job(r)
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.FinishJob(job, &Change{To: StateApproved, Actor: "test", Action: "set", Mutate: func(i *Image) error {
		i.MediaType, i.Size, i.ContentSize = "application/vnd.oci.image.manifest.v1+json", 10, 20
		i.Blobs = []digest.Digest{dgst("layer of " + string(r.Digest))}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPurgeKeepsRecordAndRequeues(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/alpine", "purge")
	before := approvedNoJob(t, s, r)
	img, err := s.Purge(r, PurgeCheck{From: []State{StateApproved}}, ActorRetention, "retention: not pulled for 90d")
	if err != nil {
		t.Fatal(err)
	}
	if img.State != StatePurged || img.Reason != "retention: not pulled for 90d" || !slices.Equal(img.Blobs, before.Blobs) {
		t.Fatalf("purged record = %+v", img)
	}
	audit := mustAudit(t, s, r.String())
	if audit[0].Action != "purge" || audit[0].Actor != ActorRetention || audit[0].To != StatePurged || audit[0].From != StateApproved {
		t.Fatalf("purge audit = %+v", audit[0])
	}
	// Never served: neither the manifest nor its layer.
	if dec, err := s.ManifestDecision(r.Upstream, r.Repository, r.Digest); err != nil || dec.Serve {
		t.Fatalf("purged manifest decision = %+v, %v", dec, err)
	}
	// Purging again is a conflict.
	if _, err := s.Purge(r, PurgeCheck{From: []State{StateApproved}}, ActorRetention, "again"); !errors.Is(err, ErrConflict) {
		t.Fatalf("second purge: %v", err)
	}
	// A pull queues the whole pipeline again.
	img, queued, err := s.Request(r, "pull")
	if err != nil || !queued || img.State != StatePending {
		t.Fatalf("Request of purged = %s, queued %v, %v", img.State, queued, err)
	}
	job, err := s.Job(r)
	if err != nil || job.Kind != JobPull {
		t.Fatalf("job after re-request = %+v, %v", job, err)
	}
	audit = mustAudit(t, s, r.String())
	if audit[0].From != StatePurged || audit[0].To != StatePending || audit[0].Action != "request" {
		t.Fatalf("re-request audit = %+v", audit[0])
	}
	// A second pull while queued adds nothing.
	if _, queued, err := s.Request(r, "pull"); err != nil || queued {
		t.Fatalf("second request: queued %v, %v", queued, err)
	}
}

func TestPurgeRespectsPinPullAndJob(t *testing.T) {
	c := newClock()
	s, _ := openStore(t, WithClock(c.now))
	pinned, pulled, queued := ref("a", "pinned"), ref("a", "pulled"), ref("a", "queued")
	for _, r := range []Ref{pinned, pulled} {
		approvedNoJob(t, s, r)
	}
	if _, err := s.SetPinned(pinned, true, "admin:x", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPinned(pinned, true, "admin:x", ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("pin twice: %v", err)
	}
	if a := mustAudit(t, s, pinned.String()); a[0].Action != "pin" || a[0].Actor != "admin:x" {
		t.Fatalf("pin audit = %+v", a[0])
	}
	if _, err := s.Purge(pinned, PurgeCheck{From: []State{StateApproved}}, ActorRetention, "x"); !errors.Is(err, ErrRetained) {
		t.Fatalf("purge of pinned: %v", err)
	}
	if _, err := s.Transition(pulled, Change{Actor: "pull", Action: "pulled", Mutate: func(i *Image) error {
		i.LastPulled = c.now()
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(pulled, PurgeCheck{From: []State{StateApproved}, LastPulled: c.now().Add(-time.Hour)}, ActorRetention, "x"); !errors.Is(err, ErrRetained) {
		t.Fatalf("purge of image pulled since the plan: %v", err)
	}
	if _, _, err := s.Request(queued, "pull"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(queued, PurgeCheck{}, ActorRetention, "x"); !errors.Is(err, ErrRetained) {
		t.Fatalf("purge of queued image: %v", err)
	}
	if _, err := s.SetPinned(pinned, false, "admin:x", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(pinned, PurgeCheck{From: []State{StateApproved}}, ActorRetention, "x"); err != nil {
		t.Fatalf("purge after unpin: %v", err)
	}
}

func TestSnapshotDecodesLinks(t *testing.T) {
	s, _ := openStore(t)
	r := ref("library/alpine", "idx")
	child, layer := dgst("child"), dgst("layer")
	if err := s.AddLinks(r, []Link{
		{Digest: child, Role: RoleChild, Parent: r.Digest, Image: r.Digest, Size: 5},
		{Digest: layer, Role: RoleLayer, Parent: child, Image: r.Digest, Size: 7},
	}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Links) != 2 {
		t.Fatalf("links = %+v", snap.Links)
	}
	for _, l := range snap.Links {
		if l.Repo != "docker.io/library/alpine" || l.Image != r.Digest {
			t.Errorf("link = %+v", l)
		}
		switch l.Digest {
		case child:
			if l.Role != RoleChild || l.Parent != r.Digest || l.Size != 5 {
				t.Errorf("child link = %+v", l)
			}
		case layer:
			if l.Role != RoleLayer || l.Parent != child || l.Size != 7 {
				t.Errorf("layer link = %+v", l)
			}
		default:
			t.Errorf("unexpected link %+v", l)
		}
	}
}

func TestWaitSweep(t *testing.T) {
	s, _ := openStore(t, WithLease(time.Second))
	if err := s.WaitSweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if held, _, err := s.TryLease(SweepLease); err != nil || !held {
		t.Fatal(held, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitSweep(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("WaitSweep returned while the sweep lease is held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := s.ReleaseLease(SweepLease); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitSweep did not return after release")
	}
	// An expired lease (a collector killed mid-sweep) holds nobody up.
	if held, _, err := s.TryLease(SweepLease); err != nil || !held {
		t.Fatal(held, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitSweep(ctx); err != nil {
		t.Fatalf("WaitSweep with an expiring lease: %v", err)
	}
}
