package retention

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestRetentionSimulatedQuarter runs 90 days of pulls over 200 images on a
// small quota with a simulated clock and a daily GC: the store stays under
// the quota, pinned and recently pulled images keep every byte, revoked
// images go after denied_after, and purged images come back through the
// pipeline when pulled.
func TestRetentionSimulatedQuarter(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Now().Add(2 * time.Hour)) // blobs written now are past the grace
	e := newEnv(t, clk.now)
	const (
		nImages = 200
		quota   = 120 << 10
	)
	rules := config.Retention{UnpulledAfter: 30 * 24 * time.Hour, DeniedAfter: 10 * 24 * time.Hour, KeepPerTag: 3, MaxBytes: quota, GCGrace: time.Hour}
	gc := New(e.st, e.cs, rules, WithClock(clk.now))

	imgs := map[state.Ref]image{}
	order := make([]image, nImages)
	for i := range order {
		repo := fmt.Sprintf("team%d/app", i%40)
		order[i] = newImage(repo, fmt.Sprintf("img%d", i), map[string]int{
			fmt.Sprintf("unique%d", i): 1000 + 15*i,
			fmt.Sprintf("base%d", i%4): 8 << 10,
		})
		imgs[order[i].ref] = order[i]
	}
	hot := func(i int) bool { return i < 10 }
	pinned := func(i int) bool { return i >= 10 && i < 15 }
	revoked := func(i int) bool { return i == 20 || i == 21 }
	arrival := func(i int) int { return i * 60 / nImages }

	purgedBy := map[string]int{}
	for day := 0; day < 90; day++ {
		for i, img := range order {
			if arrival(i) != day {
				continue
			}
			if _, err := e.st.RecordTag(img.ref.Upstream, img.ref.Repository, "latest", img.ref.Digest, "application/vnd.oci.image.manifest.v1+json"); err != nil {
				t.Fatal(err)
			}
			if err := e.fetch(ctx, img); err != nil {
				t.Fatalf("day %d: fetch %d: %v", day, i, err)
			}
			if pinned(i) {
				if _, err := e.st.SetPinned(img.ref, true, "admin:test", ""); err != nil {
					t.Fatal(err)
				}
			}
			if revoked(i) {
				if _, err := e.st.Transition(img.ref, state.Change{To: state.StateRevoked, Actor: "admin:test", Action: "revoke", Reason: "test"}); err != nil {
					t.Fatal(err)
				}
			} else if !pinned(i) {
				if err := e.pull(img.ref); err != nil { // its first client
					t.Fatal(err)
				}
			}
		}
		for i, img := range order {
			if hot(i) && arrival(i) <= day {
				if err := e.pull(img.ref); err != nil {
					t.Fatal(err)
				}
			}
		}
		clk.advance(12 * time.Hour)
		res, err := gc.Run(ctx, false)
		if err != nil {
			t.Fatalf("day %d: gc: %v", day, err)
		}
		for _, p := range res.Purges {
			purgedBy[p.Rule]++
		}
		if len(res.Notes) > 0 {
			t.Fatalf("day %d: %v", day, res.Notes)
		}
		_, total := storeBytes(t, e.cs)
		if total > quota || res.ContentBytes != total {
			t.Fatalf("day %d: content store holds %d bytes (result says %d), quota %d", day, total, res.ContentBytes, quota)
		}
		e.checkKept(ctx, imgs)
		for i, img := range order {
			if arrival(i) > day || !(hot(i) || pinned(i)) {
				continue
			}
			rec, err := e.st.Image(img.ref)
			if err != nil || rec.State != state.StateApproved {
				t.Fatalf("day %d: hot or pinned image %d is %s (%s), %v", day, i, rec.State, rec.Reason, err)
			}
		}
		clk.advance(12 * time.Hour)
	}
	for _, rule := range []string{RuleUnpulled, RuleMaxBytes, RuleDenied} {
		if purgedBy[rule] == 0 {
			t.Errorf("no purge by %s in 90 days: %v", rule, purgedBy)
		}
	}
	t.Logf("purges by rule: %v", purgedBy)
	for _, i := range []int{20, 21} {
		if rec, _ := e.st.Image(order[i].ref); rec.State != state.StatePurged {
			t.Errorf("revoked image %d is %s after 90 days", i, rec.State)
		}
	}

	// Purged images come back through the pipeline when pulled.
	back := 0
	for i, img := range order {
		rec, err := e.st.Image(img.ref)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != state.StatePurged || back == 3 {
			continue
		}
		audit, err := e.st.Audit(img.ref.String(), 1)
		if err != nil || audit[0].Action != "purge" || audit[0].Actor != state.ActorRetention {
			t.Fatalf("image %d: last audit %+v, %v", i, audit, err)
		}
		got, queued, err := e.st.Request(img.ref, "pull")
		if err != nil || !queued || got.State != state.StatePending {
			t.Fatalf("pull of purged image %d: %s queued %v, %v", i, got.State, queued, err)
		}
		if err := e.fetch(ctx, img); err != nil {
			t.Fatal(err)
		}
		if rec, _ := e.st.Image(img.ref); rec.State != state.StateApproved {
			t.Fatalf("re-fetched image %d is %s", i, rec.State)
		}
		back++
	}
	if back == 0 {
		t.Fatal("nothing was purged")
	}
	e.checkKept(ctx, imgs)
}
