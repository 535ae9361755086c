// Package policy decides whether a scanned image may be approved: severity
// threshold, unfixed vulnerabilities, accepted CVEs with expiry, denied
// packages and licences, and image size. Every decision lists each rule
// that failed, so a rejected image says exactly why.
package policy

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/lifecycle"
)

// Vulnerability is one match of a vulnerability against a package.
type Vulnerability struct {
	ID       string   `json:"id"`
	Severity string   `json:"severity"`
	Package  string   `json:"package"`
	Version  string   `json:"version"`
	FixedIn  []string `json:"fixed_in,omitempty"`
	FixState string   `json:"fix_state,omitempty"`
}

// Package is one package found in the image.
type Package struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Licenses []string `json:"licenses,omitempty"`
}

// Input is what the policy looks at.
type Input struct {
	// Size is the image's total content size.
	Size            int64
	Packages        []Package
	Vulnerabilities []Vulnerability
	// OS lists the base OS of each platform, with its end of life when
	// it is known (package lifecycle: policy.eol_table, the grype DB or
	// the shipped table).
	OS []lifecycle.OS
	// Publisher is the end of life the image's publisher declared
	// (Microsoft's lifecycle metadata); zero when it declared none.
	// deny_eol_os and warn_eol_within apply to it as to the base OS.
	Publisher lifecycle.Publisher
}

// Violation is one failed rule.
type Violation struct {
	// Rule names the rule: severity, deny_packages, deny_licenses, max_image_size.
	Rule string `json:"rule"`
	// Subject is the CVE, package or licence concerned.
	Subject string `json:"subject,omitempty"`
	// Message explains it.
	Message string `json:"message"`
}

// Decision is the policy's verdict on one image.
type Decision struct {
	Pass bool `json:"pass"`
	// Version identifies the rules that decided.
	Version    string      `json:"policy_version"`
	Violations []Violation `json:"violations,omitempty"`
	// Accepted lists vulnerabilities let through by an allow_cves entry.
	Accepted []string `json:"accepted,omitempty"`
	// Notes records what is worth knowing but did not decide, such as
	// expired allow_cves entries.
	Notes []string `json:"notes,omitempty"`
}

// Evaluate applies rules to in at time now.
func Evaluate(r config.Rules, in Input, now time.Time) Decision {
	d := Decision{Version: r.Version()}
	threshold := 0
	if r.FailOn != config.SeverityNone {
		threshold = config.SeverityRank(r.FailOn)
	}
	ignoreUnfixed := r.IgnoreUnfixed != nil && *r.IgnoreUnfixed
	seen := map[string]bool{}
	for _, v := range sortVulns(in.Vulnerabilities) {
		if threshold == 0 || config.SeverityRank(v.Severity) < threshold {
			continue
		}
		if ignoreUnfixed && v.FixState != "fixed" {
			continue
		}
		key := v.ID + "\x00" + v.Package + "\x00" + v.Version
		if seen[key] {
			continue
		}
		seen[key] = true
		if a, expired, ok := allowed(r.AllowCVEs, v, now); ok {
			d.Accepted = append(d.Accepted, fmt.Sprintf("%s in %s: %s (until %s)", v.ID, v.Package, a.Reason, a.Expires.Format(time.DateOnly)))
			continue
		} else if expired != nil {
			d.Notes = append(d.Notes, fmt.Sprintf("allow_cves entry for %s expired on %s", v.ID, expired.Expires.Format(time.DateOnly)))
		}
		fix := "no fix available"
		if len(v.FixedIn) > 0 {
			fix = "fixed in " + strings.Join(v.FixedIn, ", ")
		}
		d.Violations = append(d.Violations, Violation{
			Rule:    "severity",
			Subject: v.ID,
			Message: fmt.Sprintf("%s (%s) in %s %s, %s: at or above fail_on %s", v.ID, v.Severity, v.Package, v.Version, fix, r.FailOn),
		})
	}
	for _, p := range in.Packages {
		for _, g := range r.DenyPackages {
			if ok, _ := path.Match(g, p.Name); ok {
				d.Violations = append(d.Violations, Violation{Rule: "deny_packages", Subject: p.Name,
					Message: fmt.Sprintf("package %s %s is denied (deny_packages %q)", p.Name, p.Version, g)})
				break
			}
		}
		if l, ok := deniedLicense(r.DenyLicenses, p.Licenses); ok {
			d.Violations = append(d.Violations, Violation{Rule: "deny_licenses", Subject: l,
				Message: fmt.Sprintf("package %s %s has denied licence %s", p.Name, p.Version, l)})
		}
	}
	evaluateEOL(r, in, now, &d)
	if r.MaxImageSize > 0 && in.Size > int64(r.MaxImageSize) {
		d.Violations = append(d.Violations, Violation{Rule: "max_image_size",
			Message: fmt.Sprintf("image size %s exceeds max_image_size %s", config.Size(in.Size), r.MaxImageSize)})
	}
	d.Pass = len(d.Violations) == 0
	return d
}

