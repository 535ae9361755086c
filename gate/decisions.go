package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// Request makes sure the pipeline runs for ref (once, however many clients
// ask) and returns the image record.
func (e *Engine) Request(ref state.Ref, actor string) (state.Image, error) {
	img, queued, err := e.store.Request(ref, actor)
	if err != nil {
		return img, fmt.Errorf("request %s: %w", ref, err)
	}
	if queued {
		e.Wake()
	}
	return img, nil
}

// Wait waits up to d for ref to leave the pipeline (approved, rejected,
// held, failed) and returns the record as it is then.
func (e *Engine) Wait(ctx context.Context, ref state.Ref, d time.Duration) (state.Image, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		changed := e.store.Changed()
		img, err := e.store.Image(ref)
		if err != nil || !img.State.InPipeline() {
			return img, err
		}
		select {
		case <-changed:
		case <-timer.C:
			return img, nil
		case <-ctx.Done():
			return img, nil
		}
	}
}

// ErrApprovalPending is returned (wrapped, with a message such as
// "approval 1 of 2 recorded (alice); pending a second approver") by
// Approve when the approval was recorded but gate.approvals_required asks
// for more approvers: the image is unchanged, and not served. It is an
// error so that no caller mistakes a recorded approval for an approved
// image.
var ErrApprovalPending = errors.New("approval pending")

// pendingError is ErrApprovalPending with what was recorded, in words.
type pendingError struct{ msg string }

func (p pendingError) Error() string { return p.msg }
func (p pendingError) Unwrap() error { return ErrApprovalPending }

// ApprovalsRequired is how many different approvers an admin approval
// needs (gate.approvals_required; at least 1).
func (e *Engine) ApprovalsRequired() int { return max(e.cfg.ApprovalsRequired, 1) }

// Approve approves ref by an admin's decision. The image's content must
// be complete: an image is never approved before it is fetched.
//
// With gate.approvals_required n > 1 ("four eyes" for 2), the approval
// takes effect only once n different identities of the admin API have
// approved (state.Store.Approve): until then each one is recorded on the
// image (audit action "approve", state unchanged, reason "approval k of
// n: ...") and Approve returns the record with an error wrapping
// ErrApprovalPending; the same identity approving again counts once and
// is refused (state.ErrSameApprover). The rule holds for every admin
// approval, from awaiting-approval, rejected, revoked and failed alike:
// each overrides or completes what the pipeline concluded. Pending
// approvals belong to the image's current state: a revoke, a rescan or
// the pipeline moving the image clears them, and each expires after
// state.ApprovalTTL (7 days), so a stale approval cannot be completed
// months later; revoking a token withdraws its pending approvals
// (state.Store.RevokeToken). The bootstrap admin is one identity like any other.
// Names count without their "oidc:" prefix and case (a token "alice" and
// the SSO login "oidc:alice" are one approver); otherwise an identity is a
// credential, not a person: two tokens of different names count twice. Four eyes stops an approver
// acting alone, not an admin, who issues the tokens (each names its
// creator, and the audit log every approver). A pending approval emits
// no event: the image's state did not change.
func (e *Engine) Approve(ref state.Ref, actor, reason string) (state.Image, error) {
	img, err := e.store.Image(ref)
	if errors.Is(err, state.ErrNotFound) {
		// A platform manifest approved on its own gets a record, held for
		// this decision, and from then on its record decides.
		img, err = e.store.Adopt(ref, state.Change{To: state.StateAwaitingApproval, Actor: actor, Action: "adopt", Reason: "approval asked for this platform manifest alone"})
	}
	if err != nil {
		return img, fmt.Errorf("approve %s: %w", ref, err)
	}
	if !img.Fetched() {
		return img, fmt.Errorf("approve %s (%s): %w", ref, img.State, ErrNotFetched)
	}
	if reason == "" {
		reason = "approved by an admin"
	}
	// Images still in the pipeline finish it first; an admin decides on
	// what the pipeline concluded.
	c := state.Change{
		From:   []state.State{state.StateAwaitingApproval, state.StateRejected, state.StateRevoked, state.StateFailed},
		To:     state.StateApproved,
		Actor:  actor,
		Action: "approve",
		Reason: reason,
	}
	var kind state.JobKind
	if len(e.stepsNamed("sign")) > 0 {
		// Approved images are signed first: the image is served once the
		// sign job has attached Airlock's signature.
		c.To, kind = state.StateSigning, state.JobSign
	}
	img, q, err := e.store.Approve(ref, e.ApprovalsRequired(), kind, c)
	if err != nil {
		return img, fmt.Errorf("approve %s: %w", ref, err)
	}
	if !q.Approved {
		msg := fmt.Sprintf("approval %d of %d recorded (%s); pending %s", q.Count, q.Required, strings.Join(q.Approvers, ", "), stillNeeded(q))
		e.log.Info("approval recorded", "image", ref.String(), "state", img.State, "actor", actor, "reason", reason, "approvals", q.Count, "required", q.Required)
		return img, pendingError{msg: msg}
	}
	if kind != "" {
		e.Wake()
	}
	e.log.Info("state change", "image", ref.String(), "state", img.State, "actor", actor, "reason", reason, "approvers", strings.Join(q.Approvers, ","))
	return img, nil
}

