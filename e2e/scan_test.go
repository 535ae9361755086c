package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

// scanPolicy is the policy the scan tests run with: fail on critical, one
// accepted CVE that is current and one whose acceptance has expired.
const scanPolicy = `
scan:
  max_db_age: 0s
  rescan_interval: 0s
policy:
  fail_on: critical
  allow_cves:
    - id: CVE-2026-1002
      reason: "zlib is only used for tests"
      expires: 2099-12-31
    - id: CVE-2026-1003
      reason: "busybox fix was late"
      expires: 2020-01-01
`

var baseVulns = []vulndbtest.Vuln{
	{ID: "CVE-2026-1001", Severity: "Critical", Distro: "alpine:3.20", Package: "openssl", Ecosystem: "apk", Fix: "3.0.2-r0"},
	{ID: "CVE-2026-1002", Severity: "Critical", Distro: "alpine:3.20", Package: "zlib", Ecosystem: "apk", Fix: "1.3-r0"},
	{ID: "CVE-2026-1003", Severity: "Critical", Distro: "alpine:3.20", Package: "busybox", Ecosystem: "apk", Fix: "1.37.0-r0"},
	{ID: "CVE-2026-1004", Severity: "Medium", Distro: "alpine:3.20", Package: "musl", Ecosystem: "apk"},
	{ID: "CVE-2026-2001", Severity: "Critical", Distro: "debian:12", Package: "libc6", Ecosystem: "deb", Fix: "2.36-9+deb12u4"},
}

