package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// ApprovalTTL is how long a pending approval counts. An approval is a
// judgement of the image as the approver saw it: one left pending for
// months must not be completed by a second approver who never talked to
// the first, so after this it is dropped and the count starts over.
const ApprovalTTL = 7 * 24 * time.Hour

// Approval is one approver's approval of an image whose admin approval
// needs more than one approver (gate.approvals_required), pending until
// enough different approvers have approved.
type Approval struct {
	// Actor is the admin API identity that approved (a token's name, or
	// "admin" for the bootstrap token).
	Actor string `json:"actor"`
	// Reason is the approver's reason.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// ErrSameApprover is returned when an approver whose approval of an image
// is already pending approves it again: one identity counts once.
var ErrSameApprover = errors.New("a different approver must approve")

// samePerson reports whether two identities count as one approver. An
// identity is a credential; a person commonly holds an API token named
// after them and an SSO login ("oidc:alice"), and four eyes must not count
// those twice. So names are compared without a "scheme:" prefix (token
// names cannot contain ':') and case-insensitively. This may join two
// people who share a name, which only makes the rule stricter.
func samePerson(a, b string) bool {
	person := func(id string) string {
		if _, name, ok := strings.Cut(id, ":"); ok {
			return name
		}
		return id
	}
	return strings.EqualFold(person(a), person(b))
}

// Quorum is what one call of Store.Approve did.
type Quorum struct {
	// Approved is set when this approval was the last one needed: the
	// change was applied (the image is approved, or handed to signing).
	Approved bool
	// Count is how many different approvers' approvals count now, this
	// one included; Required is how many are needed.
	Count, Required int
	// Approvers are the identities counted, in the order they approved.
	Approvers []string
}

// PendingApprovals returns the image's pending approvals that have not
// expired (ApprovalTTL) at now.
func (i *Image) PendingApprovals(now time.Time) []Approval {
	var out []Approval
	for _, a := range i.Approvals {
		if now.Before(a.At.Add(ApprovalTTL)) {
			out = append(out, a)
		}
	}
	return out
}

// Approve records c.Actor's approval of ref, which needs required
// different approvers. The approval that completes the count applies c
// (an approve transition; with kind set, as Hand does: c.To and a job of
// that kind) and clears the pending approvals. An earlier one is recorded
// on the image record with an audit entry (c.Action, state unchanged,
// reason "approval k of n: ..."), and the image stays as it is.
//
// Everything happens in one write transaction, which on PostgreSQL every
// replica takes in turn: of two different approvers racing for the last
// approval exactly one completes it, and the same approver racing with
// itself is recorded once and refused (ErrSameApprover) otherwise, never
// counted twice. The image must be in one of c.From (ErrConflict), for a
// pending approval too. Approvals expire after ApprovalTTL, and any
// transition that sets the image's state clears them (transition), so an
// approval is only ever counted with others given to the image in the
// same state. With required 1 this is Transition (or Hand).
func (s *Store) Approve(ref Ref, required int, kind JobKind, c Change) (Image, Quorum, error) {
	var (
		img Image
		q   Quorum
	)
	required = max(required, 1)
	err := s.update(func(tx kv.Tx) error {
		now := s.now().UTC()
		q = Quorum{Required: required, Count: 1, Approvers: []string{c.Actor}}
		apply := func(c Change) error {
			var err error
			if kind != "" {
				img, err = hand(tx, ref, kind, c, now)
			} else {
				img, err = transition(tx, ref, c, now)
			}
			q.Approved = err == nil
			return err
		}
		if required == 1 {
			return apply(c)
		}
		images := tx.Bucket(bucketImages)
		key := []byte(ref.String())
		if err := getJSON(images, key, &img); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		if len(c.From) > 0 && !slices.Contains(c.From, img.State) {
			return fmt.Errorf("%s is %s, not %v: %w", ref, img.State, c.From, ErrConflict)
		}
		pending := img.PendingApprovals(now)
		q.Approvers = q.Approvers[:0]
		for k, a := range pending {
			if samePerson(a.Actor, c.Actor) {
				return fmt.Errorf("approval %d of %d by %s already recorded; %w", k+1, required, a.Actor, ErrSameApprover)
			}
			q.Approvers = append(q.Approvers, a.Actor)
		}
		q.Approvers = append(q.Approvers, c.Actor)
		q.Count = len(q.Approvers)
		if q.Count >= required {
			c.Reason = fmt.Sprintf("approval %d of %d (with %s): %s", q.Count, required, strings.Join(q.Approvers[:q.Count-1], ", "), c.Reason)
			return apply(c)
		}
		// Not enough yet: recorded, and nothing else changes. Updated
		// stays when the image entered its state (retention counts from
		// it) and no event is emitted: the state did not change.
		img.Approvals = append(pending, Approval{Actor: c.Actor, Reason: c.Reason, At: now})
		if err := putJSON(images, key, &img); err != nil {
			return err
		}
		return appendAudit(tx, Entry{
			Time: now, Actor: c.Actor, Image: ref.String(), From: img.State, To: img.State, Action: c.Action,
			Reason: fmt.Sprintf("approval %d of %d: %s", q.Count, required, c.Reason),
		})
	})
	return img, q, err
}

// withdrawApprovals removes every pending approval given by approver (a
// token being revoked) and returns how many images had one. A revoked
// token is a lost or stolen one, or its holder left: an approval it gave
// must not be completed by the next approver, who would trust it. Only
// records holding the approver's name are decoded.
func withdrawApprovals(tx kv.Tx, approver string) (int, error) {
	images := tx.Bucket(bucketImages)
	needle, err := json.Marshal(Approval{Actor: approver})
	if err != nil {
		return 0, fmt.Errorf("withdraw approvals of %s: %w", approver, err)
	}
	// `{"actor":"<name>"`: how the approval starts in a record.
	needle = needle[:bytes.IndexByte(needle, ',')]
	type change struct {
		key []byte
		img Image
	}
	var changed []change
	err = images.ForEach(func(k, v []byte) error {
		if !bytes.Contains(v, needle) {
			return nil
		}
		var img Image
		if err := json.Unmarshal(v, &img); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		n := len(img.Approvals)
		img.Approvals = slices.DeleteFunc(img.Approvals, func(a Approval) bool { return a.Actor == approver })
		if len(img.Approvals) != n {
			changed = append(changed, change{append([]byte(nil), k...), img})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("withdraw approvals of %s: %w", approver, err)
	}
	for _, c := range changed {
		if err := putJSON(images, c.key, &c.img); err != nil {
			return 0, fmt.Errorf("withdraw approvals of %s: %w", approver, err)
		}
	}
	return len(changed), nil
}