// stillNeeded says in words who else must approve: "a second approver",
// or "2 more approvers".
func stillNeeded(q state.Quorum) string {
	if q.Required-q.Count > 1 {
		return fmt.Sprintf("%d more approvers", q.Required-q.Count)
	}
	ordinals := []string{"", "first", "second", "third", "fourth", "fifth"}
	if q.Required < len(ordinals) {
		return "a " + ordinals[q.Required] + " approver"
	}
	return "one more approver"
}

// revocable lists the states an image can be revoked from.
var revocable = []state.State{
	state.StatePending, state.StateFetching, state.StateVerifying, state.StateScanning,
	state.StateSigning, state.StateAwaitingApproval, state.StateApproved, state.StateRejected, state.StateFailed,
}

// Revoke withdraws ref from service; the very next request is refused.
// A tag whose digest this was falls back to its last approved digest
// (tag_mode last-approved); RevokeTarget can refuse that instead.
func (e *Engine) Revoke(ref state.Ref, actor, reason string) (state.Image, error) {
	if reason == "" {
		reason = "revoked by an admin"
	}
	c := state.Change{From: revocable, To: state.StateRevoked, Actor: actor, Action: "revoke", Reason: reason}
	img, err := e.store.Transition(ref, c)
	if errors.Is(err, state.ErrNotFound) {
		// A platform manifest of an index has no record until an admin
		// decides on it alone.
		img, err = e.store.Adopt(ref, c)
	}
	if err != nil {
		return img, fmt.Errorf("revoke %s: %w", ref, err)
	}
	e.log.Info("state change", "image", ref.String(), "state", img.State, "actor", actor, "reason", reason)
	return img, nil
}

// RevokeTarget revokes what an admin named. By digest it is Revoke. By
// tag the revoked digest is the one the tag resolved to last, and unless
// allowFallback the tag is refused from then on until a digest newer than
// the revoked one is approved: the previous approved digest may carry the
// very vulnerability the admin revoked for, so the tag must not silently
// roll back to it. An image already revoked (by digest) can still be
// revoked by tag, to refuse its tag. The message says in words what the
// tag serves now.
func (e *Engine) RevokeTarget(t Target, allowFallback bool, actor, reason string) (state.Image, string, error) {
	if t.Tag == "" {
		img, err := e.Revoke(t.Ref, actor, reason)
		return img, "", err
	}
	if reason == "" {
		reason = "revoked by an admin"
	}
	from := revocable
	if !allowFallback {
		from = append(slices.Clone(revocable), state.StateRevoked)
	}
	img, tag, err := e.store.RevokeByTag(t.Ref, t.Tag, !allowFallback, state.Change{
		From: from, To: state.StateRevoked, Actor: actor, Action: "revoke", Reason: reason,
	})
	if err != nil {
		return img, "", fmt.Errorf("revoke %s (tag %s): %w", t.Ref, t.Tag, err)
	}
	var msg string
	if allowFallback {
		fallback, ok, err := e.TagServes(tag)
		switch {
		case err != nil:
			return img, "", fmt.Errorf("revoke %s (tag %s): %w", t.Ref, t.Tag, err)
		case ok:
			msg = fmt.Sprintf("tag %s now falls back to %s", t.Tag, fallback.Digest)
		default:
			msg = fmt.Sprintf("tag %s has no other approved digest to fall back to: it is refused until one is approved", t.Tag)
		}
	} else {
		msg = fmt.Sprintf("tag %s is refused until a digest newer than %s is approved", t.Tag, t.Digest)
	}
	e.log.Info("state change", "image", t.Ref.String(), "state", img.State, "actor", actor, "reason", reason, "tag", t.Tag, "tag_now", msg)
	return img, msg, nil
}