// TestScanGate runs the scan policy end to end through the real binary:
// no DB → nothing approved; `airlock db import` → clean images approved,
// vulnerable ones rejected naming the CVE, accepted CVEs pass until their
// expiry; a new DB with a new CVE revokes an approved image on rescan.
func TestScanGate(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	clean := []registrytest.Pkg{{Name: "openssl", Version: "3.0.2-r0"}, {Name: "zlib", Version: "1.3-r0"}, {Name: "busybox", Version: "1.37.0-r0"}, {Name: "musl", Version: "1.2.5-r0"}}
	images := map[string][]registrytest.Pkg{
		"scan/clean":       clean,
		"scan/vulnerable":  {{Name: "openssl", Version: "3.0.1-r0"}, {Name: "musl", Version: "1.2.5-r0"}},
		"scan/allowlisted": {{Name: "zlib", Version: "1.2.13-r0"}},
		"scan/expired":     {{Name: "busybox", Version: "1.36.1-r0"}},
	}
	digests := map[string]string{}
	for repo, pkgs := range images {
		digests[repo] = up.PushImage(t, repo+":1", registrytest.AlpineImage(t, "3.20.3", pkgs...)).String()
	}
	digests["scan/debian"] = up.PushImage(t, "scan/debian:1", registrytest.DebianImage(t, "12", registrytest.Pkg{Name: "libc6", Version: "2.36-9+deb12u1"})).String()
	key := func(repo string) string { return "docker.io/" + repo + "@" + digests[repo] }

	al := startAirlock(t, up, options{Policy: "scan", Extra: scanPolicy})

	// No DB: the scan step fails with a reason that says so, and the
	// client's DENIED names it.
	_, err := pull(al.Ref(t, "scan/clean:1"))
	assertDenied(t, "pull without a DB", err, "quarantine")
	img := al.waitState(t, key("scan/clean"), 60*time.Second, "failed")
	if !strings.Contains(img.Reason, "no vulnerability database") {
		t.Fatalf("reason without a DB = %q", img.Reason)
	}
	_, err = pull(al.Ref(t, "scan/clean:1"))
	assertDenied(t, "pull of the failed image", err, "no vulnerability database")

	// Import a DB with the CLI: the failed image is queued again and approved.
	out, err := al.cli(t, "db", "import", vulndbtest.Archive(t, baseVulns...))
	if err != nil || !strings.Contains(out, "imported vulnerability DB") {
		t.Fatalf("airlock db import: %v\n%s", err, out)
	}
	if out, err := al.cli(t, "db", "status"); err != nil || !strings.Contains(out, "schema_version") {
		t.Fatalf("airlock db status: %v\n%s", err, out)
	}
	al.waitState(t, key("scan/clean"), 60*time.Second, "approved")
	mustPull(t, al.Ref(t, "scan/clean:1"))

	// Every other image: pulled once to start its pipeline, then judged.
	for repo := range digests {
		if repo != "scan/clean" {
			_, _ = pull(al.Ref(t, repo+":1"))
		}
	}
	cases := []struct {
		repo, state string
		want        []string // in the DENIED message
	}{
		{"scan/vulnerable", "rejected", []string{"rejected by policy", "CVE-2026-1001"}},
		{"scan/allowlisted", "approved", nil},
		{"scan/expired", "rejected", []string{"CVE-2026-1003"}},
		{"scan/debian", "rejected", []string{"CVE-2026-2001"}},
	}
	for _, c := range cases {
		img := al.waitState(t, key(c.repo), 60*time.Second, "approved", "rejected")
		if img.State != c.state {
			t.Errorf("%s: state %s (%s), want %s", c.repo, img.State, img.Reason, c.state)
			continue
		}
		_, err := pull(al.Ref(t, c.repo+":1"))
		if c.state == "approved" {
			if err != nil {
				t.Errorf("%s: approved but pull failed: %v", c.repo, err)
			}
			continue
		}
		assertDenied(t, c.repo, err, c.want...)
	}

	// Admin views: the vulnerable image's report, where CVE-2026-1001 is, the SBOM.
	out, err = al.cli(t, "images", "vulns", key("scan/vulnerable"))
	if err != nil || !strings.Contains(out, "CVE-2026-1001") || !strings.Contains(out, "Critical") || !strings.Contains(out, "3.0.2-r0") {
		t.Fatalf("airlock images vulns: %v\n%s", err, out)
	}
	out, err = al.cli(t, "cve", "CVE-2026-1001")
	if err != nil || !strings.Contains(out, key("scan/vulnerable")) || strings.Contains(out, key("scan/clean")) {
		t.Fatalf("airlock cve: %v\n%s", err, out)
	}
	out, err = al.cli(t, "images", "sbom", "docker.io/scan/clean:1")
	if err != nil {
		t.Fatalf("airlock images sbom: %v\n%s", err, out)
	}
	var spdx struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name string `json:"name"`
		} `json:"packages"`
	}
	if err := json.Unmarshal([]byte(out), &spdx); err != nil || !strings.HasPrefix(spdx.SPDXVersion, "SPDX-2") || !strings.Contains(out, `"openssl"`) {
		t.Fatalf("SBOM is not an SPDX document listing openssl: %v\n%.400s", err, out)
	}
	rep := al.admin(t, http.MethodGet, "/api/v1/images/"+key("scan/allowlisted")+"/vulnerabilities", nil)
	if rep.Status != 200 || !strings.Contains(string(rep.Body), "zlib is only used for tests") {
		t.Fatalf("allowlisted image report does not record the acceptance: %d %s", rep.Status, rep.Body)
	}

	// A new DB with a new critical CVE in musl: every approved image is
	// rescanned, the clean one now fails and is revoked, blobs included.
	newDB := append(append([]vulndbtest.Vuln(nil), baseVulns...),
		vulndbtest.Vuln{ID: "CVE-2026-1999", Severity: "Critical", Distro: "alpine:3.20", Package: "musl", Ecosystem: "apk", Fix: "1.2.6-r0"})
	if out, err := al.cli(t, "db", "import", vulndbtest.Archive(t, newDB...)); err != nil || !strings.Contains(out, "rescans") {
		t.Fatalf("second import: %v\n%s", err, out)
	}
	revoked := al.waitState(t, key("scan/clean"), 60*time.Second, "revoked")
	if !strings.Contains(revoked.Reason, "CVE-2026-1999") {
		t.Fatalf("revoked reason = %q, want it to name CVE-2026-1999", revoked.Reason)
	}
	_, err = pull(al.Ref(t, "scan/clean:1"))
	assertDenied(t, "revoked after rescan", err, "revoked", "CVE-2026-1999")
	for _, b := range mustPull(t, up.Ref(t, "scan/clean:1")).blobs() {
		assertBlobRefused(t, al, "scan/clean", b)
	}
	// The allowlisted image has no musl: it survives the rescan.
	if d, _ := al.image(t, key("scan/allowlisted")); d.Image.State != "approved" {
		t.Fatalf("allowlisted image after rescan: %s (%s)", d.Image.State, d.Image.Reason)
	}
	found := false
	for _, e := range al.audit(t, key("scan/clean")) {
		found = found || (e.To == "revoked" && e.Actor == "pipeline")
	}
	if !found {
		t.Fatal("audit log has no revocation by the pipeline")
	}
}

// TestScanStaleDB: a DB older than scan.max_db_age approves nothing, and
// the reason says why.
func TestScanStaleDB(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	d := up.PushImage(t, "scan/stale:1", registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "musl", Version: "1.2.5-r0"}))
	al := startAirlock(t, up, options{Policy: "scan", Extra: "scan:\n  max_db_age: 24h\n"})
	old := vulndbtest.ArchiveAt(t, time.Now().Add(-72*time.Hour), baseVulns...)
	if out, err := al.cli(t, "db", "import", old); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	_, err := pull(al.Ref(t, "scan/stale:1"))
	assertDenied(t, "pull with a stale DB", err, "quarantine")
	img := al.waitState(t, "docker.io/scan/stale@"+d.String(), 60*time.Second, "failed")
	if !strings.Contains(img.Reason, "stale") {
		t.Fatalf("reason with a stale DB = %q", img.Reason)
	}
}
