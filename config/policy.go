package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Severities accepted in policy.fail_on, lowest first.
const (
	SeverityNone       = "none"
	SeverityNegligible = "negligible"
	SeverityLow        = "low"
	SeverityMedium     = "medium"
	SeverityHigh       = "high"
	SeverityCritical   = "critical"
)

// severityRank orders severities; "unknown" ranks below everything that
// can be chosen, so it never fails an image on its own.
var severityRank = map[string]int{
	"unknown":          0,
	SeverityNegligible: 1,
	SeverityLow:        2,
	SeverityMedium:     3,
	SeverityHigh:       4,
	SeverityCritical:   5,
}

// SeverityRank returns the rank of a severity name (case-insensitive), 0
// for unknown names.
func SeverityRank(s string) int { return severityRank[strings.ToLower(s)] }

// Policy is what a scanned image must satisfy: global rules, then
// overrides for matching upstreams and repositories, applied in order.
type Policy struct {
	Rules `yaml:",inline"`
	// Overrides adjust the rules for some upstreams or repositories.
	Overrides []Override `yaml:"overrides"`
	// VEX lists OpenVEX documents: a statement not_affected or fixed for
	// an image (by digest) and a vulnerability (and package) removes the
	// match from the policy decision. Read again at every decision, so
	// an edited or added statement applies from the next image on.
	VEX []string `yaml:"vex"`
	// EOLTable is a JSON file of base OS end-of-life dates that extends
	// or corrects the table shipped with Airlock (package lifecycle).
	EOLTable string `yaml:"eol_table"`
	// ArtifactTypes decides OCI artifacts that are not container images
	// (Helm charts, WASM modules, ...) by their artifactType or config
	// media type (a glob): "manual" (the default for every type: an
	// admin approves), "allow" or "deny".
	ArtifactTypes map[string]string `yaml:"artifact_types"`
}

// Artifact decisions in policy.artifact_types.
const (
	ArtifactManual = "manual"
	ArtifactAllow  = "allow"
	ArtifactDeny   = "deny"
)

// ArtifactAction returns what policy.artifact_types says of artifact type
// t: the most specific matching glob (an exact type first, then the
// longest glob), "manual" when none matches.
func (p Policy) ArtifactAction(t string) string {
	if a, ok := p.ArtifactTypes[t]; ok {
		return a
	}
	best, action := -1, ArtifactManual
	for g, a := range p.ArtifactTypes {
		if ok, _ := path.Match(g, t); ok && len(g) > best {
			best, action = len(g), a
		}
	}
	return action
}

// Override adjusts the rules for the images it matches. Scalar rules it
// sets replace the ones before it; lists are added to.
type Override struct {
	// Upstream matches an upstream name exactly; empty matches all.
	Upstream string `yaml:"upstream"`
	// Repository is a glob like the upstream allow list ("library/*",
	// "team/**"); empty matches all.
	Repository string `yaml:"repository"`
	Rules      `yaml:",inline"`
}

// Rules are the checks applied to a scanned image.
type Rules struct {
	// FailOn rejects images with a vulnerability at or above this severity
	// ("none" disables it).
	FailOn string `yaml:"fail_on,omitempty" json:"fail_on,omitempty"`
	// IgnoreUnfixed skips vulnerabilities that have no fixed version.
	IgnoreUnfixed *bool `yaml:"ignore_unfixed,omitempty" json:"ignore_unfixed,omitempty"`
	// AllowCVEs are accepted vulnerabilities, each with a reason and an expiry.
	AllowCVEs []AllowCVE `yaml:"allow_cves,omitempty" json:"allow_cves,omitempty"`
	// DenyPackages are package name globs that are never allowed.
	DenyPackages []string `yaml:"deny_packages,omitempty" json:"deny_packages,omitempty"`
	// DenyLicenses are SPDX license IDs that are never allowed.
	DenyLicenses []string `yaml:"deny_licenses,omitempty" json:"deny_licenses,omitempty"`
	// MaxImageSize rejects images whose content (all platforms) is larger.
	MaxImageSize Size `yaml:"max_image_size,omitempty" json:"max_image_size,omitempty"`
	// DenyEOLOS rejects images whose base OS release has reached its end
	// of life (policy.eol_table, the grype DB's data, or the table shipped
	// with Airlock), or that the publisher marked end-of-life
	// (vnd.microsoft.artifact.lifecycle); rescans revoke or flag them once
	// that date passes.
	DenyEOLOS *bool `yaml:"deny_eol_os,omitempty" json:"deny_eol_os,omitempty"`
	// WarnEOLWithin notes on the record that the base OS reaches its end
	// of life within this long.
	WarnEOLWithin time.Duration `yaml:"warn_eol_within,omitempty" json:"warn_eol_within,omitempty"`
}

// AllowCVE accepts one vulnerability until it expires.
type AllowCVE struct {
	// ID is the vulnerability ID, e.g. CVE-2024-1234 or GHSA-....
	ID string `yaml:"id" json:"id"`
	// Package limits the entry to one package name; empty means any.
	Package string `yaml:"package,omitempty" json:"package,omitempty"`
	// Reason says why it is accepted (required).
	Reason string `yaml:"reason" json:"reason"`
	// Expires is the last day (UTC) the entry counts (required).
	Expires Date `yaml:"expires" json:"expires"`
}

