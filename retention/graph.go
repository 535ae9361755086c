// Package retention decides which images' content Airlock releases (the
// retention rules: unpulled, denied, keep-per-tag, quota; an image that is
// purged keeps its record and audit trail in state "purged") and deletes
// content no kept image references (the content garbage collector).
//
// # References
//
// The garbage collector marks, from one snapshot of the state store, every
// digest an image that is not purged holds: its manifest, the platform
// manifests and the config and layer blobs its record lists, Airlock's
// artifacts for it (signatures, attestations, referrers and their blobs),
// its scan report and the SBOMs the report names, and every digest a link
// attributes to it or to a manifest it holds. Images in every state but
// purged count, those in the pipeline or awaiting an admin included. A
// link whose image has no record keeps its digest too. Only content of
// purged images, and content nothing references, is released.
//
// # Sweep
//
// A blob is deleted only when nothing marks it and it was written more
// than the grace period ago (an in-flight fetch writes blobs before it
// records their links). The collector re-reads the state store for the
// marks after taking the sweep lease (state.SweepLease); a writer that
// found content already stored and recorded a reference to it waits for
// that lease after its commit and stores again what may have gone (see
// state.SweepLease). One collector runs at a time (state.GCLease).
package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// graph is the reference graph of one snapshot: which digests each image
// record (by key) holds, and which holders are kept.
type graph struct {
	// images maps a record's key to the record.
	images map[string]state.Image
	// refs maps a holder's key (an image key, or the key a link names
	// that has no record) to the digests it holds.
	refs map[string]map[digest.Digest]struct{}
}

// kept reports whether the holder key keeps its content: every holder but
// a purged image record does.
func (g *graph) kept(key string) bool {
	img, ok := g.images[key]
	return !ok || img.State != state.StatePurged
}

func (g *graph) add(key string, ds ...digest.Digest) {
	set := g.refs[key]
	if set == nil {
		set = map[digest.Digest]struct{}{}
		g.refs[key] = set
	}
	for _, d := range ds {
		if d != "" {
			set[d] = struct{}{}
		}
	}
}

// reportDigests reads a scan report and returns the SBOM digests it names.
type reportReader func(ctx context.Context, d digest.Digest) ([]digest.Digest, error)

// contentReports reads reports from the content store. A report that is
// not there names nothing (it is gone already); any other error stops the
// collector, which must not guess what a kept image references.
func contentReports(cs *content.Store) reportReader {
	return func(ctx context.Context, d digest.Digest) ([]digest.Digest, error) {
		raw, err := cs.Get(ctx, d)
		if errors.Is(err, content.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read scan report %s: %w", d, err)
		}
		var rep struct {
			Platforms []struct {
				SPDX     digest.Digest `json:"sbom_spdx"`
				SyftJSON digest.Digest `json:"sbom_syft"`
			} `json:"platforms"`
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return nil, fmt.Errorf("decode scan report %s: %w", d, err)
		}
		var out []digest.Digest
		for _, p := range rep.Platforms {
			out = append(out, p.SPDX, p.SyftJSON)
		}
		return out, nil
	}
}

// buildGraph builds the reference graph of snap. Reports are read only for
// images that are not purged: a purged image's report is released with it.
func buildGraph(ctx context.Context, snap state.Snapshot, reports reportReader) (*graph, error) {
	g := &graph{images: map[string]state.Image{}, refs: map[string]map[digest.Digest]struct{}{}}
	// holders maps "<repo>@<manifest digest>" to the keys of the holders
	// of that manifest: whoever holds a manifest holds what it references.
	holders := map[string]map[string]struct{}{}
	hold := func(repo string, d digest.Digest, key string) {
		k := repo + "@" + string(d)
		if holders[k] == nil {
			holders[k] = map[string]struct{}{}
		}
		holders[k][key] = struct{}{}
	}
	for _, img := range snap.Images {
		key := img.Ref.String()
		g.images[key] = img
		g.add(key, img.Digest)
		g.add(key, img.Manifests...)
		g.add(key, img.Blobs...)
		hold(img.Repo(), img.Digest, key)
		for _, m := range img.Manifests {
			hold(img.Repo(), m, key)
		}
		if s := img.Signed; s != nil {
			g.add(key, s.Sig.Digest, s.Att.Digest)
			for _, r := range s.Referrers {
				g.add(key, r.Digest)
				hold(img.Repo(), r.Digest, key)
			}
			hold(img.Repo(), s.Sig.Digest, key)
			hold(img.Repo(), s.Att.Digest, key)
		}
		if img.State == state.StatePurged {
			continue
		}
		var reps []digest.Digest
		if img.Scan != nil && img.Scan.Report != "" {
			reps = append(reps, img.Scan.Report)
		}
		if img.Lifecycle != nil && img.Lifecycle.Report != "" {
			reps = append(reps, img.Lifecycle.Report)
		}
		for _, r := range reps {
			g.add(key, r)
			sboms, err := reports(ctx, r)
			if err != nil {
				return nil, fmt.Errorf("references of %s: %w", key, err)
			}
			g.add(key, sboms...)
		}
	}
	// Manifest links first, so blob links find every holder of their parent.
	for _, l := range snap.Links {
		if l.Role == state.RoleChild || l.Role == state.RoleArtifact {
			key := l.Repo + "@" + string(l.Image)
			g.add(key, l.Digest)
			hold(l.Repo, l.Digest, key)
		}
	}
	for _, l := range snap.Links {
		if l.Role == state.RoleChild || l.Role == state.RoleArtifact {
			continue
		}
		g.add(l.Repo+"@"+string(l.Image), l.Digest)
		for key := range holders[l.Repo+"@"+string(l.Parent)] {
			g.add(key, l.Digest)
		}
	}
	return g, nil
}

// refcounts counts, for every digest, the kept holders that reference it.
func (g *graph) refcounts() map[digest.Digest]int {
	rc := map[digest.Digest]int{}
	for key, set := range g.refs {
		if !g.kept(key) {
			continue
		}
		for d := range set {
			rc[d]++
		}
	}
	return rc
}