// TagServes returns the image a pull of tag t gets now, from the tag's
// last upstream resolution: its current digest if approved, otherwise
// (tag_mode last-approved) its last approved digest that no refusal holds
// back. false means the tag is refused.
func (e *Engine) TagServes(t state.Tag) (state.Image, bool, error) {
	if cur, ok := t.Current(); ok {
		img, err := e.store.Image(state.Ref{Upstream: t.Upstream, Repository: t.Repository, Digest: cur.Digest})
		switch {
		case err == nil && img.State == state.StateApproved:
			return img, true, nil
		case err != nil && !errors.Is(err, state.ErrNotFound):
			return img, false, fmt.Errorf("tag %s: %w", t.Name, err)
		}
	}
	if e.cfg.TagMode == config.TagModeStrict {
		return state.Image{}, false, nil
	}
	img, ok, err := e.store.LastApproved(t)
	if err != nil {
		return img, false, fmt.Errorf("tag %s: %w", t.Name, err)
	}
	return img, ok, nil
}

// Rescan re-runs the checks on ref. An approved image stays in service
// while it is re-checked and is revoked only if it now fails; any other
// image runs the whole pipeline again.
func (e *Engine) Rescan(ref state.Ref, actor, reason string) (state.Image, error) {
	img, err := e.store.Image(ref)
	if err != nil {
		return img, fmt.Errorf("rescan %s: %w", ref, err)
	}
	if reason == "" {
		reason = "rescan requested"
	}
	if img.State == state.StateApproved {
		if _, _, err := e.store.Enqueue(ref, state.JobRescan, actor); err != nil {
			return img, fmt.Errorf("rescan %s: %w", ref, err)
		}
		err = e.store.Record(state.Entry{Actor: actor, Image: ref.String(), From: img.State, To: img.State, Action: "rescan", Reason: reason})
	} else {
		img, err = e.store.Reset(ref, state.Change{Actor: actor, Action: "rescan", Reason: reason})
	}
	if err != nil {
		return img, fmt.Errorf("rescan %s: %w", ref, err)
	}
	e.Wake()
	return img, nil
}

// Target is an image an admin named, and the tag it was named by, if any.
type Target struct {
	state.Ref
	// Tag is set when the image was named "<upstream>/<repo>:<tag>".
	Tag string
}

// ParseImage turns "<upstream>/<repo>@<digest>" or "<upstream>/<repo>:<tag>"
// into a ref. A tag resolves to the digest it pointed to at its last
// upstream resolution, so an admin acts on exactly what clients were given.
func (e *Engine) ParseImage(s string) (state.Ref, error) {
	t, err := e.ParseTarget(s)
	return t.Ref, err
}

// ParseTarget is ParseImage that also says whether the admin named a tag.
func (e *Engine) ParseTarget(s string) (Target, error) {
	if strings.Contains(s, "@") {
		ref, err := state.ParseRef(s)
		return Target{Ref: ref}, err
	}
	slash := strings.LastIndex(s, "/")
	colon := strings.LastIndex(s, ":")
	up, _, _ := strings.Cut(s, "/")
	if colon <= slash || slash < 0 || colon <= len(up) {
		return Target{}, fmt.Errorf("image %q: want <upstream>/<repository>@<digest> or <upstream>/<repository>:<tag>", s)
	}
	repo, tag := s[len(up)+1:colon], s[colon+1:]
	t, err := e.store.Tag(up, repo, tag)
	if errors.Is(err, state.ErrNotFound) {
		return Target{}, fmt.Errorf("image %q: tag was never pulled through airlock: %w", s, state.ErrNotFound)
	}
	if err != nil {
		return Target{}, fmt.Errorf("image %q: %w", s, err)
	}
	cur, ok := t.Current()
	if !ok {
		return Target{}, fmt.Errorf("image %q: tag has no digest: %w", s, state.ErrNotFound)
	}
	return Target{Ref: state.Ref{Upstream: up, Repository: repo, Digest: digest.Digest(cur.Digest)}, Tag: tag}, nil
}