// evaluateEOL applies deny_eol_os and warn_eol_within to the base OS of
// each platform and to the end of life the publisher declared. Both use
// the same rules, with their own reasons: "base OS alpine 3.17 reached
// its end of life on …" and "the publisher marked this image end-of-life
// on …". A rescan after the date revokes or flags the image
// (scan.on_rescan_fail), since now is the time of each decision.
func evaluateEOL(r config.Rules, in Input, now time.Time, d *Decision) {
	deny := r.DenyEOLOS != nil && *r.DenyEOLOS
	seenOS := map[string]bool{}
	for _, o := range in.OS {
		if !o.Known() || seenOS[o.Name+"\x00"+o.Release] {
			continue
		}
		seenOS[o.Name+"\x00"+o.Release] = true
		name, day := o.Name+" "+o.Release, o.EOL.Format(time.DateOnly)
		from := ""
		if o.Source != "" {
			from = "date from " + o.Source + "; "
		}
		switch {
		case !now.Before(o.EOL) && deny:
			d.Violations = append(d.Violations, Violation{Rule: "deny_eol_os", Subject: name,
				Message: fmt.Sprintf("base OS %s reached its end of life on %s (%sdeny_eol_os)", name, day, from)})
		case !now.Before(o.EOL):
			d.Notes = append(d.Notes, fmt.Sprintf("base OS %s reached its end of life on %s%s", name, day, paren(from)))
		case r.WarnEOLWithin > 0 && o.EOL.Sub(now) <= r.WarnEOLWithin:
			d.Notes = append(d.Notes, fmt.Sprintf("base OS %s reaches its end of life on %s, within warn_eol_within %s", name, day, r.WarnEOLWithin))
		}
	}
	p := in.Publisher
	if p.Error != "" {
		d.Notes = append(d.Notes, "publisher lifecycle metadata: "+p.Error)
	}
	if p.EOL.IsZero() {
		return
	}
	day, from := p.EOL.UTC().Format(time.DateOnly), ""
	if p.Source != "" {
		from = "declared by " + p.Source + "; "
	}
	switch {
	case !now.Before(p.EOL) && deny:
		d.Violations = append(d.Violations, Violation{Rule: "deny_eol_os", Subject: "publisher end of life",
			Message: fmt.Sprintf("the publisher marked this image end-of-life on %s (%sdeny_eol_os)", day, from)})
	case !now.Before(p.EOL):
		d.Notes = append(d.Notes, fmt.Sprintf("the publisher marked this image end-of-life on %s%s", day, paren(from)))
	case r.WarnEOLWithin > 0 && p.EOL.Sub(now) <= r.WarnEOLWithin:
		d.Notes = append(d.Notes, fmt.Sprintf("the publisher marks this image end-of-life on %s, within warn_eol_within %s", day, r.WarnEOLWithin))
	}
}

// paren turns "x; " into " (x)", and "" into "".
func paren(s string) string {
	if s = strings.TrimSuffix(s, "; "); s == "" {
		return ""
	}
	return " (" + s + ")"
}

// allowed finds the allow_cves entry that accepts v at now. An entry that
// would match but has expired is returned as expired.
func allowed(list []config.AllowCVE, v Vulnerability, now time.Time) (config.AllowCVE, *config.AllowCVE, bool) {
	var expired *config.AllowCVE
	for i, a := range list {
		if !strings.EqualFold(a.ID, v.ID) || (a.Package != "" && a.Package != v.Package) {
			continue
		}
		if a.Expires.Expired(now) {
			expired = &list[i]
			continue
		}
		return a, nil, true
	}
	return config.AllowCVE{}, expired, false
}

// deniedLicense reports the first licence of a package that the deny list
// names. Licence expressions ("MIT OR GPL-3.0-only") are split into IDs.
func deniedLicense(deny, licenses []string) (string, bool) {
	for _, l := range licenses {
		for _, id := range strings.FieldsFunc(l, func(r rune) bool { return r == ' ' || r == '(' || r == ')' || r == ',' }) {
			if id == "AND" || id == "OR" || id == "WITH" {
				continue
			}
			for _, d := range deny {
				if strings.EqualFold(d, id) {
					return id, true
				}
			}
		}
	}
	return "", false
}

// sortVulns orders by severity (highest first), then ID, so messages are
// stable and the worst comes first.
func sortVulns(vs []Vulnerability) []Vulnerability {
	out := append([]Vulnerability(nil), vs...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := config.SeverityRank(out[i].Severity), config.SeverityRank(out[j].Severity)
		if ri != rj {
			return ri > rj
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Summary is a short reason for a rejected image, fit for a client's error
// message: which rules failed and the first few CVEs.
func (d Decision) Summary() string {
	if d.Pass {
		return "policy passed"
	}
	var parts []string
	var cves []string
	byRule := map[string]int{}
	for _, v := range d.Violations {
		byRule[v.Rule]++
		if v.Rule == "severity" && len(cves) < 5 {
			cves = append(cves, v.Subject)
		}
	}
	if n := byRule["severity"]; n > 0 {
		s := fmt.Sprintf("%d vulnerabilities at or above the severity threshold: %s", n, strings.Join(cves, ", "))
		if n > len(cves) {
			s += ", …"
		}
		parts = append(parts, s)
	}
	for _, v := range d.Violations {
		if v.Rule != "severity" {
			parts = append(parts, v.Message)
			if len(parts) >= 4 {
				break
			}
		}
	}
	return strings.Join(parts, "; ")
}
