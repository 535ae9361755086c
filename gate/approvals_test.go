package gate_test

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
)

// approvalStep is one admin action of an approval scenario and what it
// must do: "approved" (the image is approved, or signing on its way to
// it), "pending" (recorded, ErrApprovalPending), "same" (refused:
// state.ErrSameApprover); revoke and rescan expect nothing.
type approvalStep struct {
	do, actor, want string
	// msg, if set, is the pending answer's message or the refusal's tail.
	msg string
}

func TestFourEyesEngine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		required int
		signing  bool
		steps    []approvalStep
		// actors are the audit actors of the approve entries, in order.
		actors []string
	}{
		{"one approver", 1, false, []approvalStep{
			{do: "approve", actor: "alice", want: "approved"},
		}, []string{"alice"}},
		{"same approver twice", 2, false, []approvalStep{
			{do: "approve", actor: "alice", want: "pending", msg: "approval 1 of 2 recorded (alice); pending a second approver"},
			{do: "approve", actor: "alice", want: "same", msg: "approval 1 of 2 by alice already recorded; a different approver must approve"},
		}, []string{"alice"}},
		{"two approvers", 2, false, []approvalStep{
			{do: "approve", actor: "alice", want: "pending"},
			{do: "approve", actor: "bob", want: "approved"},
		}, []string{"alice", "bob"}},
		{"bootstrap admin and another", 2, false, []approvalStep{
			{do: "approve", actor: "admin", want: "pending"},
			{do: "approve", actor: "admin", want: "same"},
			{do: "approve", actor: "alice", want: "approved"},
		}, []string{"admin", "alice"}},
		{"three approvers", 3, false, []approvalStep{
			{do: "approve", actor: "alice", want: "pending", msg: "approval 1 of 3 recorded (alice); pending 2 more approvers"},
			{do: "approve", actor: "bob", want: "pending", msg: "approval 2 of 3 recorded (alice, bob); pending a third approver"},
			{do: "approve", actor: "carol", want: "approved"},
		}, []string{"alice", "bob", "carol"}},
		{"approval then revoke clears it", 2, false, []approvalStep{
			{do: "approve", actor: "alice", want: "pending"},
			{do: "revoke", actor: "carol"},
			{do: "approve", actor: "bob", want: "pending", msg: "approval 1 of 2 recorded (bob); pending a second approver"},
			{do: "approve", actor: "alice", want: "approved"},
		}, []string{"alice", "bob", "alice"}},
		{"approval then rescan clears it", 2, false, []approvalStep{
			{do: "approve", actor: "alice", want: "pending"},
			{do: "rescan", actor: "carol"},
			{do: "approve", actor: "bob", want: "pending", msg: "approval 1 of 2 recorded (bob); pending a second approver"},
			{do: "approve", actor: "alice", want: "approved"},
		}, []string{"alice", "bob", "alice"}},
		{"signing after the second approver", 2, true, []approvalStep{
			{do: "approve", actor: "alice", want: "pending"},
			{do: "approve", actor: "bob", want: "approved"},
			// Bob's approval hands the image to signing; the sign job
			// approves it in his name once signed.
		}, []string{"alice", "bob", "bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := registrytest.NewUpstream(t)
			d := up.PushImage(t, "team/app:1", registrytest.Image(t, 1, 512, types.DockerManifestSchema2))
			edit := func(c *config.Config) { c.Gate.ApprovalsRequired = tc.required }
			var p *pipeline
			if tc.signing {
				priv, _, err := sign.GenerateKeyPair([]byte("pw"))
				if err != nil {
					t.Fatal(err)
				}
				signer, err := sign.LoadSigner(priv, []byte("pw"))
				if err != nil {
					t.Fatal(err)
				}
				p = buildSigningPipeline(t, up, t.TempDir(), signer, edit)
			} else {
				p = newPipeline(t, up, t.TempDir(), nil, edit)
			}
			if got := p.engine.ApprovalsRequired(); got != tc.required {
				t.Fatalf("ApprovalsRequired = %d, want %d", got, tc.required)
			}
			ref := state.Ref{Upstream: "docker.io", Repository: "team/app", Digest: digest.Digest(d.String())}
			if _, err := p.engine.Request(ref, "test"); err != nil {
				t.Fatal(err)
			}
			awaiting := func(i state.Image) bool { return i.State == state.StateAwaitingApproval }
			waitFor(t, p.store, ref, awaiting)
			for i, s := range tc.steps {
				before, _ := p.store.Image(ref)
				var (
					img state.Image
					err error
				)
				switch s.do {
				case "revoke":
					if _, err := p.engine.Revoke(ref, s.actor, "no"); err != nil {
						t.Fatal(err)
					}
					continue
				case "rescan":
					if _, err := p.engine.Rescan(ref, s.actor, "again"); err != nil {
						t.Fatal(err)
					}
					waitFor(t, p.store, ref, awaiting)
					continue
				}
				img, err = p.engine.Approve(ref, s.actor, "looked at it")
				switch s.want {
				case "approved":
					if err != nil {
						t.Fatalf("step %d (%s by %s): %v", i, s.do, s.actor, err)
					}
					img = waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateApproved })
					if img.ApprovedBy != s.actor || len(img.Approvals) != 0 || (tc.signing && img.Signed == nil) {
						t.Fatalf("step %d: approved by %q, approvals %+v, signed %v", i, img.ApprovedBy, img.Approvals, img.Signed != nil)
					}
				case "pending":
					if !errors.Is(err, gate.ErrApprovalPending) {
						t.Fatalf("step %d (%s by %s): %v, want ErrApprovalPending", i, s.do, s.actor, err)
					}
					if s.msg != "" && err.Error() != s.msg {
						t.Errorf("step %d: message %q, want %q", i, err.Error(), s.msg)
					}
					if img.State != before.State || len(img.Approvals) == 0 || img.Approvals[len(img.Approvals)-1].Actor != s.actor {
						t.Fatalf("step %d: pending approval left %s with approvals %+v (was %s)", i, img.State, img.Approvals, before.State)
					}
					if _, err := p.store.Job(ref); !errors.Is(err, state.ErrNotFound) {
						t.Fatalf("step %d: a pending approval queued work: %v", i, err)
					}
				case "same":
					if !errors.Is(err, state.ErrSameApprover) || (s.msg != "" && !strings.HasSuffix(err.Error(), s.msg)) {
						t.Fatalf("step %d (%s by %s): %v, want ErrSameApprover", i, s.do, s.actor, err)
					}
				}
				if s.want != "approved" {
					// Not approved: a pull is still refused.
					if now, _ := p.store.Image(ref); now.State == state.StateApproved || now.State == state.StateSigning {
						t.Fatalf("step %d: %s", i, now.State)
					}
				}
			}
			entries, err := p.store.Audit(ref.String(), 0)
			if err != nil {
				t.Fatal(err)
			}
			var actors []string
			for k := len(entries) - 1; k >= 0; k-- {
				if entries[k].Action == "approve" && entries[k].Actor != gate.ActorPipeline {
					actors = append(actors, entries[k].Actor)
				}
			}
			if strings.Join(actors, ",") != strings.Join(tc.actors, ",") {
				t.Errorf("approve entries by %v, want %v", actors, tc.actors)
			}
		})
	}
}

