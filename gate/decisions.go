package gate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

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

// Approve approves ref by an admin's decision. The image's content must
// be complete: an image is never approved before it is fetched.
func (e *Engine) Approve(ref state.Ref, actor, reason string) (state.Image, error) {
	img, err := e.store.Image(ref)
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
	from := []state.State{state.StateAwaitingApproval, state.StateRejected, state.StateRevoked, state.StateFailed}
	if len(e.stepsNamed("sign")) > 0 {
		// Approved images are signed first: the image is served once the
		// sign job has attached Airlock's signature.
		img, err = e.store.Hand(ref, state.JobSign, state.Change{From: from, To: state.StateSigning, Actor: actor, Action: "approve", Reason: reason})
		if err != nil {
			return img, fmt.Errorf("approve %s: %w", ref, err)
		}
		e.Wake()
		e.log.Info("state change", "image", ref.String(), "state", img.State, "actor", actor, "reason", reason)
		return img, nil
	}
	img, err = e.store.Transition(ref, state.Change{
		From: from, To: state.StateApproved, Actor: actor, Action: "approve", Reason: reason,
	})
	if err != nil {
		return img, fmt.Errorf("approve %s: %w", ref, err)
	}
	e.log.Info("state change", "image", ref.String(), "state", img.State, "actor", actor, "reason", reason)
	return img, nil
}

// Revoke withdraws ref from service; the very next request is refused.
func (e *Engine) Revoke(ref state.Ref, actor, reason string) (state.Image, error) {
	if reason == "" {
		reason = "revoked by an admin"
	}
	img, err := e.store.Transition(ref, state.Change{
		From: []state.State{
			state.StatePending, state.StateFetching, state.StateVerifying, state.StateScanning,
			state.StateSigning, state.StateAwaitingApproval, state.StateApproved, state.StateRejected, state.StateFailed,
		},
		To: state.StateRevoked, Actor: actor, Action: "revoke", Reason: reason,
	})
	if err != nil {
		return img, fmt.Errorf("revoke %s: %w", ref, err)
	}
	e.log.Info("state change", "image", ref.String(), "state", img.State, "actor", actor, "reason", reason)
	return img, nil
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

// ParseImage turns "<upstream>/<repo>@<digest>" or "<upstream>/<repo>:<tag>"
// into a ref. A tag resolves to the digest it pointed to at its last
// upstream resolution, so an admin acts on exactly what clients were given.
func (e *Engine) ParseImage(s string) (state.Ref, error) {
	if strings.Contains(s, "@") {
		return state.ParseRef(s)
	}
	slash := strings.LastIndex(s, "/")
	colon := strings.LastIndex(s, ":")
	up, _, _ := strings.Cut(s, "/")
	if colon <= slash || slash < 0 || colon <= len(up) {
		return state.Ref{}, fmt.Errorf("image %q: want <upstream>/<repository>@<digest> or <upstream>/<repository>:<tag>", s)
	}
	repo, tag := s[len(up)+1:colon], s[colon+1:]
	t, err := e.store.Tag(up, repo, tag)
	if errors.Is(err, state.ErrNotFound) {
		return state.Ref{}, fmt.Errorf("image %q: tag was never pulled through airlock: %w", s, state.ErrNotFound)
	}
	if err != nil {
		return state.Ref{}, err
	}
	cur, ok := t.Current()
	if !ok {
		return state.Ref{}, fmt.Errorf("image %q: tag has no digest: %w", s, state.ErrNotFound)
	}
	return state.Ref{Upstream: up, Repository: repo, Digest: digest.Digest(cur.Digest)}, nil
}
