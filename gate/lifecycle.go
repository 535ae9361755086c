package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/lifecycle"
	"github.com/airlockproxy/airlock/policy"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// Bounds on what the lifecycle step reads from an upstream, which is the
// image publisher's to write: a hostile one must not make it fetch without
// end, hold a worker, or grow the record.
const (
	// lifecycleTimeout bounds the whole upstream read of one image.
	lifecycleTimeout = 30 * time.Second
	// maxLifecycleSubjects bounds the manifests whose referrers are
	// listed: the image, then its fetched platform manifests.
	maxLifecycleSubjects = 8
	// maxLifecycleReferrers bounds the lifecycle manifests fetched per
	// image; more are reported, not read.
	maxLifecycleReferrers = 4
	// maxLifecycleErrors bounds the problems kept on the record.
	maxLifecycleErrors = 4
)

// EOLLookup is what the lifecycle step needs of the scanner: the end of
// life the vulnerability DB records for a distro. *scan.Scanner has it,
// answering from the DB scans currently use (the one that just scanned
// the image, unless an import swapped it in between).
type EOLLookup interface {
	OSEndOfLife(distro string) (scan.OSEndOfLife, error)
}

// LifecycleStep reads, after the scan and before the policy decision,
// what is known of the image's end of life:
//
//   - each platform's base OS, as the scan detected it, dated by
//     policy.eol_table, else by the OS end-of-life data of the grype DB
//     (when the scanner is an EOLLookup and the DB has a date), else by
//     the table shipped with Airlock (lifecycle.Table.Resolve);
//   - the end of life the publisher declared with Microsoft's lifecycle
//     metadata: the vnd.microsoft.artifact.lifecycle.end-of-life.date
//     annotation on the stored image manifest or index (or a platform
//     manifest), and on the lifecycle artifacts
//     (application/vnd.microsoft.artifact.lifecycle) the upstream lists as
//     referrers of the image or of its platform manifests. The earliest
//     date counts.
//
// It records them on the image (state.Image.Lifecycle); the policy step
// decides on them (deny_eol_os, warn_eol_within) and copies them into the
// policy summary and so into the approval attestation. Rescans run it
// again, so a declaration made after approval is seen by the next one.
//
// The upstream is the publisher's: the referrers list must fit in
// limits.max_manifest_bytes, at most maxLifecycleReferrers lifecycle
// manifests are fetched (each by digest, within the same limit), each must
// name the image as its subject, and a date must be RFC 3339. What cannot
// be read is recorded (state.ImageEOL.Error, a policy note), never a
// failure of the step: the declaration is optional metadata, and an
// upstream that cannot be reached during a rescan must not revoke an
// image. When the upstream cannot be asked, the date read last time is
// kept.
type LifecycleStep struct {
	db          EOLLookup // nil: the tables only
	upstreams   *upstream.Set
	content     *content.Store
	rules       config.Policy
	maxManifest int64
	now         func() time.Time
	log         *slog.Logger
}

// NewLifecycleStep returns the lifecycle step. sc is the pipeline's
// scanner: when it is an EOLLookup its DB's dates are used.
func NewLifecycleStep(sc Scanner, ups *upstream.Set, cs *content.Store, rules config.Policy, maxManifest int64) *LifecycleStep {
	l := &LifecycleStep{upstreams: ups, content: cs, rules: rules, maxManifest: maxManifest, now: time.Now, log: slog.Default()}
	if db, ok := sc.(EOLLookup); ok {
		l.db = db
	}
	return l
}

// Name implements Step.
func (l *LifecycleStep) Name() string { return "lifecycle" }

// State implements Step: the step keeps the image's state.
func (l *LifecycleStep) State() state.State { return "" }

// Run implements Step.
func (l *LifecycleStep) Run(ctx context.Context, s *Subject) (Verdict, error) {
	if s.Artifact != "" {
		return Verdict{Outcome: Skip, Detail: "not a container image (" + s.Artifact + ")"}, nil
	}
	if s.Report == nil {
		return Verdict{Outcome: Skip, Detail: "no scan report"}, nil
	}
	// Read at every decision, like the policy: an edit applies from the
	// next image on.
	table, err := lifecycle.Load(l.rules.EOLTable)
	if err != nil {
		return Verdict{}, fmt.Errorf("policy.eol_table: %w", err)
	}
	lc := &state.Lifecycle{Checked: l.now().UTC()}
	if s.Image.Scan != nil {
		lc.Report = s.Image.Scan.Report
	}
	var dbProblems []string
	lc.BaseOS, dbProblems = l.baseOS(table, s.Report)
	if lc.ImageEOL, err = l.publisher(ctx, s.Image); err != nil {
		return Verdict{}, err
	}
	var parts []string
	for _, b := range lc.BaseOS {
		if b.EOL.IsZero() {
			parts = append(parts, fmt.Sprintf("base OS %s %s: end of life unknown", b.Name, b.Version))
			continue
		}
		parts = append(parts, fmt.Sprintf("base OS %s %s: end of life %s (%s)", b.Name, b.Release, b.EOL.Format(time.DateOnly), b.EOLSource))
	}
	if len(parts) == 0 {
		parts = append(parts, "no base OS detected")
	}
	if e := lc.ImageEOL; e != nil && !e.EOL.IsZero() {
		parts = append(parts, fmt.Sprintf("publisher end of life %s (%s)", e.EOL.Format(time.DateOnly), e.Source))
	}
	if e := lc.ImageEOL; e != nil && e.Error != "" {
		parts = append(parts, "publisher lifecycle metadata: "+e.Error)
	}
	if len(dbProblems) > 0 {
		parts = append(parts, "vulnerability DB end-of-life lookup failed, table used: "+lcJoin(dbProblems))
	}
	return Verdict{Outcome: Pass, Detail: strings.Join(parts, "; "), Update: func(i *state.Image) { i.Lifecycle = lc }}, nil
}

