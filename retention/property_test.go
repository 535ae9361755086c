package retention

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestGCProperty interleaves, on the real clock, random fetches (which
// reuse shared blobs), pulls that read whole blobs, approvals, revokes,
// purges, GC runs with a tiny grace period, and GC runs killed mid-sweep.
// It checks that no kept image ever loses a byte, that a read that opened
// a blob always gets all of it, and that once quiet, after one more run,
// no orphan is left.
func TestGCProperty(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { gcProperty(t, seed) })
	}
}

func gcProperty(t *testing.T, seed uint64) {
	ctx := context.Background()
	e := newEnv(t, nil)
	rules := config.Retention{GCGrace: 30 * time.Millisecond}
	gc := New(e.st, e.cs, rules)

	var imgs []image
	all := map[state.Ref]image{}
	for i := range 40 {
		img := newImage(fmt.Sprintf("r%d", i%5), fmt.Sprint(seed, "-", i), map[string]int{
			fmt.Sprint("u", seed, i):      500 + i,
			fmt.Sprint("shared", i%3):     4096,
			fmt.Sprint("shared-b", i%7):   2048,
			fmt.Sprint("ownshared", i%11): 1024,
		})
		imgs = append(imgs, img)
		all[img.ref] = img
	}

	var (
		wg       sync.WaitGroup
		failures = make(chan error, 100)
		deadline = time.Now().Add(3 * time.Second)
	)
	fail := func(err error) {
		select {
		case failures <- err:
		default:
		}
	}
	worker := func(id uint64, fn func(r *rand.Rand) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, id))
			for time.Now().Before(deadline) {
				if err := fn(r); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	// Fetchers: a new or purged image (re)fetched and approved.
	for w := range 3 {
		worker(uint64(w), func(r *rand.Rand) error {
			img := imgs[r.IntN(len(imgs))]
			rec, err := e.st.Image(img.ref)
			if err == nil && rec.State != state.StatePurged {
				return nil
			}
			if err := e.fetch(ctx, img); err != nil && !errors.Is(err, state.ErrConflict) {
				return fmt.Errorf("fetch %s: %w", img.ref, err)
			}
			return nil
		})
	}
	// Pullers: an approved image's blobs read whole; a blob that could be
	// opened must read complete and correct.
	for w := range 3 {
		worker(10+uint64(w), func(r *rand.Rand) error {
			img := imgs[r.IntN(len(imgs))]
			dec, err := e.st.ManifestDecision(img.ref.Upstream, img.ref.Repository, img.ref.Digest)
			if err != nil || !dec.Serve {
				return err
			}
			for d := range img.blobs {
				rd, size, err := e.cs.Open(ctx, d)
				if errors.Is(err, content.ErrNotFound) {
					// Purged and swept since the decision: refused, not partial.
					continue
				}
				if err != nil {
					return err
				}
				b := make([]byte, size)
				n, _ := readFull(rd, b)
				rd.Close()
				if int64(n) != size || digest.FromBytes(b) != d {
					return fmt.Errorf("partial read of %s: %d of %d bytes", d, n, size)
				}
			}
			return nil
		})
	}
	// Admins and retention: revoke, approve again, purge.
	worker(20, func(r *rand.Rand) error {
		img := imgs[r.IntN(len(imgs))]
		rec, err := e.st.Image(img.ref)
		if err != nil {
			return nil
		}
		switch r.IntN(3) {
		case 0:
			_, err = e.st.Transition(img.ref, state.Change{From: []state.State{state.StateApproved}, To: state.StateRevoked, Actor: "admin", Action: "revoke"})
		case 1:
			_, err = e.st.Transition(img.ref, state.Change{From: []state.State{state.StateRevoked}, To: state.StateApproved, Actor: "admin", Action: "approve"})
		case 2:
			_, err = e.st.Purge(img.ref, state.PurgeCheck{From: []state.State{state.StateApproved, state.StateRevoked}, LastPulled: rec.LastPulled}, state.ActorRetention, "test")
		}
		if err != nil && !errors.Is(err, state.ErrConflict) && !errors.Is(err, state.ErrRetained) {
			return err
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	// Collectors: full runs, and runs killed after a few deletions.
	worker(30, func(r *rand.Rand) error {
		c := gc
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if r.IntN(3) == 0 {
			killed := New(e.st, e.cs, rules)
			left := r.IntN(3)
			killed.beforeDelete = func(digest.Digest) {
				if left--; left < 0 {
					cancel() // the process dies here: nothing more is deleted
				}
			}
			c = killed
		}
		if _, err := c.Run(cctx, false); err != nil && !errors.Is(err, ErrBusy) && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("gc: %w", err)
		}
		e.checkKeptErr(ctx, all, fail)
		time.Sleep(5 * time.Millisecond)
		return nil
	})
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Fatal(err)
	}
	// Quiet: every kept image whole; one more run leaves no orphan.
	e.checkKept(ctx, all)
	time.Sleep(2 * rules.GCGrace)
	if _, err := gc.Run(ctx, false); err != nil {
		t.Fatal(err)
	}
	e.checkKept(ctx, all)
	stored, _ := storeBytes(t, e.cs)
	snap, err := e.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g, err := buildGraph(ctx, snap, contentReports(e.cs))
	if err != nil {
		t.Fatal(err)
	}
	rc := g.refcounts()
	for d := range stored {
		if rc[d] == 0 {
			t.Errorf("orphan left after a quiet run: %s", d)
		}
	}
}

func readFull(r interface{ Read([]byte) (int, error) }, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// checkKeptErr is checkKept for a goroutine: it reports instead of failing.
func (e *env) checkKeptErr(ctx context.Context, imgs map[state.Ref]image, fail func(error)) {
	for ref, img := range imgs {
		rec, err := e.st.Image(ref)
		if err != nil || rec.State == state.StatePurged || rec.State.InPipeline() {
			continue
		}
		for d := range img.blobs {
			if _, err := readAll(ctx, e.cs, d); err != nil {
				// Re-read the record: it may have been purged meanwhile.
				if rec2, err2 := e.st.Image(ref); err2 == nil && rec2.State != state.StatePurged && !rec2.State.InPipeline() {
					fail(fmt.Errorf("%s (%s) lost %s: %v", ref, rec2.State, d, err))
				}
			}
		}
	}
}
