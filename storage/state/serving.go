package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/opencontainers/go-digest"
)

// Role says what a digest is to the manifest that references it. A digest
// is never served for what it is, only for the role in which an approved
// image reaches it: the same bytes can be a layer of one image and the
// manifest of another.
type Role string

// The roles a digest can have in a repository.
const (
	// RoleChild is a platform manifest listed by an index (Link.Parent),
	// recorded only for the platform manifests the pipeline fetched.
	RoleChild Role = "manifest"
	// RoleConfig is the config blob of the manifest Link.Parent.
	RoleConfig Role = "config"
	// RoleLayer is a layer blob of the manifest Link.Parent.
	RoleLayer Role = "layer"
	// RoleArtifact is a manifest Airlock produced for image Link.Image
	// (its .sig or .att manifest, or an OCI 1.1 referrer).
	RoleArtifact Role = "artifact"
	// RoleArtifactBlob is a config or layer blob of the Airlock artifact
	// manifest Link.Parent.
	RoleArtifactBlob Role = "artifact-blob"
)

// manifestRole reports whether a role is served from /manifests/.
func (r Role) manifestRole() bool { return r == RoleChild || r == RoleArtifact }

// Link records that manifest Parent references Digest in Role, within one
// repository. Links are facts about immutable bytes (a manifest's digest
// fixes what it references), so they are only ever added; whether one
// serves anything is decided at request time from the image states.
type Link struct {
	Digest digest.Digest `json:"-"`
	Role   Role          `json:"-"`
	Parent digest.Digest `json:"-"`
	// Image is the image record whose approval the link serves: the index
	// for RoleChild, the signed image for Airlock's artifacts, the
	// top-level image that was fetched for configs and layers.
	Image     digest.Digest `json:"image"`
	MediaType string        `json:"media_type,omitempty"`
	Size      int64         `json:"size"`
}

// linkPrefix is the key prefix of every link of digest d in repo: the
// digest is followed by a NUL, which no repository name or digest holds.
func linkPrefix(repo Ref) []byte {
	return []byte(repo.Repo() + "@" + string(repo.Digest) + "\x00")
}

func linkKey(repo Ref, l Link) []byte {
	ref := Ref{Upstream: repo.Upstream, Repository: repo.Repository, Digest: l.Digest}
	return append(linkPrefix(ref), []byte(string(l.Role)+"\x00"+string(l.Parent))...)
}

// AddLinks records links within repo's repository (repo.Digest is not
// used). The fetch step records the platform manifests, configs and
// layers of an image before it can be approved; the sign step records the
// artifacts it wrote.
func (s *Store) AddLinks(repo Ref, links []Link) error {
	for _, l := range links {
		if err := l.Digest.Validate(); err != nil {
			return fmt.Errorf("link %s: %w", l.Digest, err)
		}
		if err := l.Parent.Validate(); err != nil {
			return fmt.Errorf("link parent %s: %w", l.Parent, err)
		}
		switch l.Role {
		case RoleChild, RoleConfig, RoleLayer, RoleArtifact, RoleArtifactBlob:
		default:
			return fmt.Errorf("link %s: unknown role %q", l.Digest, l.Role)
		}
	}
	return s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketLinks)
		for _, l := range links {
			if err := putJSON(b, linkKey(repo, l), &l); err != nil {
				return err
			}
		}
		return nil
	})
}

// Links returns every link of digest ref.Digest in ref's repository.
func (s *Store) Links(ref Ref) ([]Link, error) {
	var out []Link
	err := s.db.View(func(tx kv.Tx) error {
		var err error
		out, err = txView{tx}.links(ref)
		return err
	})
	return out, err
}

// Decision is the serving decision for one manifest or blob.
type Decision struct {
	// Serve is true when the rule (see the package doc) allows serving.
	Serve bool
	// Known is true when the digest has a record of its own or a link in
	// a role of the kind asked for (manifest roles for ManifestDecision,
	// blob roles for BlobDecision).
	Known bool
	// Image is the digest's own record, when it has one.
	Image *Image
	// MediaType and Size describe the content when a link served it.
	MediaType string
	Size      int64
	// Via says which path of the rule served it, for logs: "approved",
	// "platform manifest of <index>", "config of <manifest>", …
	Via string
	// Blocked is, when nothing serves, the record that stands in the way:
	// the digest's own record, or the image behind the first link found.
	Blocked *Image
}

// view is what the serving rule reads: one consistent snapshot of image
// records and links. The bbolt store implements it over a read
// transaction; another store implements the same two lookups.
type view interface {
	// image returns the record of ref and whether it exists.
	image(ref Ref) (Image, bool, error)
	// links returns the links of ref.Digest in ref's repository.
	links(ref Ref) ([]Link, error)
}

type txView struct{ tx kv.Tx }

