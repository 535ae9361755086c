package gate

import (
	"context"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// Relink upgrades a state file written before links existed: it derives
// every fetched image's links (platform manifests, configs, layers, and
// Airlock's own artifacts) from the manifests in the content store, then
// drops the old role-less content index. Until it has run, content that
// only the old index knew is not served, which is the safe side. It does
// nothing on a state file without the old index, so it runs at every
// start; an image whose manifests cannot be read is logged and skipped
// (a rescan by an admin re-fetches nothing, so such an image stays
// unserved until it is pulled again after revoke and rescan).
func Relink(ctx context.Context, st *state.Store, cs *content.Store) (int, error) {
	legacy, err := st.HasLegacyContent()
	if err != nil || !legacy {
		return 0, err
	}
	imgs, err := st.Images("")
	if err != nil {
		return 0, fmt.Errorf("relink: %w", err)
	}
	n := 0
	for _, img := range imgs {
		if !img.Fetched() {
			continue
		}
		links, err := imageLinks(ctx, cs, img)
		if err != nil {
			return n, fmt.Errorf("relink %s: %w", img.Ref, err)
		}
		if err := st.AddLinks(img.Ref, links); err != nil {
			return n, fmt.Errorf("relink %s: %w", img.Ref, err)
		}
		n++
	}
	return n, st.DropLegacyContent()
}

// imageLinks derives the links of a fetched image from stored manifests,
// exactly as the fetch and sign steps record them.
func imageLinks(ctx context.Context, cs *content.Store, img state.Image) ([]state.Link, error) {
	var links []state.Link
	raw, err := cs.Get(ctx, img.Digest)
	if err != nil {
		return nil, err
	}
	top, err := parseManifest(raw, img.MediaType)
	if err != nil {
		return nil, err
	}
	blobs := map[digest.Digest]blobDesc{}
	if isIndex(img.MediaType) {
		for _, child := range top.Manifests {
			d := digest.Digest(child.Digest.String())
			if !slices.Contains(img.Manifests, d) {
				continue
			}
			craw, err := cs.Get(ctx, d)
			if err != nil {
				return nil, err
			}
			cmt, err := mediaTypeOf(craw)
			if err != nil {
				return nil, fmt.Errorf("manifest %s: %w", d, err)
			}
			m, err := parseManifest(craw, cmt)
			if err != nil {
				return nil, fmt.Errorf("manifest %s: %w", d, err)
			}
			links = append(links, state.Link{Digest: d, Role: state.RoleChild, Parent: img.Digest, Image: img.Digest, MediaType: cmt, Size: int64(len(craw))})
			links = addBlobs(blobs, links, d, img.Digest, m)
		}
	} else {
		links = addBlobs(blobs, links, img.Digest, img.Digest, top)
	}
	if img.Signed == nil {
		return links, nil
	}
	arts := append([]state.Descriptor{img.Signed.Sig, img.Signed.Att}, img.Signed.Referrers...)
	for _, a := range arts {
		araw, err := cs.Get(ctx, a.Digest)
		if err != nil {
			return nil, err
		}
		var m manifestLike
		if m, err = parseManifest(araw, a.MediaType); err != nil {
			return nil, fmt.Errorf("artifact %s: %w", a.Digest, err)
		}
		links = append(links, state.Link{Digest: a.Digest, Role: state.RoleArtifact, Parent: img.Digest, Image: img.Digest, MediaType: a.MediaType, Size: int64(len(araw))})
		for _, l := range addBlobs(map[digest.Digest]blobDesc{}, nil, a.Digest, img.Digest, m) {
			l.Role = state.RoleArtifactBlob
			links = append(links, l)
		}
	}
	return links, nil
}
