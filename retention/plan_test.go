package retention

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestPlanKeepPerTagAndDryRun: keep_per_tag purges the older approved
// digests of a tag, never a pinned one or one pulled within the grace;
// a dry run lists the purges and the bytes without changing anything.
func TestPlanKeepPerTagAndDryRun(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Now().Add(2 * time.Hour))
	e := newEnv(t, clk.now)
	var order []image
	for i := range 5 {
		img := newImage("lib/app", string(rune('a'+i)), map[string]int{"u" + string(rune('a'+i)): 1000, "base": 4096})
		if _, err := e.st.RecordTag("docker.io", "lib/app", "latest", img.ref.Digest, ""); err != nil {
			t.Fatal(err)
		}
		if err := e.fetch(ctx, img); err != nil {
			t.Fatal(err)
		}
		order = append(order, img)
		clk.advance(time.Hour)
	}
	if _, err := e.st.SetPinned(order[0].ref, true, "admin:t", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.pull(order[1].ref); err != nil { // within the grace
		t.Fatal(err)
	}
	gc := New(e.st, e.cs, config.Retention{KeepPerTag: 2, GCGrace: time.Hour}, WithClock(clk.now))
	res, err := gc.Run(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Purges) != 1 || res.Purges[0].Image != order[2].ref.String() || res.Purges[0].Rule != RuleKeepPerTag {
		t.Fatalf("dry run purges = %+v", res.Purges)
	}
	// Its manifest, config and unique layer go; the shared base stays.
	wantBytes := int64(len(order[2].manifest)) + 1000
	for d, b := range order[2].blobs {
		if len(b) != 1000 && len(b) != 4096 {
			wantBytes += int64(len(b)) // the config
			_ = d
		}
	}
	if res.Purges[0].Bytes != wantBytes || res.BytesFreed != wantBytes || res.BlobsFreed != 3 {
		t.Fatalf("dry run frees %d (purge says %d), %d blobs; want %d, 3", res.BytesFreed, res.Purges[0].Bytes, res.BlobsFreed, wantBytes)
	}
	if rec, _ := e.st.Image(order[2].ref); rec.State != state.StateApproved {
		t.Fatalf("dry run changed the state: %s", rec.State)
	}
	res, err = gc.Run(ctx, false)
	if err != nil || len(res.Purges) != 1 || res.BytesFreed != wantBytes {
		t.Fatalf("run = %+v, %v", res, err)
	}
	if _, err := e.cs.Stat(ctx, order[2].ref.Digest); err == nil {
		t.Fatal("purged manifest still stored")
	}
	base := digest.FromBytes(layer("base", 4096))
	if _, err := e.cs.Stat(ctx, base); err != nil {
		t.Fatalf("shared base layer deleted: %v", err)
	}
	all := map[state.Ref]image{}
	for _, img := range order {
		all[img.ref] = img
	}
	e.checkKept(ctx, all)
}

// TestDeniedAfterCountsFromTheStateNotThePin: denied_after counts from
// when the image was revoked; pinning and unpinning it (an audited update
// of its record) does not restart that clock.
func TestDeniedAfterCountsFromTheStateNotThePin(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Now())
	e := newEnv(t, clk.now)
	img := newImage("lib/denied", "a", map[string]int{"own": 1000})
	if err := e.fetch(ctx, img); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Transition(img.ref, state.Change{To: state.StateRevoked, Actor: "admin:t", Action: "revoke", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	gc := New(e.st, e.cs, config.Retention{DeniedAfter: 24 * time.Hour, GCGrace: time.Hour}, WithClock(clk.now))
	clk.advance(23 * time.Hour)
	if _, err := e.st.SetPinned(img.ref, true, "admin:t", ""); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Hour) // revoked for 25h, pinned
	if res, err := gc.Run(ctx, false); err != nil || len(res.Purges) != 0 {
		t.Fatalf("run with the image pinned = %+v, %v", res.Purges, err)
	}
	if _, err := e.st.SetPinned(img.ref, false, "admin:t", ""); err != nil {
		t.Fatal(err)
	}
	res, err := gc.Run(ctx, false)
	if err != nil || len(res.Purges) != 1 || res.Purges[0].Rule != RuleDenied {
		t.Fatalf("run after unpin = %+v, %v; want the image purged (revoked for 25h)", res.Purges, err)
	}
	if rec, _ := e.st.Image(img.ref); rec.State != state.StatePurged {
		t.Fatalf("state %s, want purged", rec.State)
	}
}
