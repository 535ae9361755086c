package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/lifecycle"
)

func date(s string) config.Date {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return config.Date{Time: t}
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	yes := true
	crit := Vulnerability{ID: "CVE-2026-0001", Severity: "Critical", Package: "openssl", Version: "3.0.1-r0", FixedIn: []string{"3.0.2-r0"}, FixState: "fixed"}
	high := Vulnerability{ID: "CVE-2026-0002", Severity: "High", Package: "zlib", Version: "1.2.11", FixState: "not-fixed"}
	low := Vulnerability{ID: "CVE-2026-0003", Severity: "Low", Package: "busybox", Version: "1.36"}
	unknown := Vulnerability{ID: "CVE-2026-0004", Severity: "Unknown", Package: "musl", Version: "1.2"}
	pkgs := []Package{{Name: "openssl", Version: "3.0.1-r0", Licenses: []string{"Apache-2.0"}}, {Name: "netcat-openbsd", Version: "1.2"}, {Name: "readline", Version: "8", Licenses: []string{"GPL-3.0-or-later OR MIT"}}}

	tests := []struct {
		name       string
		rules      config.Rules
		in         Input
		pass       bool
		violations []string // substrings, one per expected violation, in order
		accepted   int
		notes      int
	}{
		{name: "clean", rules: config.Rules{FailOn: "critical"}, in: Input{Vulnerabilities: []Vulnerability{high, low}}, pass: true},
		{name: "critical fails", rules: config.Rules{FailOn: "critical"}, in: Input{Vulnerabilities: []Vulnerability{low, crit}}, violations: []string{"CVE-2026-0001 (Critical) in openssl 3.0.1-r0, fixed in 3.0.2-r0"}},
		{name: "high threshold", rules: config.Rules{FailOn: "high"}, in: Input{Vulnerabilities: []Vulnerability{high, crit}}, violations: []string{"CVE-2026-0001", "CVE-2026-0002 (High) in zlib 1.2.11, no fix available"}},
		{name: "none disables", rules: config.Rules{FailOn: "none"}, in: Input{Vulnerabilities: []Vulnerability{crit}}, pass: true},
		{name: "unknown severity never fails", rules: config.Rules{FailOn: "negligible"}, in: Input{Vulnerabilities: []Vulnerability{unknown}}, pass: true},
		{name: "ignore unfixed", rules: config.Rules{FailOn: "high", IgnoreUnfixed: &yes}, in: Input{Vulnerabilities: []Vulnerability{high, crit}}, violations: []string{"CVE-2026-0001"}},
		{name: "duplicates count once", rules: config.Rules{FailOn: "critical"}, in: Input{Vulnerabilities: []Vulnerability{crit, crit}}, violations: []string{"CVE-2026-0001"}},
		{
			name:     "allowlisted",
			rules:    config.Rules{FailOn: "critical", AllowCVEs: []config.AllowCVE{{ID: "cve-2026-0001", Reason: "not reachable", Expires: date("2026-06-15")}}},
			in:       Input{Vulnerabilities: []Vulnerability{crit}},
			pass:     true,
			accepted: 1,
		},
		{
			name:       "allowlist expired",
			rules:      config.Rules{FailOn: "critical", AllowCVEs: []config.AllowCVE{{ID: "CVE-2026-0001", Reason: "not reachable", Expires: date("2026-06-14")}}},
			in:         Input{Vulnerabilities: []Vulnerability{crit}},
			violations: []string{"CVE-2026-0001"},
			notes:      1,
		},
		{
			name:       "allowlist for another package",
			rules:      config.Rules{FailOn: "critical", AllowCVEs: []config.AllowCVE{{ID: "CVE-2026-0001", Package: "libssl3", Reason: "x", Expires: date("2030-01-01")}}},
			in:         Input{Vulnerabilities: []Vulnerability{crit}},
			violations: []string{"CVE-2026-0001"},
		},
		{name: "denied package", rules: config.Rules{FailOn: "none", DenyPackages: []string{"netcat*"}}, in: Input{Packages: pkgs}, violations: []string{"package netcat-openbsd 1.2 is denied"}},
		{name: "denied licence in expression", rules: config.Rules{FailOn: "none", DenyLicenses: []string{"gpl-3.0-or-later"}}, in: Input{Packages: pkgs}, violations: []string{"readline 8 has denied licence GPL-3.0-or-later"}},
		{name: "size", rules: config.Rules{FailOn: "none", MaxImageSize: 1 << 20}, in: Input{Size: 2 << 20}, violations: []string{"image size 2.0 MiB exceeds max_image_size 1.0 MiB"}},
		{name: "size within", rules: config.Rules{FailOn: "none", MaxImageSize: 1 << 20}, in: Input{Size: 1 << 20}, pass: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Evaluate(tt.rules, tt.in, now)
			if d.Pass != tt.pass || len(d.Violations) != len(tt.violations) {
				t.Fatalf("pass = %v, violations = %+v; want pass %v with %d violations", d.Pass, d.Violations, tt.pass, len(tt.violations))
			}
			for i, want := range tt.violations {
				if !strings.Contains(d.Violations[i].Message, want) {
					t.Errorf("violation %d = %q, want it to contain %q", i, d.Violations[i].Message, want)
				}
			}
			if len(d.Accepted) != tt.accepted || len(d.Notes) != tt.notes {
				t.Errorf("accepted %v, notes %v; want %d and %d", d.Accepted, d.Notes, tt.accepted, tt.notes)
			}
			if d.Version == "" {
				t.Error("decision has no policy version")
			}
			if !d.Pass && !strings.Contains(d.Summary(), strings.Fields(tt.violations[0])[0]) {
				t.Errorf("summary %q does not name %q", d.Summary(), tt.violations[0])
			}
		})
	}
}