// Date is a calendar day, written 2006-01-02.
type Date struct{ time.Time }

// UnmarshalYAML parses 2006-01-02.
func (d *Date) UnmarshalYAML(n *yaml.Node) error {
	t, err := time.Parse(time.DateOnly, n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a date like 2025-12-31", n.Line, n.Value)
	}
	d.Time = t
	return nil
}

// MarshalJSON writes 2006-01-02.
func (d Date) MarshalJSON() ([]byte, error) { return json.Marshal(d.Format(time.DateOnly)) }

// Expired reports whether the day is over at now.
func (d Date) Expired(now time.Time) bool { return !now.Before(d.AddDate(0, 0, 1)) }

// Size is a byte count written with an optional unit: 500MiB, 2GiB, 1GB, 1024.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseSize parses a size with an optional unit.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size like 500MiB", s)
	}
	return Size(n * float64(mult)), nil
}

// UnmarshalYAML parses a size with an optional unit.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*z = v
	return nil
}

// String formats the size in binary units.
func (z Size) String() string {
	switch {
	case z >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(z)/(1<<30))
	case z >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(z)/(1<<20))
	case z >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(z)/(1<<10))
	}
	return fmt.Sprintf("%d B", int64(z))
}

func (p Policy) validate() error {
	if err := p.Rules.validate("policy"); err != nil {
		return err
	}
	if p.FailOn == "" {
		return fmt.Errorf("policy.fail_on: must be set (one of none, negligible, low, medium, high, critical)")
	}
	for g, a := range p.ArtifactTypes {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("policy.artifact_types: %q is not a valid glob", g)
		}
		if a != ArtifactManual && a != ArtifactAllow && a != ArtifactDeny {
			return fmt.Errorf("policy.artifact_types[%q]: %q is not manual, allow or deny", g, a)
		}
	}
	for i, o := range p.Overrides {
		field := fmt.Sprintf("policy.overrides[%d]", i)
		if o.Upstream == "" && o.Repository == "" {
			return fmt.Errorf("%s: set upstream, repository or both", field)
		}
		if o.Repository != "" {
			if _, err := path.Match(strings.ReplaceAll(o.Repository, "**", "*"), ""); err != nil {
				return fmt.Errorf("%s.repository: %q is not a valid glob", field, o.Repository)
			}
		}
		if err := o.Rules.validate(field); err != nil {
			return err
		}
	}
	return nil
}

func (r Rules) validate(field string) error {
	if r.WarnEOLWithin < 0 {
		return fmt.Errorf("%s.warn_eol_within: must not be negative", field)
	}
	if r.FailOn != "" && r.FailOn != SeverityNone && SeverityRank(r.FailOn) == 0 {
		return fmt.Errorf("%s.fail_on: %q is not one of none, negligible, low, medium, high, critical", field, r.FailOn)
	}
	for i, a := range r.AllowCVEs {
		f := fmt.Sprintf("%s.allow_cves[%d]", field, i)
		switch {
		case a.ID == "":
			return fmt.Errorf("%s.id: must not be empty", f)
		case strings.TrimSpace(a.Reason) == "":
			return fmt.Errorf("%s.reason: every accepted vulnerability needs a reason", f)
		case a.Expires.IsZero():
			return fmt.Errorf("%s.expires: every accepted vulnerability needs an expiry date", f)
		}
	}
	for i, g := range r.DenyPackages {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			return fmt.Errorf("%s.deny_packages[%d]: %q is not a valid glob", field, i, g)
		}
	}
	if r.MaxImageSize < 0 {
		return fmt.Errorf("%s.max_image_size: must not be negative", field)
	}
	return nil
}

// For returns the rules in force for one repository of one upstream.
func (p Policy) For(upstream, repo string) Rules {
	r := p.Rules
	// Copy the lists so appending never writes into the global ones.
	r.AllowCVEs = append([]AllowCVE(nil), r.AllowCVEs...)
	r.DenyPackages = append([]string(nil), r.DenyPackages...)
	r.DenyLicenses = append([]string(nil), r.DenyLicenses...)
	for _, o := range p.Overrides {
		if o.Upstream != "" && o.Upstream != upstream {
			continue
		}
		if o.Repository != "" && !globMatch(strings.Split(o.Repository, "/"), strings.Split(repo, "/")) {
			continue
		}
		if o.FailOn != "" {
			r.FailOn = o.FailOn
		}
		if o.IgnoreUnfixed != nil {
			r.IgnoreUnfixed = o.IgnoreUnfixed
		}
		if o.MaxImageSize != 0 {
			r.MaxImageSize = o.MaxImageSize
		}
		if o.DenyEOLOS != nil {
			r.DenyEOLOS = o.DenyEOLOS
		}
		if o.WarnEOLWithin != 0 {
			r.WarnEOLWithin = o.WarnEOLWithin
		}
		r.AllowCVEs = append(r.AllowCVEs, o.AllowCVEs...)
		r.DenyPackages = append(r.DenyPackages, o.DenyPackages...)
		r.DenyLicenses = append(r.DenyLicenses, o.DenyLicenses...)
	}
	return r
}

// Version identifies the rules' content: the same rules always give the
// same version, so a decision records exactly which policy made it.
func (r Rules) Version() string {
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
