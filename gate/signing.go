package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// PredicateApproval is the predicate type of Airlock's own approval
// attestation (next to sign.PredicateSPDX and sign.PredicateVuln).
const PredicateApproval = "https://airlock.dev/attestations/approval/v1"

// PredicateMalware is the predicate type of Airlock's malware-scan
// attestation: MalwarePredicate, the result of the malware step (clamd)
// for the approved image.
const PredicateMalware = "https://airlock.dev/attestations/malware-scan/v1"

// MalwarePredicate is the body of the malware-scan attestation.
type MalwarePredicate struct {
	Image   string `json:"image"`
	Scanner struct {
		Name    string `json:"name"`    // "clamav"
		Version string `json:"version"` // clamd's version line, naming its database
	} `json:"scanner"`
	ScannedAt time.Time `json:"scannedAt"`
	// Result is "clean", or "flagged" (found, approved under
	// malware.action flag).
	Result         string                   `json:"result"`
	Layers         int                      `json:"layers"`
	Files          int                      `json:"files"`
	Bytes          int64                    `json:"bytes"`
	FindingCount   int                      `json:"findingCount"`
	Findings       []state.MalwareFinding   `json:"findings,omitempty"`
	UnscannedCount int                      `json:"unscannedCount"`
	Unscanned      []state.MalwareUnscanned `json:"unscanned,omitempty"`
}

// SignStep signs an image with the enterprise key and attaches its SBOM,
// vulnerability report and an approval attestation. The results are
// stored in Airlock's content store and served only while the image is
// approved.
type SignStep struct {
	signer    *sign.Signer
	keyID     string
	upstreams *upstream.Set
	content   *content.Store
	store     *state.Store
	cfg       config.Signing
	policy    config.Policy
	verify    config.Signatures
	notation  *sign.NotationSigner
	log       *slog.Logger
	now       func() time.Time
}

// NewSignStep returns the sign step. verify is the upstream signature
// policy: only upstream signatures that verify under it are kept next to
// Airlock's.
func NewSignStep(signer *sign.Signer, ups *upstream.Set, cs *content.Store, st *state.Store, cfg config.Signing, p config.Policy, verify config.Signatures) *SignStep {
	return &SignStep{signer: signer, keyID: keyID(signer.PublicKeyPEM()), upstreams: ups, content: cs, store: st, cfg: cfg, policy: p, verify: verify, log: slog.Default(), now: time.Now}
}

func keyID(pub []byte) string { return digest.FromBytes(pub).String() }

// Name implements Step.
func (g *SignStep) Name() string { return "sign" }

// State implements Step.
func (g *SignStep) State() state.State { return state.StateSigning }

// ApprovalPredicate is the body of Airlock's approval attestation.
type ApprovalPredicate struct {
	Image         string               `json:"image"`
	Source        string               `json:"source"`
	ApprovedAt    time.Time            `json:"approvedAt"`
	ApprovedBy    string               `json:"approvedBy"`
	PolicyVersion string               `json:"policyVersion,omitempty"`
	Policy        *state.PolicySummary `json:"policy,omitempty"`
	VulnDBBuilt   *time.Time           `json:"vulnDBBuilt,omitempty"`
	Verification  *state.Verification  `json:"upstreamSignature,omitempty"`
	// Lifecycle tells consumers when the approval must be re-checked, and
	// when the base OS stops getting fixes.
	Lifecycle struct {
		RescanBy time.Time      `json:"rescanBy"`
		Expires  time.Time      `json:"expires"`
		BaseOS   []state.BaseOS `json:"baseOS,omitempty"`
		// ImageEOL is the end of life the publisher declared
		// (vnd.microsoft.artifact.lifecycle), when it did.
		ImageEOL *state.ImageEOL `json:"imageEOL,omitempty"`
	} `json:"lifecycle"`
}