func TestSummaryShortensLongLists(t *testing.T) {
	var vs []Vulnerability
	for i := 0; i < 30; i++ {
		vs = append(vs, Vulnerability{ID: "CVE-2026-" + string(rune('A'+i)), Severity: "Critical", Package: "p", Version: "1"})
	}
	d := Evaluate(config.Rules{FailOn: "critical"}, Input{Vulnerabilities: vs}, time.Now())
	s := d.Summary()
	if !strings.HasPrefix(s, "30 vulnerabilities") || !strings.HasSuffix(s, "…") || len(s) > 200 {
		t.Fatalf("summary = %q", s)
	}
}

func TestPolicyFor(t *testing.T) {
	p := config.Policy{
		Rules: config.Rules{FailOn: "critical", DenyPackages: []string{"nc"}},
		Overrides: []config.Override{
			{Upstream: "docker.io", Rules: config.Rules{FailOn: "high"}},
			{Upstream: "docker.io", Repository: "library/*", Rules: config.Rules{DenyPackages: []string{"telnet"}}},
			{Repository: "legacy/**", Rules: config.Rules{FailOn: "none"}},
		},
	}
	r := p.For("docker.io", "library/alpine")
	if r.FailOn != "high" || strings.Join(r.DenyPackages, ",") != "nc,telnet" {
		t.Fatalf("docker.io/library/alpine rules = %+v", r)
	}
	if r := p.For("ghcr.io", "legacy/a/b"); r.FailOn != "none" || len(r.DenyPackages) != 1 {
		t.Fatalf("ghcr.io/legacy/a/b rules = %+v", r)
	}
	if r := p.For("quay.io", "x/y"); r.FailOn != "critical" {
		t.Fatalf("quay.io rules = %+v", r)
	}
	if len(p.DenyPackages) != 1 {
		t.Fatal("For modified the global rules")
	}
	if p.For("docker.io", "library/alpine").Version() == p.For("quay.io", "x/y").Version() {
		t.Fatal("different rules share a version")
	}
}

func TestEOL(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	on, off := true, false
	past := lifecycle.OS{Name: "alpine", Version: "3.20.3", Release: "3.20", EOL: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	soon := lifecycle.OS{Name: "alpine", Version: "3.22.1", Release: "3.22", EOL: time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)}
	unknown := lifecycle.OS{Name: "fedora", Version: "40"}
	cases := []struct {
		name     string
		deny     *bool
		warn     time.Duration
		os       lifecycle.OS
		pass     bool
		noteWant string
	}{
		{"past, denied", &on, 0, past, false, ""},
		{"past, not denied", &off, 0, past, true, "reached its end of life on 2026-04-01"},
		{"past, unset", nil, 0, past, true, "reached its end of life"},
		{"soon, warned", &on, 90 * 24 * time.Hour, soon, true, "within warn_eol_within"},
		{"soon, outside the warning", &on, 30 * 24 * time.Hour, soon, true, ""},
		{"unknown OS", &on, 90 * 24 * time.Hour, unknown, true, ""},
	}
	for _, c := range cases {
		r := config.Rules{FailOn: config.SeverityNone, DenyEOLOS: c.deny, WarnEOLWithin: c.warn}
		d := Evaluate(r, Input{OS: []lifecycle.OS{c.os, c.os}}, now)
		if d.Pass != c.pass {
			t.Errorf("%s: pass = %v (%+v)", c.name, d.Pass, d)
		}
		if !c.pass && (len(d.Violations) != 1 || d.Violations[0].Rule != "deny_eol_os" || !strings.Contains(d.Violations[0].Message, "alpine 3.20 reached its end of life on 2026-04-01")) {
			t.Errorf("%s: violations %+v", c.name, d.Violations)
		}
		notes := strings.Join(d.Notes, "; ")
		if (c.noteWant == "") != (notes == "") || !strings.Contains(notes, c.noteWant) {
			t.Errorf("%s: notes %q, want %q", c.name, notes, c.noteWant)
		}
	}
}