func (v txView) image(ref Ref) (Image, bool, error) {
	var img Image
	err := getJSON(v.tx.Bucket(bucketImages), []byte(ref.String()), &img)
	if errors.Is(err, ErrNotFound) {
		return img, false, nil
	}
	return img, err == nil, err
}

func (v txView) links(ref Ref) ([]Link, error) {
	prefix := linkPrefix(ref)
	var out []Link
	c := v.tx.Bucket(bucketLinks).Cursor()
	for k, val := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, val = c.Next() {
		var l Link
		if err := json.Unmarshal(val, &l); err != nil {
			return nil, fmt.Errorf("decode link %q: %w", k, err)
		}
		role, parent, ok := bytes.Cut(k[len(prefix):], []byte{0})
		if !ok {
			return nil, fmt.Errorf("link key %q: no parent", k)
		}
		l.Digest, l.Role, l.Parent = ref.Digest, Role(role), digest.Digest(parent)
		out = append(out, l)
	}
	return out, nil
}

// ManifestDecision says whether manifest d may be served from repo, by
// the rule in the package doc.
func (s *Store) ManifestDecision(upstream, repo string, d digest.Digest) (Decision, error) {
	return s.decide("manifest", upstream, repo, d, manifestRule)
}

// BlobDecision says whether blob d may be served from repo, by the rule
// in the package doc.
func (s *Store) BlobDecision(upstream, repo string, d digest.Digest) (Decision, error) {
	return s.decide("blob", upstream, repo, d, blobRule)
}

// manifestRule is the serving rule for a manifest (package doc, rules 1–3).
func manifestRule(v view, ref Ref) (Decision, error) {
	var dec Decision
	own, ok, err := v.image(ref)
	if err != nil {
		return dec, err
	}
	if ok {
		// Rule 1, and the own-record rule: the record decides alone.
		dec.Known, dec.Image = true, &own
		if own.State == StateApproved {
			dec.Serve, dec.Via = true, "approved"
		} else {
			dec.Blocked = &own
		}
		return dec, nil
	}
	links, err := v.links(ref)
	if err != nil {
		return dec, err
	}
	for _, l := range links {
		if !l.Role.manifestRole() {
			continue
		}
		if !dec.Known {
			dec.Known, dec.MediaType, dec.Size = true, l.MediaType, l.Size
		}
		holder, ok, err := v.image(Ref{Upstream: ref.Upstream, Repository: ref.Repository, Digest: l.Image})
		if err != nil {
			return dec, err
		}
		if !ok {
			continue
		}
		if holder.State != StateApproved {
			if dec.Blocked == nil {
				dec.Blocked = &holder
			}
			continue
		}
		switch {
		case l.Role == RoleChild && l.Parent == l.Image && slices.Contains(holder.Manifests, ref.Digest):
			// Rule 2: a platform manifest the approved index lists and
			// the pipeline fetched.
			dec.Serve, dec.Via = true, "platform manifest of "+string(l.Image)
		case l.Role == RoleArtifact && holder.Signed.lists(ref.Digest):
			// Rule 3: Airlock's current artifact of an approved image.
			dec.Serve, dec.Via = true, "artifact of "+string(l.Image)
		}
		if dec.Serve {
			dec.MediaType, dec.Size, dec.Blocked = l.MediaType, l.Size, nil
			return dec, nil
		}
	}
	return dec, nil
}

// blobRule is the serving rule for a blob (package doc, rules 4–5).
func blobRule(v view, ref Ref) (Decision, error) {
	var dec Decision
	own, ok, err := v.image(ref)
	if err != nil {
		return dec, err
	}
	if ok && own.State != StateApproved {
		// The own-record rule holds on /blobs/ too.
		dec.Known, dec.Image, dec.Blocked = true, &own, &own
		return dec, nil
	}
	links, err := v.links(ref)
	if err != nil {
		return dec, err
	}
	for _, l := range links {
		if l.Role.manifestRole() {
			continue
		}
		if !dec.Known {
			dec.Known, dec.MediaType, dec.Size = true, l.MediaType, l.Size
		}
		parent := Ref{Upstream: ref.Upstream, Repository: ref.Repository, Digest: l.Parent}
		switch l.Role {
		case RoleConfig, RoleLayer:
			// Rule 4: a config or layer of a manifest that is servable.
			pd, err := manifestRule(v, parent)
			if err != nil {
				return dec, err
			}
			if pd.Serve {
				dec.Serve, dec.Via = true, string(l.Role)+" of "+string(l.Parent)
			} else if dec.Blocked == nil {
				dec.Blocked = pd.Blocked
			}
		case RoleArtifactBlob:
			// Rule 5: a blob of Airlock's current artifact of an approved image.
			holder, ok, err := v.image(Ref{Upstream: ref.Upstream, Repository: ref.Repository, Digest: l.Image})
			if err != nil {
				return dec, err
			}
			switch {
			case ok && holder.State == StateApproved && holder.Signed.lists(l.Parent):
				dec.Serve, dec.Via = true, "blob of artifact "+string(l.Parent)
			case ok && dec.Blocked == nil:
				dec.Blocked = &holder
			}
		}
		if dec.Serve {
			dec.MediaType, dec.Size, dec.Blocked = l.MediaType, l.Size, nil
			return dec, nil
		}
	}
	return dec, nil
}