// Run implements Step.
func (g *SignStep) Run(ctx context.Context, s *Subject) (Verdict, error) {
	img := s.Image
	if !img.Fetched() {
		return Verdict{}, Permanent(fmt.Errorf("%s has no content to sign", img.Ref))
	}
	dockerRef := img.Upstream + "/" + img.Repository
	if g.cfg.Reference != "" {
		dockerRef = g.cfg.Reference + "/" + img.Repository
	}
	existing := g.upstreamEvidence(ctx, img)
	sig, sigRef, err := g.signer.SignImage(img.Digest, img.Size, img.MediaType, dockerRef, existing)
	if err != nil {
		return Verdict{}, fmt.Errorf("sign %s: %w", img.Ref, err)
	}
	atts, err := g.attestations(ctx, s)
	if err != nil {
		return Verdict{}, err
	}
	att, attRefs, err := g.signer.Attest(img.Digest, img.Size, img.MediaType, dockerRef, atts)
	if err != nil {
		return Verdict{}, fmt.Errorf("attest %s: %w", img.Ref, err)
	}
	att, attRefs = g.upstreamAttestations(ctx, img, att, attRefs) // the upstream's verified attestations: gate/upstreamatt.go
	referrers := append([]sign.Artifact{sigRef}, attRefs...)
	nrefs, err := g.notationReferrers(ctx, img)
	if err != nil {
		return Verdict{}, err
	}
	referrers = append(referrers, nrefs...)
	all := append([]sign.Artifact{sig, att}, referrers...)
	var links []state.Link
	for _, a := range all {
		if err := g.content.PutBytes(ctx, a.Digest, a.Manifest); err != nil {
			return Verdict{}, fmt.Errorf("store signature of %s: %w", img.Ref, err)
		}
		links = append(links, state.Link{Digest: a.Digest, Role: state.RoleArtifact, Parent: img.Digest, Image: img.Digest, MediaType: a.MediaType, Size: int64(len(a.Manifest))})
		for d, b := range a.Blobs {
			if err := g.content.PutBytes(ctx, d, b); err != nil {
				return Verdict{}, fmt.Errorf("store signature of %s: %w", img.Ref, err)
			}
			links = append(links, state.Link{Digest: d, Role: state.RoleArtifactBlob, Parent: a.Digest, Image: img.Digest, Size: int64(len(b))})
		}
	}
	// The artifacts belong to the image: served exactly while it is
	// approved and this signing is its current one.
	if err := g.store.AddLinks(img.Ref, links); err != nil {
		return Verdict{}, fmt.Errorf("record signatures of %s: %w", img.Ref, err)
	}
	if err := confirmStored(ctx, g.store, g.content, artifactBytes(all), nil); err != nil {
		return Verdict{}, fmt.Errorf("signatures of %s: %w", img.Ref, err)
	}
	signed := &state.Signed{SignedAt: g.now().UTC(), Key: g.keyID, Sig: descriptor(sig), Att: descriptor(att)}
	for _, a := range referrers {
		signed.Referrers = append(signed.Referrers, descriptor(a))
	}
	return Verdict{
		Outcome: Pass,
		Detail:  fmt.Sprintf("signed with %s, %d attestations", g.keyID[:19], len(atts)),
		Update:  func(i *state.Image) { i.Signed = signed },
	}, nil
}

// upstreamEvidence returns the upstream's signatures of img that verify
// under the signature policy, to keep next to Airlock's own so they still
// verify with the publisher's key through Airlock. With no verification
// rule nothing is kept: unverified upstream bytes are never stored or
// served. Upstream down is no reason not to sign.
func (g *SignStep) upstreamEvidence(ctx context.Context, img state.Image) *sign.Artifact {
	rule := g.verify.For(img.Upstream, img.Repository)
	if rule.Mode == config.VerifyNone || rule.Mode == "" {
		return nil
	}
	reg, ok := g.upstreams.Get(img.Upstream)
	if !ok {
		return nil
	}
	trust, err := trustPolicy(rule)
	if err != nil {
		g.log.Warn("sign: upstream signatures not kept", "image", img.Ref.String(), "err", err)
		return nil
	}
	a, dropped, err := sign.VerifiedSignatures(ctx, reg.Repository(img.Repository), img.Digest, trust, reg.RemoteOptions()...)
	if err != nil {
		g.log.Warn("sign: upstream signatures not kept", "image", img.Ref.String(), "err", err)
		return nil
	}
	if len(dropped) > 0 {
		g.log.Warn("sign: upstream signature layers dropped", "image", img.Ref.String(), "dropped", len(dropped), "why", shortList(dropped, 4))
	}
	return a
}

// shortList joins at most n items, saying how many more there were.
func shortList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:n], "; "), len(items)-n)
}

func descriptor(a sign.Artifact) state.Descriptor {
	return state.Descriptor{MediaType: a.MediaType, Digest: a.Digest, Size: int64(len(a.Manifest)), ArtifactType: a.ArtifactType}
}