// baseOS dates each platform's base OS (see LifecycleStep); a DB lookup
// that fails falls back to the tables and is reported.
func (l *LifecycleStep) baseOS(table lifecycle.Table, rep *Report) ([]state.BaseOS, []string) {
	var out []state.BaseOS
	var problems []string
	for _, pr := range rep.Platforms {
		if pr.Distro == "" {
			continue
		}
		var release string
		var eol time.Time
		if l.db != nil {
			r, err := l.db.OSEndOfLife(pr.Distro)
			if err != nil {
				l.log.Warn("lifecycle: vulnerability DB end-of-life lookup", "distro", pr.Distro, "err", err)
				problems = append(problems, err.Error())
			} else {
				release, eol = r.Release, r.EOL
			}
		}
		out = append(out, baseOSRecord(table.Resolve(pr.Distro, release, eol)))
	}
	return out, problems
}

func baseOSRecord(o lifecycle.OS) state.BaseOS {
	return state.BaseOS{Name: o.Name, Version: o.Version, Release: o.Release, EOL: o.EOL, EOLSource: o.Source}
}

// declaration is one end-of-life date a publisher declared, and where.
type declaration struct {
	eol    time.Time
	source string
}

// publisher reads the end of life the image's publisher declared (see
// LifecycleStep): nil when it declared none and nothing went wrong. Only
// a failure of Airlock's own content store is an error.
func (l *LifecycleStep) publisher(ctx context.Context, img state.Image) (*state.ImageEOL, error) {
	var found []declaration
	var problems []string
	if err := l.fromContent(ctx, img, &found, &problems); err != nil {
		return nil, err
	}
	const before = " (as read before)"
	if unread := l.fromReferrers(ctx, img, &found, &problems); unread {
		// The upstream could not be asked (all of it) this time: what it
		// declared before still holds.
		if prev := img.Lifecycle; prev != nil && prev.ImageEOL != nil && !prev.ImageEOL.EOL.IsZero() {
			found = append(found, declaration{eol: prev.ImageEOL.EOL, source: strings.TrimSuffix(prev.ImageEOL.Source, before) + before})
		}
	}
	if len(found) == 0 && len(problems) == 0 {
		return nil, nil
	}
	out := &state.ImageEOL{Error: lcJoin(problems)}
	if len(found) > 0 {
		// The earliest date counts: a publisher that declared two meant
		// the image is done by the first.
		sort.SliceStable(found, func(i, j int) bool { return found[i].eol.Before(found[j].eol) })
		out.EOL, out.Source = found[0].eol, found[0].source
	}
	return out, nil
}

// fromContent reads the annotation on the stored image manifest or index
// and on its fetched platform manifests.
func (l *LifecycleStep) fromContent(ctx context.Context, img state.Image, found *[]declaration, problems *[]string) error {
	what := "manifest annotation"
	if isIndex(img.MediaType) {
		what = "index annotation"
	}
	subjects := []struct {
		d    digest.Digest
		what string
	}{{img.Digest, what}}
	for _, m := range img.Manifests {
		subjects = append(subjects, struct {
			d    digest.Digest
			what string
		}{m, "platform manifest " + string(m) + " annotation"})
	}
	for _, s := range subjects {
		raw, err := l.content.Get(ctx, s.d)
		if err != nil {
			return fmt.Errorf("read manifest %s: %w", s.d, err)
		}
		eol, err := lifecycle.FromManifest(raw)
		switch {
		case errors.Is(err, lifecycle.ErrNoDeclaration):
		case err != nil:
			*problems = append(*problems, s.what+": "+err.Error())
		default:
			*found = append(*found, declaration{eol: eol, source: s.what})
		}
	}
	return nil
}