// TestApprovalExpiry: a pending approval older than state.ApprovalTTL no
// longer counts, so a second approver cannot complete a stale one.
func TestApprovalExpiry(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	store, err := state.Open(filepath.Join(t.TempDir(), "airlock.db"), state.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := config.Default().Gate
	cfg.ApprovalsRequired = 2
	engine := gate.New(store, cfg, nil)
	ref := state.Ref{Upstream: "docker.io", Repository: "team/app", Digest: digest.FromString("expiry")}
	if _, _, err := store.Request(ref, "test"); err != nil {
		t.Fatal(err)
	}
	_, err = store.Transition(ref, state.Change{To: state.StateRejected, Actor: gate.ActorPipeline, Action: "step:policy", Reason: "critical CVE",
		Mutate: func(i *state.Image) error {
			i.MediaType, i.Size, i.ContentSize = string(types.OCIManifestSchema1), 100, 1000
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Approve(ref, "alice", "accepted risk"); !errors.Is(err, gate.ErrApprovalPending) {
		t.Fatalf("alice: %v", err)
	}
	clock.Add(int64(state.ApprovalTTL))
	img, err := engine.Approve(ref, "bob", "accepted risk")
	if !errors.Is(err, gate.ErrApprovalPending) || err.Error() != "approval 1 of 2 recorded (bob); pending a second approver" {
		t.Fatalf("bob a week later: %v", err)
	}
	if img.State != state.StateRejected || len(img.Approvals) != 1 || img.Approvals[0].Actor != "bob" {
		t.Fatalf("after bob: %s, approvals %+v", img.State, img.Approvals)
	}
	if _, err := engine.Approve(ref, "alice", "still accepted"); err != nil {
		t.Fatalf("alice again, after bob: %v", err)
	}
	if img, _ := store.Image(ref); img.State != state.StateApproved {
		t.Fatalf("after alice and bob: %s", img.State)
	}
}