// TestPublisherEOL: the end of life an image's publisher declared is
// decided by deny_eol_os and warn_eol_within, with its own reason; an
// unreadable declaration is a note and decides nothing.
func TestPublisherEOL(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	on, off := true, false
	past := lifecycle.Publisher{EOL: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), Source: "referrer sha256:abc"}
	soon := lifecycle.Publisher{EOL: time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC), Source: "index annotation"}
	later := lifecycle.Publisher{EOL: now.Add(time.Nanosecond)}
	broken := lifecycle.Publisher{Error: `referrer sha256:abc: vnd.microsoft.artifact.lifecycle.end-of-life.date: "soon" is not an RFC 3339 date`}
	cases := []struct {
		name      string
		deny      *bool
		warn      time.Duration
		pub       lifecycle.Publisher
		violation string
		note      string
	}{
		{"past, denied", &on, 0, past, "the publisher marked this image end-of-life on 2026-11-27 (declared by referrer sha256:abc; deny_eol_os)", ""},
		{"past, not denied", &off, 0, past, "", "the publisher marked this image end-of-life on 2026-11-27 (declared by referrer sha256:abc)"},
		{"past, unset", nil, 0, past, "", "the publisher marked this image end-of-life on 2026-11-27"},
		{"a nanosecond before", &on, 0, later, "", ""},
		{"soon, warned", &on, 90 * 24 * time.Hour, soon, "", "the publisher marks this image end-of-life on 2027-01-15, within warn_eol_within"},
		{"soon, outside the warning", &on, 30 * 24 * time.Hour, soon, "", ""},
		{"unreadable", &on, 90 * 24 * time.Hour, broken, "", "publisher lifecycle metadata: referrer sha256:abc"},
		{"none", &on, 90 * 24 * time.Hour, lifecycle.Publisher{}, "", ""},
	}
	for _, c := range cases {
		r := config.Rules{FailOn: config.SeverityNone, DenyEOLOS: c.deny, WarnEOLWithin: c.warn}
		d := Evaluate(r, Input{Publisher: c.pub}, now)
		if d.Pass != (c.violation == "") {
			t.Errorf("%s: pass = %v (%+v)", c.name, d.Pass, d)
		}
		if c.violation != "" {
			if len(d.Violations) != 1 || d.Violations[0].Rule != "deny_eol_os" || d.Violations[0].Message != c.violation {
				t.Errorf("%s: violations %+v, want %q", c.name, d.Violations, c.violation)
			}
			if !strings.Contains(d.Summary(), "the publisher marked this image end-of-life on 2026-11-27") {
				t.Errorf("%s: summary %q", c.name, d.Summary())
			}
		}
		notes := strings.Join(d.Notes, "; ")
		if (c.note == "") != (notes == "") || !strings.Contains(notes, c.note) {
			t.Errorf("%s: notes %q, want %q", c.name, notes, c.note)
		}
	}
	// Base OS and publisher dates are both reported, each with its source.
	r := config.Rules{FailOn: config.SeverityNone, DenyEOLOS: &on}
	os := lifecycle.OS{Name: "alpine", Version: "3.17.2", Release: "3.17", EOL: time.Date(2024, 11, 22, 0, 0, 0, 0, time.UTC), Source: lifecycle.SourceGrypeDB}
	d := Evaluate(r, Input{OS: []lifecycle.OS{os}, Publisher: past}, now)
	if len(d.Violations) != 2 || d.Violations[0].Message != "base OS alpine 3.17 reached its end of life on 2024-11-22 (date from grype-db; deny_eol_os)" {
		t.Errorf("both: %+v", d.Violations)
	}
}