// attestations builds the SBOM, vulnerability, malware-scan, SLSA
// provenance and approval predicates.
func (g *SignStep) attestations(ctx context.Context, s *Subject) ([]sign.Attestation, error) {
	img := s.Image
	rep := s.Report
	if rep == nil && img.Scan != nil {
		// Signing after an admin's approval: the scan ran in an earlier job.
		raw, err := g.content.Get(ctx, img.Scan.Report)
		if err != nil {
			return nil, fmt.Errorf("read scan report of %s: %w", img.Ref, err)
		}
		rep = &Report{}
		if err := json.Unmarshal(raw, rep); err != nil {
			return nil, fmt.Errorf("read scan report of %s: %w", img.Ref, err)
		}
	}
	var out []sign.Attestation
	if rep != nil && len(rep.Platforms) > 0 {
		spdx, err := g.content.Get(ctx, rep.Platforms[0].SPDX)
		if err != nil {
			return nil, fmt.Errorf("read SBOM of %s: %w", img.Ref, err)
		}
		out = append(out, sign.Attestation{PredicateType: sign.PredicateSPDX, Predicate: spdx})
		vuln, err := vulnPredicate(rep)
		if err != nil {
			return nil, err
		}
		out = append(out, sign.Attestation{PredicateType: sign.PredicateVuln, Predicate: vuln})
	}
	if m := img.Malware; m != nil {
		mp := MalwarePredicate{Image: img.Ref.String(), ScannedAt: m.ScannedAt, Result: "clean",
			Layers: m.Layers, Files: m.Files, Bytes: m.Bytes,
			FindingCount: m.FindingCount, Findings: m.Findings, UnscannedCount: m.UnscannedCount, Unscanned: m.Unscanned}
		mp.Scanner.Name, mp.Scanner.Version = "clamav", m.Engine
		if m.FindingCount > 0 {
			mp.Result = "flagged"
		}
		raw, err := json.Marshal(mp)
		if err != nil {
			return nil, err
		}
		out = append(out, sign.Attestation{PredicateType: PredicateMalware, Predicate: raw})
	}
	now := g.now().UTC()
	prov, err := g.provenance(ctx, img, now)
	if err != nil {
		return nil, err
	}
	out = append(out, sign.Attestation{PredicateType: slsa1.PredicateSLSAProvenance, Predicate: prov})
	p := ApprovalPredicate{
		Image:        img.Ref.String(),
		Source:       img.Upstream + "/" + img.Repository + "@" + string(img.Digest),
		ApprovedAt:   now,
		ApprovedBy:   s.Actor,
		Policy:       img.Policy,
		Verification: img.Verification,
	}
	if img.Policy != nil {
		p.PolicyVersion = img.Policy.Version
	}
	if rep != nil {
		built := rep.DB.Built
		p.VulnDBBuilt = &built
	}
	p.Lifecycle.RescanBy = now.Add(24 * time.Hour)
	if img.Policy != nil {
		p.Lifecycle.BaseOS = img.Policy.BaseOS
		p.Lifecycle.ImageEOL = img.Policy.ImageEOL
	}
	p.Lifecycle.Expires = now.Add(g.cfg.Validity)
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return append(out, sign.Attestation{PredicateType: PredicateApproval, Predicate: raw}), nil
}

// moduleVersion is the version of a module linked into this binary.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

// vulnPredicate renders a report in cosign's vuln predicate format.
func vulnPredicate(rep *Report) ([]byte, error) {
	type match struct {
		ID       string   `json:"id"`
		Severity string   `json:"severity"`
		Package  string   `json:"package"`
		Version  string   `json:"version"`
		FixedIn  []string `json:"fixedIn,omitempty"`
		Platform string   `json:"platform,omitempty"`
	}
	var matches []match
	for _, p := range rep.Platforms {
		for _, m := range p.Matches {
			matches = append(matches, match{ID: m.VulnID, Severity: m.Severity, Package: m.Package, Version: m.Version, FixedIn: m.FixedIn, Platform: p.Platform})
		}
	}
	v := map[string]any{
		"invocation": map[string]any{"uri": "https://airlock.dev", "event_id": "", "builder.id": "airlock"},
		"scanner": map[string]any{
			"uri":     "pkg:golang/github.com/anchore/grype",
			"version": moduleVersion("github.com/anchore/grype"),
			"db":      map[string]any{"uri": rep.DB.Source, "version": rep.DB.SchemaVersion, "built": rep.DB.Built},
			"result":  map[string]any{"matches": matches},
		},
		"metadata": map[string]any{"scanStartedOn": rep.ScannedAt, "scanFinishedOn": rep.ScannedAt},
	}
	return json.Marshal(v)
}
