package state

import (
	"fmt"
	"slices"

	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/opencontainers/go-digest"
)

// maxRefused bounds the digests a tag's refusal remembers; the tag history
// itself holds at most maxTagHistory, and refusals only merge.
const maxRefused = 2 * maxTagHistory

// RevokeByTag applies c (an admin's revoke of ref) and, when refuse is
// set, records on tag a refusal through ref's digest, in one transaction:
// the tag then no longer falls back to ref or to any digest its history
// held before ref, unless one of them is approved again after now; a
// digest the tag moves to later serves it once approved. ref must be in
// the tag's history (ErrConflict otherwise: the tag moved meanwhile).
// With refuse unset it is a plain revoke, and the tag falls back to its
// last approved digest as before. A refusal is also written to the audit
// log as its own "refuse-tag" entry.
func (s *Store) RevokeByTag(ref Ref, tag string, refuse bool, c Change) (Image, Tag, error) {
	var (
		img Image
		t   Tag
	)
	err := s.update(func(tx kv.Tx) error {
		now := s.now().UTC()
		b := tx.Bucket(bucketTags)
		key := tagKey(ref.Upstream, ref.Repository, tag)
		if err := getJSON(b, key, &t); err != nil {
			return fmt.Errorf("tag %s:%s: %w", ref.Repo(), tag, err)
		}
		pos := slices.IndexFunc(t.History, func(e TagEntry) bool { return e.Digest == ref.Digest })
		if pos < 0 {
			return fmt.Errorf("tag %s:%s no longer holds %s: %w", ref.Repo(), tag, ref.Digest, ErrConflict)
		}
		var err error
		if img, err = transition(tx, ref, c, now); err != nil {
			return err
		}
		if !refuse {
			return nil
		}
		through := make([]digest.Digest, 0, pos+1)
		for _, e := range t.History[:pos+1] {
			through = append(through, e.Digest)
		}
		if t.Refusal != nil {
			// An earlier refusal still holds back what it named.
			for _, d := range t.Refusal.Through {
				if !slices.Contains(through, d) {
					through = append([]digest.Digest{d}, through...)
				}
			}
		}
		if len(through) > maxRefused {
			through = through[len(through)-maxRefused:]
		}
		t.Refusal = &TagRefusal{Digest: ref.Digest, Through: through, At: now, By: c.Actor}
		if err := putJSON(b, key, &t); err != nil {
			return err
		}
		return appendAudit(tx, Entry{
			Time: now, Actor: c.Actor, Image: ref.String(), From: img.State, To: img.State, Action: "refuse-tag",
			Reason: fmt.Sprintf("tag %s is refused until a digest newer than %s is approved", tag, ref.Digest),
		})
	})
	return img, t, err
}
