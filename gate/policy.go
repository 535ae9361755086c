package gate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/policy"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/vex"
)

// maxRecordedViolations bounds the violations kept on the image record
// (the full list is in the report); records are read on every pull.
const maxRecordedViolations = 20

// PolicyStep makes the decision once every check has run.
type PolicyStep struct {
	mode  string
	rules config.Policy
	now   func() time.Time

	// upstream reads the upstream's VEX attestations (gate/upstreamatt.go).
	upstream *upstreamAttestations
}

// NewPolicyStep returns the policy step for gate.policy and the
// vulnerability policy.
func NewPolicyStep(mode string, rules config.Policy) (*PolicyStep, error) {
	switch mode {
	case config.PolicyScan, config.PolicyManual, config.PolicyAuto:
		return &PolicyStep{mode: mode, rules: rules, now: time.Now}, nil
	}
	return nil, fmt.Errorf("unknown gate policy %q", mode)
}

// Name implements Step.
func (p *PolicyStep) Name() string { return "policy" }

// State implements Step: the decision is instant and keeps the state.
func (p *PolicyStep) State() state.State { return "" }

// Run implements Step.
func (p *PolicyStep) Run(ctx context.Context, s *Subject) (Verdict, error) {
	switch p.mode {
	case config.PolicyAuto:
		return Verdict{Outcome: Pass, Detail: "auto policy: approved without checks"}, nil
	case config.PolicyManual:
		if s.Rescan {
			// Under the manual policy there is nothing to re-check: the
			// admin's approval stands.
			return Verdict{Outcome: Pass, Detail: "manual policy: the admin's approval stands"}, nil
		}
		return Verdict{Outcome: Hold, Detail: "manual policy: waiting for an admin to approve"}, nil
	}
	if s.Artifact != "" {
		return p.artifact(s), nil
	}
	if s.Report == nil {
		return Verdict{}, errors.New("no scan report to decide on")
	}
	rules := p.rules.For(s.Image.Upstream, s.Image.Repository)
	in := Input(s.Report, s.Image.ContentSize)
	suppressed, err := p.applyVEX(ctx, s.Image, &in)
	if err != nil {
		return Verdict{}, err
	}
	lc, err := p.lifecycle(s, &in) // base OS and publisher end of life: gate/lifecycle.go
	if err != nil {
		return Verdict{}, err
	}
	d := policy.Evaluate(rules, in, p.now())
	sum := &state.PolicySummary{Pass: d.Pass, Version: d.Version, Decided: p.now().UTC(), Total: len(d.Violations), Accepted: d.Accepted, Suppressed: suppressed, BaseOS: lc.BaseOS, ImageEOL: lc.ImageEOL, Notes: d.Notes}
	for i, v := range d.Violations {
		if i == maxRecordedViolations {
			break
		}
		sum.Violations = append(sum.Violations, v.Message)
	}
	update := func(img *state.Image) { img.Policy = sum }
	if !d.Pass {
		return Verdict{Outcome: Reject, Detail: d.Summary(), Update: update}, nil
	}
	detail := "policy " + d.Version + " passed"
	if len(d.Accepted) > 0 {
		detail += "; accepted: " + strings.Join(d.Accepted, "; ")
	}
	if len(suppressed) > 0 {
		detail += fmt.Sprintf("; %d matches suppressed by VEX", len(suppressed))
	}
	return Verdict{Outcome: Pass, Detail: detail, Update: update}, nil
}

// artifact decides an OCI artifact that is not a container image by
// policy.artifact_types: never by a vulnerability scan it cannot have.
func (p *PolicyStep) artifact(s *Subject) Verdict {
	why := fmt.Sprintf("%s is not a container image", s.Artifact)
	switch p.rules.ArtifactAction(s.Artifact) {
	case config.ArtifactAllow:
		return Verdict{Outcome: Pass, Detail: why + "; allowed by policy.artifact_types"}
	case config.ArtifactDeny:
		return Verdict{Outcome: Reject, Detail: why + "; denied by policy.artifact_types"}
	}
	if s.Rescan {
		return Verdict{Outcome: Pass, Detail: why + "; the admin's approval stands"}
	}
	return Verdict{Outcome: Hold, Detail: why + ": waiting for an admin to approve (policy.artifact_types: manual)"}
}

// maxRecordedSuppressed bounds the VEX suppressions kept on the record.
const maxRecordedSuppressed = 50

// applyVEX removes from in the vulnerability matches that a VEX statement
// of policy.vex suppresses for this image, and describes them. The
// documents are read at every decision: edits apply without a restart. A
// document that cannot be read fails the step (retried), so a broken file
// never turns into "no suppression" or "everything suppressed" silently.
// The upstream's VEX attestations that verify under the image's signature
// rule come first (gate/upstreamatt.go); policy.vex has the last word.
func (p *PolicyStep) applyVEX(ctx context.Context, img state.Image, in *policy.Input) ([]string, error) {
	set, err := p.upstream.vex(ctx, img, in)
	if err != nil {
		return nil, err
	}
	if len(p.rules.VEX) > 0 {
		cfg, err := vex.Load(p.rules.VEX)
		if err != nil {
			return nil, fmt.Errorf("policy.vex: %w", err)
		}
		set.Merge(cfg)
	}
	var kept []policy.Vulnerability
	var out []string
	for _, v := range in.Vulnerabilities {
		if m, ok := set.Suppresses(string(img.Digest), v.ID, v.Package, v.Version); ok {
			if len(out) < maxRecordedSuppressed {
				out = append(out, fmt.Sprintf("%s in %s %s: %s", v.ID, v.Package, v.Version, m))
			}
			continue
		}
		kept = append(kept, v)
	}
	in.Vulnerabilities = kept
	return out, nil
}

// Input turns a scan report into the policy's input.
func Input(rep *Report, size int64) policy.Input {
	in := policy.Input{Size: size}
	for _, p := range rep.Platforms {
		for _, pkg := range p.Packages {
			in.Packages = append(in.Packages, policy.Package{Name: pkg.Name, Version: pkg.Version, Licenses: pkg.Licenses})
		}
		for _, m := range p.Matches {
			in.Vulnerabilities = append(in.Vulnerabilities, policy.Vulnerability{
				ID: m.VulnID, Severity: m.Severity, Package: m.Package, Version: m.Version, FixedIn: m.FixedIn, FixState: m.FixState,
			})
		}
	}
	return in
}