// fromReferrers reads the lifecycle artifacts the upstream lists as
// referrers of the image and of its first platform manifests. It reports
// whether some could not be read because the upstream could not be asked
// (as opposed to the publisher's content being unusable).
func (l *LifecycleStep) fromReferrers(ctx context.Context, img state.Image, found *[]declaration, problems *[]string) (unread bool) {
	reg, ok := l.upstreams.Get(img.Upstream)
	if !ok {
		*problems = append(*problems, fmt.Sprintf("upstream %q is no longer configured: referrers not read", img.Upstream))
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, lifecycleTimeout)
	defer cancel()
	subjects := append([]digest.Digest{img.Digest}, img.Manifests...)
	if len(subjects) > maxLifecycleSubjects {
		subjects = subjects[:maxLifecycleSubjects]
	}
	opts := append(append([]remote.Option(nil), reg.RemoteOptions()...), remote.WithContext(ctx))
	fetched, skipped := 0, 0
	for _, sub := range subjects {
		idx, err := remote.Referrers(reg.Repository(img.Repository).Digest(string(sub)), opts...)
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("referrers of %s: %s", sub, upstream.Cause(err)))
			unread = true
			continue
		}
		raw, err := idx.RawManifest()
		if err != nil {
			*problems = append(*problems, fmt.Sprintf("referrers of %s: %s", sub, upstream.Cause(err)))
			unread = true
			continue
		}
		if int64(len(raw)) > l.maxManifest {
			*problems = append(*problems, fmt.Sprintf("referrers list of %s is %d bytes, over limits.max_manifest_bytes (%d): not read", sub, len(raw), l.maxManifest))
			continue
		}
		var list struct {
			Manifests []struct {
				Digest       string `json:"digest"`
				ArtifactType string `json:"artifactType"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			*problems = append(*problems, fmt.Sprintf("referrers list of %s: %v", sub, err))
			continue
		}
		for _, desc := range list.Manifests {
			// Descriptors without an artifact type are not fetched to
			// find one out: lifecycle artifacts are attached by tools
			// that set it (oras attach), and reading every untyped
			// referrer would let a publisher make Airlock fetch at will.
			if desc.ArtifactType != lifecycle.ArtifactType {
				continue
			}
			if fetched == maxLifecycleReferrers {
				skipped++
				continue
			}
			fetched++
			d, err := digest.Parse(desc.Digest)
			if err != nil {
				*problems = append(*problems, fmt.Sprintf("referrer of %s: digest %.80q: %v", sub, desc.Digest, err))
				continue
			}
			body, _, err := reg.Manifest(ctx, img.Repository, d, l.maxManifest)
			switch {
			case errors.Is(err, upstream.ErrNotFound):
				*problems = append(*problems, fmt.Sprintf("referrer %s: listed, but not found upstream", d))
				continue
			case errors.Is(err, upstream.ErrTooLarge):
				*problems = append(*problems, fmt.Sprintf("referrer %s: over limits.max_manifest_bytes (%d): not read", d, l.maxManifest))
				continue
			case err != nil:
				*problems = append(*problems, fmt.Sprintf("referrer %s: %s", d, upstream.Cause(err)))
				unread = true
				continue
			}
			eol, err := lifecycle.ParseReferrer(body, string(sub))
			if err != nil {
				*problems = append(*problems, fmt.Sprintf("referrer %s: %v", d, err))
				continue
			}
			*found = append(*found, declaration{eol: eol, source: "referrer " + string(d)})
		}
	}
	if skipped > 0 {
		*problems = append(*problems, fmt.Sprintf("%d more lifecycle referrers not read (at most %d are)", skipped, maxLifecycleReferrers))
	}
	return unread
}

// lcJoin joins at most maxLifecycleErrors problems, saying how many more
// there were.
func lcJoin(items []string) string {
	if len(items) <= maxLifecycleErrors {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:maxLifecycleErrors], "; "), len(items)-maxLifecycleErrors)
}

// lifecycle gives the policy decision on s the base OS and publisher end
// of life (into in) and returns them for the record: what the lifecycle
// step read for this scan, or, in a pipeline without one (or for a
// record it read for an earlier scan), the tables' base OS dates alone.
func (p *PolicyStep) lifecycle(s *Subject, in *policy.Input) (*state.Lifecycle, error) {
	lc := s.Image.Lifecycle
	if lc == nil || s.Image.Scan == nil || lc.Report != s.Image.Scan.Report {
		// Read at every decision, like the VEX documents: an edit
		// applies from the next image on.
		table, err := lifecycle.Load(p.rules.EOLTable)
		if err != nil {
			return nil, fmt.Errorf("policy.eol_table: %w", err)
		}
		lc = &state.Lifecycle{}
		for _, pr := range s.Report.Platforms {
			if pr.Distro != "" {
				lc.BaseOS = append(lc.BaseOS, baseOSRecord(table.Lookup(pr.Distro)))
			}
		}
	}
	for _, b := range lc.BaseOS {
		in.OS = append(in.OS, lifecycle.OS{Name: b.Name, Version: b.Version, Release: b.Release, EOL: b.EOL, Source: b.EOLSource})
	}
	if e := lc.ImageEOL; e != nil {
		in.Publisher = lifecycle.Publisher{EOL: e.EOL, Source: e.Source, Error: e.Error}
	}
	return lc, nil
}
