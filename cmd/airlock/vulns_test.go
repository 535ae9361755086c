package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestPrintVulnsShowsVEX: `airlock images vulns` keeps a match a VEX
// statement suppressed, marked with the statement, next to the others.
func TestPrintVulnsShowsVEX(t *testing.T) {
	r := admin.VulnerabilityReport{
		State:  state.StateApproved,
		Policy: &state.PolicySummary{Pass: true, Version: "v1", Suppressed: []string{"CVE-1 in openssl 3.0.1-r0: not_affected: vulnerable_code_not_present (VEX /etc/vex/app.json)"}},
		Report: &gate.Report{Platforms: []gate.PlatformReport{{Platform: "linux/amd64", Matches: []scan.Match{
			{VulnID: "CVE-1", Severity: "Critical", Package: "openssl", Version: "3.0.1-r0"},
			{VulnID: "CVE-2", Severity: "Low", Package: "zlib", Version: "1.3"},
		}}}},
	}
	var b bytes.Buffer
	if err := printVulns(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	var cve1, cve2 string
	for _, l := range lines {
		switch {
		case strings.Contains(l, "CVE-1") && strings.Contains(l, "linux/amd64"):
			cve1 = l
		case strings.Contains(l, "CVE-2"):
			cve2 = l
		}
	}
	if !strings.Contains(cve1, "not_affected") || strings.Contains(cve2, "not_affected") {
		t.Errorf("rows:\n%s", out)
	}
	if !strings.Contains(out, "suppressed: CVE-1") {
		t.Errorf("no suppressed line:\n%s", out)
	}
}
