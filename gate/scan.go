package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// Scanner is what the scan step needs of the vulnerability scanner.
type Scanner interface {
	Scan(ctx context.Context, img v1.Image, name string) (*scan.Result, error)
}

// Report is the vulnerability report of one image, stored as a JSON blob
// in the content store and referenced from the image record.
type Report struct {
	Image     string           `json:"image"`
	ScannedAt time.Time        `json:"scanned_at"`
	DB        scan.DBStatus    `json:"db"`
	Platforms []PlatformReport `json:"platforms"`
}

// PlatformReport is the scan of one platform manifest (the image itself
// when it is not an index).
type PlatformReport struct {
	Manifest digest.Digest  `json:"manifest"`
	Platform string         `json:"platform,omitempty"`
	Distro   string         `json:"distro,omitempty"`
	SPDX     digest.Digest  `json:"sbom_spdx"`
	SyftJSON digest.Digest  `json:"sbom_syft"`
	Packages []scan.Package `json:"packages"`
	Matches  []scan.Match   `json:"matches"`
	// SBOMSeconds and MatchSeconds time the two halves of the scan.
	SBOMSeconds  float64 `json:"sbom_seconds"`
	MatchSeconds float64 `json:"match_seconds"`
}

// ScanStep builds an SBOM of every platform manifest from Airlock's own
// content store (never downloading again) and matches it against the
// vulnerability DB. SBOMs and the report are stored as blobs.
type ScanStep struct {
	scanner Scanner
	content *content.Store
	store   *state.Store
}

// NewScanStep returns the scan step.
func NewScanStep(sc Scanner, cs *content.Store, st *state.Store) *ScanStep {
	return &ScanStep{scanner: sc, content: cs, store: st}
}

// Name implements Step.
func (s *ScanStep) Name() string { return "scan" }

// State implements Step.
func (s *ScanStep) State() state.State { return state.StateScanning }

// Run implements Step.
func (s *ScanStep) Run(ctx context.Context, sub *Subject) (Verdict, error) {
	img := sub.Image
	at, err := artifactType(ctx, s.content, img)
	if err != nil {
		return Verdict{}, err
	}
	if at != "" {
		sub.Artifact = at
		return Verdict{Outcome: Skip, Detail: "not a container image (" + at + "): nothing to scan for vulnerabilities"}, nil
	}
	ts, err := targets(ctx, s.content, img)
	if err != nil {
		return Verdict{}, err
	}
	rep := &Report{Image: img.Ref.String(), ScannedAt: time.Now().UTC()}
	for _, t := range ts {
		v1img, err := s.content.Image(ctx, t.Manifest, t.mediaType)
		if err != nil {
			return Verdict{}, fmt.Errorf("open %s from the content store: %w", t.Manifest, err)
		}
		name := img.Ref.Repo() + "@" + string(t.Manifest)
		res, err := s.scanner.Scan(ctx, v1img, name)
		if err != nil {
			return Verdict{}, fmt.Errorf("scan %s: %w", name, err)
		}
		rep.DB = res.DB
		pr := t.PlatformReport
		pr.Distro, pr.Packages, pr.Matches = res.Distro, res.Packages, res.Matches
		pr.SBOMSeconds, pr.MatchSeconds = res.SBOMDuration.Seconds(), res.MatchDuration.Seconds()
		if pr.SPDX, err = s.putBlob(ctx, res.SPDX); err != nil {
			return Verdict{}, err
		}
		if pr.SyftJSON, err = s.putBlob(ctx, res.SyftJSON); err != nil {
			return Verdict{}, err
		}
		rep.Platforms = append(rep.Platforms, pr)
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		return Verdict{}, fmt.Errorf("encode report: %w", err)
	}
	repDigest, err := s.putBlob(ctx, raw)
	if err != nil {
		return Verdict{}, err
	}
	vulns, summary := index(rep)
	summary.Report, summary.ScannedAt, summary.DBBuilt = repDigest, rep.ScannedAt, rep.DB.Built
	if err := s.store.SetVulns(img.Ref, vulns); err != nil {
		return Verdict{}, fmt.Errorf("index vulnerabilities of %s: %w", img.Ref, err)
	}
	sub.Report = rep
	return Verdict{
		Outcome: Pass,
		Detail:  fmt.Sprintf("%d packages, %d vulnerabilities (%s); DB built %s", summary.Packages, len(vulns), severityCounts(summary.Severities), rep.DB.Built.Format(time.DateOnly)),
		Update:  func(i *state.Image) { i.Scan = &summary },
	}, nil
}

type target struct {
	PlatformReport
	mediaType string
}

// targets lists the manifests to scan: the platform manifests of an index
// that were fetched, or the image itself.
func targets(ctx context.Context, cs *content.Store, img state.Image) ([]target, error) {
	if !isIndex(img.MediaType) {
		return []target{{PlatformReport: PlatformReport{Manifest: img.Digest}, mediaType: img.MediaType}}, nil
	}
	raw, err := cs.Get(ctx, img.Digest)
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", img.Ref, err)
	}
	m, err := parseManifest(raw, img.MediaType)
	if err != nil {
		return nil, Permanent(fmt.Errorf("index %s: %w", img.Ref, err))
	}
	var out []target
	for _, d := range m.Manifests {
		dg := digest.Digest(d.Digest.String())
		fetched := false
		for _, c := range img.Manifests {
			fetched = fetched || c == dg
		}
		if !fetched {
			continue
		}
		t := target{PlatformReport: PlatformReport{Manifest: dg}, mediaType: string(d.MediaType)}
		if d.Platform != nil {
			t.Platform = d.Platform.String()
		}
		out = append(out, t)
	}
	return out, nil
}

// platformManifest is a target with its parsed manifest.
type platformManifest struct {
	target
	manifestLike
}

// manifests reads and parses the manifest of every target of img (see
// targets) from the content store.
func manifests(ctx context.Context, cs *content.Store, img state.Image) ([]platformManifest, error) {
	ts, err := targets(ctx, cs, img)
	if err != nil {
		return nil, err
	}
	out := make([]platformManifest, 0, len(ts))
	for _, t := range ts {
		raw, err := cs.Get(ctx, t.Manifest)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", t.Manifest, err)
		}
		m, err := parseManifest(raw, t.mediaType)
		if err != nil {
			return nil, Permanent(fmt.Errorf("manifest %s: %w", t.Manifest, err))
		}
		out = append(out, platformManifest{t, m})
	}
	return out, nil
}

func (s *ScanStep) putBlob(ctx context.Context, b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if err := s.content.PutBytes(ctx, d, b); err != nil {
		return "", fmt.Errorf("store scan output: %w", err)
	}
	return d, nil
}

// index turns a report into the per-image vulnerability index and summary.
func index(rep *Report) (map[string]state.VulnRef, state.ScanSummary) {
	vulns := map[string]state.VulnRef{}
	sum := state.ScanSummary{Severities: map[string]int{}}
	for _, p := range rep.Platforms {
		sum.Packages += len(p.Packages)
		for _, m := range p.Matches {
			v := vulns[m.VulnID]
			pkg := m.Package + " " + m.Version
			if !slices.Contains(v.Packages, pkg) {
				v.Packages = append(v.Packages, pkg)
			}
			if v.Severity == "" {
				v.Severity = m.Severity
				sum.Severities[strings.ToLower(m.Severity)]++
			}
			vulns[m.VulnID] = v
		}
	}
	return vulns, sum
}

func severityCounts(c map[string]int) string {
	if len(c) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return strings.Join(parts, ", ")
}