// lists reports whether d is one of the artifact manifests of s.
func (s *Signed) lists(d digest.Digest) bool {
	if s == nil {
		return false
	}
	if s.Sig.Digest == d || s.Att.Digest == d {
		return true
	}
	for _, r := range s.Referrers {
		if r.Digest == d {
			return true
		}
	}
	return false
}

// ChildOf returns the index whose platform manifest ref is (by a
// RoleChild link), for an admin acting on a platform manifest that has no
// record of its own.
func (s *Store) ChildOf(ref Ref) (Image, Link, error) {
	var (
		idx  Image
		link Link
	)
	err := s.db.View(func(tx kv.Tx) error {
		var err error
		idx, link, err = childIndex(txView{tx}, ref)
		return err
	})
	return idx, link, err
}

// childIndex finds the fetched index that lists platform manifest ref.
func childIndex(v view, ref Ref) (Image, Link, error) {
	links, err := v.links(ref)
	if err != nil {
		return Image{}, Link{}, err
	}
	for _, l := range links {
		if l.Role != RoleChild {
			continue
		}
		img, ok, err := v.image(Ref{Upstream: ref.Upstream, Repository: ref.Repository, Digest: l.Image})
		if err != nil {
			return Image{}, Link{}, err
		}
		if ok && slices.Contains(img.Manifests, ref.Digest) {
			return img, l, nil
		}
	}
	return Image{}, Link{}, fmt.Errorf("%s is no platform manifest of a fetched index: %w", ref, ErrNotFound)
}

// Adopt gives platform manifest ref of a fetched index a record of its
// own, in state c.To, with its audit entry, in one transaction. From then
// on its own record decides (the index no longer does): this is how an
// admin revokes, or approves on its own, one platform of an index. It
// fails with ErrConflict when ref already has a record.
func (s *Store) Adopt(ref Ref, c Change) (Image, error) {
	var img Image
	err := s.update(func(tx kv.Tx) error {
		v := txView{tx}
		if _, ok, err := v.image(ref); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%s has a record of its own: %w", ref, ErrConflict)
		}
		idx, link, err := childIndex(v, ref)
		if err != nil {
			return err
		}
		// The child's blobs are its config and layers, as linked.
		var blobs []digest.Digest
		var size int64
		b := tx.Bucket(bucketLinks)
		for _, d := range idx.Blobs {
			for _, role := range []Role{RoleConfig, RoleLayer} {
				raw := b.Get(linkKey(ref, Link{Digest: d, Role: role, Parent: ref.Digest}))
				if raw == nil {
					continue
				}
				var l Link
				if json.Unmarshal(raw, &l) == nil {
					blobs = append(blobs, d)
					size += l.Size
				}
			}
		}
		now := s.now().UTC()
		img = Image{
			Ref: ref, State: c.To, Reason: c.Reason, MediaType: link.MediaType, Size: link.Size,
			Blobs: blobs, ContentSize: link.Size + size, Created: now, Updated: now,
			Scan: idx.Scan, Policy: idx.Policy, Verification: idx.Verification,
		}
		if img.State == StateApproved {
			img.ApprovedAt, img.ApprovedBy = now, c.Actor
		}
		if err := putJSON(tx.Bucket(bucketImages), []byte(ref.String()), &img); err != nil {
			return err
		}
		return appendAudit(tx, Entry{Time: now, Actor: c.Actor, Image: ref.String(), From: idx.State, To: c.To, Action: c.Action,
			Reason: c.Reason + " (platform manifest of " + string(idx.Digest) + ", now decided on its own)"})
	})
	return img, err
}

// HasLegacyContent reports whether the state file still holds the
// content index of Airlock versions before links (owners without roles),
// which must be replaced by links derived from the stored manifests.
func (s *Store) HasLegacyContent() (bool, error) {
	found := false
	err := s.db.View(func(tx kv.Tx) error {
		if b := tx.Bucket(bucketContent); b != nil {
			k, _ := b.Cursor().First()
			found = k != nil
		}
		return nil
	})
	return found, err
}

// DropLegacyContent removes the old content index once links replace it.
func (s *Store) DropLegacyContent() error {
	return s.update(func(tx kv.Tx) error {
		return tx.ClearBucket(bucketContent)
	})
}
