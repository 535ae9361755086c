package retention

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// The rules a purge is made by (Purge.Rule).
const (
	RuleDenied     = "denied_after"
	RuleUnpulled   = "unpulled_after"
	RuleKeepPerTag = "keep_per_tag"
	RuleMaxBytes   = "max_bytes"
)

// Purge is one image retention purges (or would, in a dry run).
type Purge struct {
	// Image is "<upstream>/<repo>@<digest>".
	Image string `json:"image"`
	// State is the image's state before the purge.
	State state.State `json:"state"`
	// Rule is the retention rule that purges it; Reason says it in words
	// (the purged image's reason and audit entry).
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	// Bytes is what its purge frees: the content no other kept image
	// references (in the order the purges are listed).
	Bytes      int64     `json:"bytes"`
	LastPulled time.Time `json:"last_pulled,omitzero"`

	ref state.Ref
}

// plan is the outcome of the retention rules on one snapshot.
type plan struct {
	purges []Purge
	// rc is the reference count of every digest after the purges.
	rc map[digest.Digest]int
	// keptBytes is the stored content kept images reference, after the purges.
	keptBytes int64
	notes     []string
}

// planner applies the retention rules at now.
type planner struct {
	rules config.Retention
	now   time.Time
	g     *graph
	sizes map[digest.Digest]int64 // stored blobs
}

// lastUse is when an image was last pulled, or approved (or created) if
// it was pulled never or before that: a just approved image is not stale.
func lastUse(img state.Image) time.Time {
	t := img.Created
	if img.ApprovedAt.After(t) {
		t = img.ApprovedAt
	}
	if img.LastPulled.After(t) {
		t = img.LastPulled
	}
	return t
}

// plan applies the rules in order: denied_after, unpulled_after,
// keep_per_tag, then max_bytes on what is left.
func (p *planner) plan(tags []state.Tag) plan {
	out := plan{rc: p.g.refcounts()}
	purged := map[string]bool{}
	keys := make([]string, 0, len(p.g.images))
	for k := range p.g.images {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	grace := p.rules.GCGrace
	eligible := func(img state.Image) bool {
		if img.Pinned || img.State == state.StatePurged || purged[img.Ref.String()] {
			return false
		}
		// An image pulled within the grace period may be streaming to a
		// client right now.
		return img.LastPulled.IsZero() || p.now.Sub(img.LastPulled) >= grace
	}
	purge := func(img state.Image, rule, reason string) {
		key := img.Ref.String()
		purged[key] = true
		var freed int64
		for d := range p.g.refs[key] {
			out.rc[d]--
			if out.rc[d] == 0 {
				freed += p.sizes[d]
			}
		}
		out.purges = append(out.purges, Purge{Image: key, State: img.State, Rule: rule, Reason: reason, Bytes: freed, LastPulled: img.LastPulled, ref: img.Ref})
	}

	if d := p.rules.DeniedAfter; d > 0 {
		for _, k := range keys {
			img := p.g.images[k]
			switch img.State {
			case state.StateRejected, state.StateRevoked, state.StateFailed:
			default:
				continue
			}
			if eligible(img) && p.now.Sub(img.Updated) >= d {
				purge(img, RuleDenied, fmt.Sprintf("retention: %s for %s (denied_after %s)", img.State, days(p.now.Sub(img.Updated)), d))
			}
		}
	}
	if d := p.rules.UnpulledAfter; d > 0 {
		for _, k := range keys {
			img := p.g.images[k]
			if img.State != state.StateApproved || !eligible(img) {
				continue
			}
			if since := p.now.Sub(lastUse(img)); since >= d {
				what := "not pulled for " + days(since)
				if img.LastPulled.IsZero() {
					what = "never pulled in the " + days(since) + " since its approval"
				}
				purge(img, RuleUnpulled, fmt.Sprintf("retention: %s (unpulled_after %s)", what, d))
			}
		}
	}
	if n := p.rules.KeepPerTag; n > 0 {
		p.keepPerTag(tags, n, eligible, purge)
	}
	out.keptBytes = p.keptBytes(out.rc)
	if max := int64(p.rules.MaxBytes); max > 0 && out.keptBytes > max {
		var lru []state.Image
		for _, k := range keys {
			if img := p.g.images[k]; img.State == state.StateApproved && eligible(img) {
				lru = append(lru, img)
			}
		}
		// Least recently pulled first; never pulled counts as oldest.
		slices.SortStableFunc(lru, func(a, b state.Image) int {
			if c := a.LastPulled.Compare(b.LastPulled); c != 0 {
				return c
			}
			return cmp.Compare(a.ApprovedAt.UnixNano(), b.ApprovedAt.UnixNano())
		})
		for _, img := range lru {
			if out.keptBytes <= max {
				break
			}
			purge(img, RuleMaxBytes, fmt.Sprintf("retention: storage quota max_bytes %s exceeded (%s kept); least recently pulled", config.Size(max), config.Size(out.keptBytes)))
			out.keptBytes -= out.purges[len(out.purges)-1].Bytes
		}
		if out.keptBytes > max {
			out.notes = append(out.notes, fmt.Sprintf("max_bytes %s cannot be met: %s stay referenced by pinned images, images in the pipeline or awaiting an admin, and images pulled within gc_grace", config.Size(max), config.Size(out.keptBytes)))
		}
	}
	return out
}

// keepPerTag purges the approved digests of each tag's history beyond the
// n newest approved ones. A digest that is among the n newest of any tag
// stays.
func (p *planner) keepPerTag(tags []state.Tag, n int, eligible func(state.Image) bool, purge func(state.Image, string, string)) {
	keep := map[string]bool{}
	older := map[string]string{} // image key → a tag it is too old in
	for _, t := range tags {
		count := 0
		for i := len(t.History) - 1; i >= 0; i-- {
			key := state.Ref{Upstream: t.Upstream, Repository: t.Repository, Digest: t.History[i].Digest}.String()
			img, ok := p.g.images[key]
			if !ok || img.State != state.StateApproved {
				continue
			}
			count++
			if count <= n {
				keep[key] = true
			} else if _, seen := older[key]; !seen {
				older[key] = t.Name
			}
		}
	}
	keys := make([]string, 0, len(older))
	for k := range older {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		img := p.g.images[k]
		if keep[k] || !eligible(img) {
			continue
		}
		purge(img, RuleKeepPerTag, fmt.Sprintf("retention: tag %s keeps its %d newest approved digests (keep_per_tag)", older[k], n))
	}
}

// keptBytes sums the stored content that rc still references.
func (p *planner) keptBytes(rc map[digest.Digest]int) int64 {
	var n int64
	for d, size := range p.sizes {
		if rc[d] > 0 {
			n += size
		}
	}
	return n
}

// days says a duration in days (or hours and minutes, under two days;
// seconds, under a minute).
func days(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	if d < 48*time.Hour {
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
