package console

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/state"
)

// The hostile strings an upstream publisher puts in an image's SBOM and
// scan results: they must reach the page only as text.
const (
	hostilePackage = `<script>alert(1)</script>`
	hostileLicence = `"><img src=x onerror=alert(1)>`
	hostileDesc    = `<img src=x onerror=alert(2)>`
	hostilePath    = `/usr/bin/<b>evil</b>`
	hostileAgent   = `containerd/2.0 <i>ua</i>`
)

// pagesEnv is the environment of the pages tests: everything the pages
// read (scan reports and SBOMs in a content store, a real scanner whose
// DB is imported through the console, the watch scheduler, an events
// outbox with one endpoint) and a gate needing two approvers; extra
// adds options of the admin API.
func pagesEnv(t *testing.T, extra ...admin.Option) *testEnv {
	t.Helper()
	return newEnv(t, envOptions{gate: config.Gate{ApprovalsRequired: 2}, scanning: true, watches: true, webhook: true, admin: extra})
}

// putBlob stores b in the content store and returns its digest.
func (e *testEnv) putBlob(t *testing.T, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if err := e.cs.PutBytes(context.Background(), d, b); err != nil {
		t.Fatal(err)
	}
	return d
}

// scenario is the images of the pages tests.
type scenario struct {
	// old is approved and was tag 1.0; scanned is tag 1.0 now upstream,
	// scanned with hostile strings, awaiting approval; other is rejected.
	old, scanned, other state.Ref
	spdx                []byte
}

// putScenario puts the scenario's images in the store. The scanned
// image's report has four vulnerabilities (Critical fixed, High not
// fixed, Medium not fixed and suppressed by VEX, Low fixed) and four
// packages, one named hostilePackage with the licence hostileLicence.
func (e *testEnv) putScenario(t *testing.T) scenario {
	t.Helper()
	var s scenario
	s.old = e.image(t, imageSpec{repo: "library/app", upstreamTag: "1.0", seed: "app-old", state: state.StateApproved})
	now := time.Now().UTC()
	s.spdx = []byte(`{"spdxVersion":"SPDX-2.3","name":"app","packages":[{"name":"` + strings.ReplaceAll(hostilePackage, "/", `\/`) + `"}]}`)
	spdxDigest := e.putBlob(t, s.spdx)
	newDigest := digest.FromString("app-new")
	rep := gate.Report{
		Image: "docker.io/library/app@" + string(newDigest), ScannedAt: now,
		DB: scan.DBStatus{Built: now.Add(-time.Hour), SchemaVersion: "v6.0.2"},
		Platforms: []gate.PlatformReport{{
			Manifest: newDigest, Platform: "linux/amd64", Distro: "alpine 3.20", SPDX: spdxDigest, SyftJSON: spdxDigest,
			Packages: []scan.Package{
				{Name: hostilePackage, Version: "1.0", Type: "npm", Licenses: []string{hostileLicence}},
				{Name: "busybox", Version: "1.36.1-r0", Type: "apk", Licenses: []string{"GPL-2.0-only"}},
				{Name: "openssl", Version: "3.1.0-r0", Type: "apk", Licenses: []string{"Apache-2.0"}},
				{Name: "zlib", Version: "1.3-r0", Type: "apk", Licenses: []string{"Zlib"}},
			},
			Matches: []scan.Match{
				{VulnID: "CVE-2026-1000", Severity: "Critical", Package: "openssl", Version: "3.1.0-r0", Type: "apk", FixedIn: []string{"3.1.1-r0"}, FixState: "fixed"},
				{VulnID: "CVE-2026-2000", Severity: "High", Package: "busybox", Version: "1.36.1-r0", Type: "apk", FixState: "not-fixed"},
				{VulnID: "CVE-2026-4000", Severity: "Medium", Package: hostilePackage, Version: "1.0", Type: "npm", FixState: "not-fixed", Description: hostileDesc},
				{VulnID: "CVE-2026-3000", Severity: "Low", Package: "zlib", Version: "1.3-r0", Type: "apk", FixedIn: []string{"1.3-r1"}, FixState: "fixed"},
			},
		}},
	}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	repDigest := e.putBlob(t, raw)
	s.scanned = e.image(t, imageSpec{repo: "library/app", upstreamTag: "1.0", seed: "app-new", state: state.StateAwaitingApproval,
		reason: "set by the test: awaiting-approval", mutate: func(img *state.Image) {
			img.Scan = &state.ScanSummary{ScannedAt: now, Report: repDigest, DBBuilt: rep.DB.Built, Packages: 4,
				Severities: map[string]int{"Critical": 1, "High": 1, "Medium": 1, "Low": 1}}
			img.Policy = &state.PolicySummary{Pass: true, Version: "policy-7", Decided: now,
				Suppressed: []string{"CVE-2026-4000 in " + hostilePackage + " 1.0: not_affected (VEX policy.vex)"},
				BaseOS:     []state.BaseOS{{Name: "alpine", Version: "3.20", EOL: now.AddDate(1, 0, 0), EOLSource: "airlock-table"}}}
			img.Malware = &state.MalwareSummary{ScannedAt: now, Engine: "ClamAV 1.4.1/27400", Layers: 2, Files: 40, FindingCount: 1,
				Findings: []state.MalwareFinding{{Layer: digest.FromString("layer"), Path: hostilePath, Signature: "Eicar-Test-Signature"}}}
			img.Verification = &state.Verification{Mode: "enforce", Verified: true, Signatures: 1, Signer: "publisher@example.com", Format: "cosign"}
			img.Signed = &state.Signed{SignedAt: now, Key: "SHA256:airlock-key",
				Sig:       state.Descriptor{MediaType: ociManifest, Digest: digest.FromString("sig"), Size: 300},
				Att:       state.Descriptor{MediaType: ociManifest, Digest: digest.FromString("att"), Size: 900},
				Referrers: []state.Descriptor{{MediaType: ociManifest, ArtifactType: "application/spdx+json", Digest: digest.FromString("ref"), Size: 500, Annotations: map[string]string{"org.example.note": hostileDesc}}}}
			img.Steps = []state.StepResult{{Step: "fetch", Status: "passed", Detail: "2 layers", Started: now, Finished: now}}
		}})
	if err := e.store.SetVulns(s.scanned, map[string]state.VulnRef{
		"CVE-2026-1000": {Severity: "Critical", Packages: []string{"openssl"}},
		"CVE-2026-2000": {Severity: "High", Packages: []string{"busybox"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RecordPulls([]state.PullRecord{{Ref: s.scanned, Pulls: 3, Last: now,
		Pullers: []state.Puller{{Addr: "10.1.2.3", UserAgent: hostileAgent, Last: now, Pulls: 3}}}}, 10); err != nil {
		t.Fatal(err)
	}
	s.other = e.image(t, imageSpec{repo: "library/other", seed: "other", state: state.StateRejected})
	return s
}

// upload posts a multipart form: the csrf field (when csrf is not
// empty), then the file as the part "archive".
func (b *browser) upload(t *testing.T, path, csrf, file string) page {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if csrf != "" {
		if err := mw.WriteField("csrf", csrf); err != nil {
			t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("archive", filepath.Base(file))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(fw, f); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(t, req)
}

var vulnRowID = regexp.MustCompile(`<tr class="vuln"[^>]*>\s*<td><code>([^<]+)</code>`)

// vulnIDs lists the vulnerability rows of an image page, in order.
func (p page) vulnIDs() []string {
	var out []string
	for _, m := range vulnRowID.FindAllStringSubmatch(p.body, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestPagesRenderForViewer: every page answers a viewer 200 and shows
// its data; the tokens page is the API's 403 and is not in the menu.
func TestPagesRenderForViewer(t *testing.T) {
	e := pagesEnv(t)
	s := e.putScenario(t)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/ui/images", []string{`id="images"`, `data-image="` + s.old.String() + `"`, `data-image="` + s.scanned.String() + `"`, `data-state-for="` + s.other.String() + `"`, "1 Critical, 1 High, 1 Medium, 1 Low"}},
		{"/ui/images/" + s.scanned.String(), []string{`id="state"`, `data-state-for="` + s.scanned.String() + `"`, "awaiting-approval", "ClamAV 1.4.1/27400", "publisher@example.com", "SHA256:airlock-key", "10.1.2.3", "policy-7"}},
		{"/ui/cve?id=CVE-2026-1000", []string{`id="cve-images"`, s.scanned.String(), "openssl"}},
		{"/ui/db", []string{`id="db-error"`}},
		{"/ui/watches", []string{`id="watches-empty"`}},
		{"/ui/events", []string{`data-endpoint="audit-hook"`, "hooks.invalid", s.scanned.String()}},
	} {
		a := viewer.get(t, tc.path)
		a.want(t, tc.path, http.StatusOK)
		a.has(t, tc.path, tc.want...)
		a.uniqueIDs(t, tc.path)
		// A viewer gets no forms that change anything but signing out.
		a.lacks(t, tc.path, `href="/ui/tokens"`, `id="actions"`, `id="db-import"`, `id="add-watch"`)
	}
	a := viewer.get(t, "/ui/tokens")
	a.want(t, "viewer's /ui/tokens", http.StatusForbidden)
	a.has(t, "viewer's /ui/tokens", `id="error-message"`, "needs admin")
	viewer.get(t, "/ui/tokens/revoke?name=vera").want(t, "viewer's revoke page", http.StatusForbidden)
}

// TestImagePage: the image page's sections, the tags and what each
// serves, the approvals pending and, for approvers only, the actions.
func TestImagePage(t *testing.T) {
	e := pagesEnv(t)
	s := e.putScenario(t)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	alice := e.browser(t).signIn(t, e.token(t, "alice", admin.RoleApprover))

	// The first of two approvals: pending, shown on the page.
	resp := e.invoke(t, admin.Identity{Name: "alice", Role: admin.RoleApprover}, http.MethodPost, "/api/v1/approve",
		admin.ActionRequest{Image: s.scanned.String(), Reason: "looks fine"})
	if resp.Status != http.StatusAccepted {
		t.Fatalf("first approval: %d %s", resp.Status, resp.Body)
	}

	page := "/ui/images/" + s.scanned.String()
	a := viewer.get(t, page)
	a.want(t, "image page", http.StatusOK)
	for _, id := range []string{"summary", "timeline", "tags", "platforms", "vulnerabilities", "sbom", "malware", "signatures", "attestations", "pulls", "approvals"} {
		a.has(t, "image page", `<section id="`+id+`"`)
	}
	a.has(t, "image page",
		`<h1>Image <span class="digest">`+s.scanned.String()+`</span></h1>`,
		`id="vulns"`, `id="packages"`, `id="v-severity"`, `id="v-fixed"`, `id="v-vex"`,
		`<tr class="approval"><td>alice</td>`, "An approval needs 2 different approvers; 1 pending.",
		// The tag's upstream digest is this one; a pull gets the old one.
		`<tr data-tag="1.0">`, "the tag's digest upstream, not served", `href="/ui/images/`+s.old.String()+`"`,
		"linux/amd64", "alpine 3.20",
		// Timeline: the request and the pipeline's transition.
		"pending → awaiting-approval", "set by the test: awaiting-approval",
		`/sbom?format=spdx&amp;platform=`)
	a.lacks(t, "viewer's image page", `id="actions"`, `id="approve"`)
	a.uniqueIDs(t, "image page")

	b := alice.get(t, page)
	b.want(t, "approver's image page", http.StatusOK)
	b.uniqueIDs(t, "approver's image page")
	b.has(t, "approver's image page", `<section id="actions"`,
		`id="approve" href="/ui/images/`+s.scanned.String()+`/approve"`,
		`id="revoke" href="/ui/images/`+s.scanned.String()+`/revoke"`,
		`id="rescan" href="/ui/images/`+s.scanned.String()+`/rescan"`)

	// The old digest: tag 1.0 serves it.
	o := viewer.get(t, "/ui/images/"+s.old.String())
	o.want(t, "old image page", http.StatusOK)
	o.has(t, "old image page", "served for this tag", "this digest", `id="report-error"`, "has not been scanned")

	// By tag: the page of the digest the tag points to upstream.
	tp := viewer.get(t, "/ui/images/docker.io/library/app:1.0")
	tp.want(t, "image page by tag", http.StatusOK)
	tp.has(t, "image page by tag", `data-state-for="`+s.scanned.String()+`"`, "Requested as <code>docker.io/library/app:1.0</code>")

	// After a decision: the notice, its message as text.
	n := viewer.get(t, page+"?done=approve&msg="+url.QueryEscape("approval 1 of 2 recorded <b>x</b>"))
	n.has(t, "notice", `<p id="notice" class="notice" role="status">approve recorded: state awaiting-approval: <span id="notice-msg">approval 1 of 2 recorded &lt;b&gt;x&lt;/b&gt;</span></p>`)
	viewer.get(t, page+"?done=nonsense&msg=hi").lacks(t, "unknown done", `id="notice"`)

	// The SBOM download: the API's SPDX document, as an attachment.
	d := viewer.get(t, page+"/sbom?format=spdx")
	d.want(t, "SBOM download", http.StatusOK)
	if d.body != string(s.spdx) || d.header.Get("Content-Type") != "application/json" || !strings.HasPrefix(d.header.Get("Content-Disposition"), "attachment;") {
		t.Errorf("SBOM download: %s %q: %s", d.header.Get("Content-Type"), d.header.Get("Content-Disposition"), d.body)
	}

	// Unknown images are the API's 404, a bad name its 400.
	for path, status := range map[string]int{
		"/ui/images/docker.io/library/app@sha256:" + strings.Repeat("0", 64):           http.StatusNotFound,
		"/ui/images/docker.io/library/app:nope":                                        http.StatusNotFound,
		"/ui/images/docker.io/library/app@sha256:" + strings.Repeat("0", 64) + "/sbom": http.StatusNotFound,
		"/ui/images/nonsense": http.StatusBadRequest,
	} {
		a := viewer.get(t, path)
		a.want(t, path, status)
		a.has(t, path, `id="error-message"`)
	}
}

// TestHostileSBOM: package names, licences, descriptions, paths and user
// agents from the image reach the page only escaped, and the page has
// no script but the console's own.
func TestHostileSBOM(t *testing.T) {
	e := pagesEnv(t)
	s := e.putScenario(t)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	for _, path := range []string{
		"/ui/images/" + s.scanned.String(),
		"/ui/images/" + s.scanned.String() + "?pkg=" + url.QueryEscape(hostilePackage) + "&vex=suppressed",
		"/ui/cve?id=CVE-2026-4000",
		"/ui/events",
	} {
		a := viewer.get(t, path)
		a.want(t, path, http.StatusOK)
		a.lacks(t, path, hostilePackage, hostileLicence, hostileDesc, hostilePath, hostileAgent, "<img", "onerror=alert(1)>")
		if n := strings.Count(a.body, "<script"); n != 2 {
			t.Errorf("%s: %d script elements, want the console's 2", path, n)
		}
	}
	a := viewer.get(t, "/ui/images/"+s.scanned.String())
	a.has(t, "image page",
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`<span class="licence">&#34;&gt;&lt;img src=x onerror=alert(1)&gt;</span>`,
		`&lt;img src=x onerror=alert(2)&gt;`,
		`/usr/bin/&lt;b&gt;evil&lt;/b&gt;`,
		`containerd/2.0 &lt;i&gt;ua&lt;/i&gt;`)
	// A hostile value in a query is text too.
	q := viewer.get(t, "/ui/images/"+s.scanned.String()+"?pkg="+url.QueryEscape(`"><script>x</script>`))
	q.lacks(t, "search echo", `"><script>x</script>`)
	q.has(t, "search echo", `value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"`)
	c := viewer.get(t, "/ui/cve?id="+url.QueryEscape(`<script>x</script>`))
	c.want(t, "hostile CVE id", http.StatusBadRequest)
	c.lacks(t, "hostile CVE id", `<script>x</script>`)
}

// TestVulnerabilityFilters: the server-side filters and sorting of the
// vulnerability table and the package search.
func TestVulnerabilityFilters(t *testing.T) {
	e := pagesEnv(t)
	s := e.putScenario(t)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	page := "/ui/images/" + s.scanned.String()
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"CVE-2026-1000", "CVE-2026-2000", "CVE-2026-4000", "CVE-2026-3000"}},
		{"severity=High", []string{"CVE-2026-1000", "CVE-2026-2000"}},
		{"severity=Medium", []string{"CVE-2026-1000", "CVE-2026-2000", "CVE-2026-4000"}},
		{"fixed=fixed", []string{"CVE-2026-1000", "CVE-2026-3000"}},
		{"fixed=not-fixed", []string{"CVE-2026-2000", "CVE-2026-4000"}},
		{"vex=suppressed", []string{"CVE-2026-4000"}},
		{"vex=affected", []string{"CVE-2026-1000", "CVE-2026-2000", "CVE-2026-3000"}},
		{"severity=High&fixed=not-fixed", []string{"CVE-2026-2000"}},
		{"severity=Critical&vex=suppressed", nil},
		{"vsort=id", []string{"CVE-2026-1000", "CVE-2026-2000", "CVE-2026-3000", "CVE-2026-4000"}},
		{"vsort=-id", []string{"CVE-2026-4000", "CVE-2026-3000", "CVE-2026-2000", "CVE-2026-1000"}},
		{"vsort=severity", []string{"CVE-2026-3000", "CVE-2026-4000", "CVE-2026-2000", "CVE-2026-1000"}},
		{"vsort=package", []string{"CVE-2026-4000", "CVE-2026-2000", "CVE-2026-1000", "CVE-2026-3000"}},
		// Unknown values are ignored, not errors.
		{"severity=bogus&fixed=maybe&vex=x&vsort=evil", []string{"CVE-2026-1000", "CVE-2026-2000", "CVE-2026-4000", "CVE-2026-3000"}},
	} {
		a := viewer.get(t, page+"?"+tc.query)
		a.want(t, tc.query, http.StatusOK)
		if got := a.vulnIDs(); !slices.Equal(got, tc.want) {
			t.Errorf("?%s: rows %v, want %v", tc.query, got, tc.want)
		}
	}
	a := viewer.get(t, page+"?severity=High")
	a.has(t, "filtered page", `<option value="High" selected>High</option>`, "2 of 4 shown", `data-severity="Critical"`)
	a.lacks(t, "filtered page", `data-severity="Low"`)
	// The sort buttons submit the filter form with the next sort.
	s2 := viewer.get(t, page+"?vsort=id")
	s2.has(t, "sorted page", `<th scope="col" aria-sort="ascending"><button class="sort" type="submit" form="v-filters" name="vsort" value="-id">Vulnerability</button></th>`)

	p := viewer.get(t, page+"?pkg=OPENSSL")
	p.has(t, "package search", "1 of 4 packages", "Apache-2.0")
	p.lacks(t, "package search", "GPL-2.0-only")
}

// TestPackageTableCap: an SBOM larger than the table shows its first
// rows and says so.
func TestPackageTableCap(t *testing.T) {
	pr := gate.PlatformReport{Manifest: digest.FromString("m")}
	for i := range maxPackageRows + 5 {
		pr.Packages = append(pr.Packages, scan.Package{Name: "pkg-" + strconv.Itoa(i), Version: "1.0", Type: "npm"})
	}
	tab := buildPackages(&gate.Report{Platforms: []gate.PlatformReport{pr}}, url.Values{})
	if len(tab.Rows) != maxPackageRows || tab.Matching != maxPackageRows+5 || !tab.Capped() {
		t.Fatalf("rows %d, matching %d, capped %v", len(tab.Rows), tab.Matching, tab.Capped())
	}
}

// TestTokensPage: an admin creates a token, sees its secret once, the
// token signs in, and revoking it (after a confirmation) ends that
// session; refusals keep the form.
func TestTokensPage(t *testing.T) {
	e := pagesEnv(t)
	root := e.browser(t).signIn(t, bootstrapToken)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))

	a := root.get(t, "/ui/tokens")
	a.want(t, "tokens page", http.StatusOK)
	a.has(t, "tokens page", `<tr data-token="vera">`, `id="create-token"`, `href="/ui/tokens/revoke?name=vera"`, `href="/ui/tokens"`)
	a.lacks(t, "tokens page", `id="new-token"`)
	a.uniqueIDs(t, "tokens page")

	c := root.form(t, "/ui/tokens", url.Values{"name": {"robot"}, "role": {"viewer"}, "expires": {"1d"}})
	c.want(t, "create token", http.StatusOK)
	m := regexp.MustCompile(`<code id="new-token" class="secret">([^<]+)</code>`).FindStringSubmatch(c.body)
	if m == nil || !strings.HasPrefix(m[1], admin.TokenPrefix) {
		t.Fatalf("no secret in code#new-token: %s", c.body)
	}
	secret := m[1]
	c.has(t, "create token", "shown this once", `<tr data-token="robot">`)
	c.uniqueIDs(t, "create token")
	again := root.get(t, "/ui/tokens")
	again.lacks(t, "tokens page after creation", secret, `id="new-token"`)

	robot := e.browser(t).signIn(t, secret)
	r := robot.get(t, "/ui/images")
	r.want(t, "robot's images page", http.StatusOK)
	r.has(t, "robot's images page", `<strong id="me" data-role="viewer">robot</strong>`)

	dup := root.form(t, "/ui/tokens", url.Values{"name": {"robot"}, "role": {"admin"}})
	dup.want(t, "duplicate token", http.StatusConflict)
	dup.has(t, "duplicate token", `id="error-message"`, `value="robot"`, `<option value="admin" selected>`)
	root.form(t, "/ui/tokens", url.Values{"name": {"Not A Name"}, "role": {"viewer"}}).want(t, "bad name", http.StatusBadRequest)
	root.form(t, "/ui/tokens", url.Values{"name": {"x"}, "role": {"viewer"}, "expires": {"soon"}}).want(t, "bad expiry", http.StatusBadRequest)

	// Refused to a viewer (the API's 403) and without the CSRF token.
	viewer.form(t, "/ui/tokens", url.Values{"name": {"sneaky"}, "role": {"admin"}}).want(t, "viewer creates a token", http.StatusForbidden)
	root.post(t, "/ui/tokens", url.Values{"name": {"sneaky"}, "role": {"admin"}}, nil).want(t, "no CSRF token", http.StatusForbidden)
	list := root.get(t, "/ui/tokens")
	list.lacks(t, "after refusals", "sneaky")

	// Revoke: a confirmation first, then the session signed in with it ends.
	conf := root.get(t, "/ui/tokens/revoke?name=robot")
	conf.want(t, "revoke confirmation", http.StatusOK)
	conf.has(t, "revoke confirmation", `id="confirm-form"`, `name="name" value="robot"`, `id="confirm-remove"`)
	root.get(t, "/ui/tokens/revoke?name=nobody").want(t, "revoke unknown", http.StatusNotFound)
	viewer.form(t, "/ui/tokens/revoke", url.Values{"name": {"robot"}}).want(t, "viewer revokes", http.StatusForbidden)
	rv := root.form(t, "/ui/tokens/revoke", url.Values{"name": {"robot"}})
	rv.want(t, "revoke", http.StatusSeeOther)
	if loc := rv.header.Get("Location"); loc != "/ui/tokens?done=revoked" {
		t.Fatalf("revoke: Location %q", loc)
	}
	root.get(t, "/ui/tokens?done=revoked").has(t, "after revoke", `id="notice"`, `<span class="token-revoked">revoked</span>`)
	if a := robot.get(t, "/ui/images"); a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/login" {
		t.Fatalf("revoked token's session: %d %s", a.status, a.header.Get("Location"))
	}
}

// TestSettingsPage: an admin sees the running configuration without its
// secrets (and a Settings link); a viewer gets neither (the API's 403).
func TestSettingsPage(t *testing.T) {
	e := pagesEnv(t)
	root := e.browser(t).signIn(t, bootstrapToken)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))

	p := root.get(t, "/ui/settings")
	p.want(t, "settings page", http.StatusOK)
	p.has(t, "settings page", `<pre id="settings">`, "approvals_required: 1", "token: REDACTED", `href="/ui/settings" aria-current="page"`)
	p.lacks(t, "settings page", "hunter2")
	p.uniqueIDs(t, "settings page")
	viewer.get(t, "/ui/settings").want(t, "viewer's settings page", http.StatusForbidden)
	viewer.get(t, "/ui/").lacks(t, "viewer's navigation", `href="/ui/settings"`)
}

// TestDBPage: the DB status, and an admin's import of a real grype
// database streamed through the console to the API; refusals import
// nothing.
func TestDBPage(t *testing.T) {
	e := pagesEnv(t)
	root := e.browser(t).signIn(t, bootstrapToken)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	archive := vulndbtest.Archive(t, vulndbtest.Vuln{ID: "CVE-2026-1000", Severity: "Critical", Distro: "alpine:3.20", Package: "openssl", Ecosystem: "apk", Fix: "3.1.1-r0"})

	a := root.get(t, "/ui/db")
	a.want(t, "db page", http.StatusOK)
	a.has(t, "db page", `id="db-error"`, `id="db-import"`, `enctype="multipart/form-data"`, `id="archive"`)
	a.uniqueIDs(t, "db page")

	garbage := filepath.Join(t.TempDir(), "db.tar.gz")
	if err := os.WriteFile(garbage, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		who    *browser
		csrf   string
		file   string
		status int
	}{
		{"no CSRF token", root, "", archive, http.StatusForbidden},
		{"wrong CSRF token", root, "forged", archive, http.StatusForbidden},
		{"viewer", viewer, viewer.csrf, archive, http.StatusForbidden},
		{"not a database", root, root.csrf, garbage, http.StatusBadRequest},
	} {
		a := tc.who.upload(t, "/ui/db/import", tc.csrf, tc.file)
		a.want(t, tc.name, tc.status)
		a.has(t, tc.name, `id="error-message"`)
		root.get(t, "/ui/db").has(t, tc.name+": still no DB", `id="db-error"`)
	}

	up := root.upload(t, "/ui/db/import", root.csrf, archive)
	up.want(t, "import", http.StatusSeeOther)
	if loc := up.header.Get("Location"); !strings.HasPrefix(loc, "/ui/db?done=import") {
		t.Fatalf("import: Location %q", loc)
	}
	after := viewer.get(t, "/ui/db?done=import&rescans=0&retries=0")
	after.want(t, "db page after import", http.StatusOK)
	after.has(t, "db page after import", `id="db-status"`, `id="notice"`, "v6.")
	after.lacks(t, "viewer's db page", `id="db-import"`)
}

// TestDBUploadBound: the upload reaches the API as a stream that the
// API bounds (scan.db_max_size): too large is the API's 413, and the
// installed database stays as it was.
func TestDBUploadBound(t *testing.T) {
	e := pagesEnv(t, admin.WithDBMaxSize(4<<10))
	root := e.browser(t).signIn(t, bootstrapToken)
	big := filepath.Join(t.TempDir(), "db.tar.gz")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	a := root.upload(t, "/ui/db/import", root.csrf, big)
	a.want(t, "oversized upload", http.StatusRequestEntityTooLarge)
	a.has(t, "oversized upload", `id="error-message"`, "larger than the import limit")
	root.get(t, "/ui/db").has(t, "after the refused upload", `id="db-error"`)
}

// TestWatchesPage: an admin adds a watch (a refused one keeps the
// form) and removes it after a confirmation; a viewer only reads.
func TestWatchesPage(t *testing.T) {
	e := pagesEnv(t)
	root := e.browser(t).signIn(t, bootstrapToken)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))

	bad := root.form(t, "/ui/watches", url.Values{"image": {"docker.io/library/alpine"}, "tags": {"3.*"}, "interval": {"often"}})
	bad.want(t, "bad interval", http.StatusBadRequest)
	bad.has(t, "bad interval", `id="error-message"`, `value="docker.io/library/alpine"`, `value="often"`)
	bad.uniqueIDs(t, "bad interval")
	viewer.form(t, "/ui/watches", url.Values{"image": {"docker.io/library/alpine"}, "tags": {"3.*"}}).want(t, "viewer adds", http.StatusForbidden)

	add := root.form(t, "/ui/watches", url.Values{"image": {"docker.io/library/alpine"}, "tags": {"3.*\r\nregex:^edge-[0-9]+$\n"}, "interval": {"2h"}, "max_new_per_run": {"3"}})
	add.want(t, "add watch", http.StatusSeeOther)
	list := viewer.get(t, "/ui/watches")
	list.want(t, "watches page", http.StatusOK)
	list.has(t, "watches page", `<tr data-watch="docker.io/library/alpine">`, "<code>3.*</code>, <code>regex:^edge-[0-9]&#43;$</code>", "2h0m0s", "at most 3 new a run", "api, by admin")
	list.lacks(t, "viewer's watches page", "Remove…", `id="add-watch"`)

	conf := root.get(t, "/ui/watches/remove?image=docker.io%2Flibrary%2Falpine")
	conf.want(t, "remove confirmation", http.StatusOK)
	conf.has(t, "remove confirmation", `id="confirm-form"`, `name="image" value="docker.io/library/alpine"`)
	viewer.form(t, "/ui/watches/remove", url.Values{"image": {"docker.io/library/alpine"}}).want(t, "viewer removes", http.StatusForbidden)
	root.form(t, "/ui/watches/remove", url.Values{"image": {"docker.io/library/alpine"}}).want(t, "remove", http.StatusSeeOther)
	gone := root.get(t, "/ui/watches?done=removed")
	gone.has(t, "after removal", `id="notice"`, `id="watches-empty"`)
	root.form(t, "/ui/watches/remove", url.Values{"image": {"docker.io/library/alpine"}}).want(t, "remove again", http.StatusNotFound)
}

// TestCVEPage: where a vulnerability is, in any case of "cve-".
func TestCVEPage(t *testing.T) {
	e := pagesEnv(t)
	s := e.putScenario(t)
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	a := viewer.get(t, "/ui/cve?id=cve-2026-2000")
	a.want(t, "lower case id", http.StatusOK)
	a.has(t, "lower case id", `value="CVE-2026-2000"`, `data-image="`+s.scanned.String()+`"`, "busybox", "Images affected by <code>CVE-2026-2000</code>: 1.")
	n := viewer.get(t, "/ui/cve?id=CVE-2099-0001")
	n.want(t, "unknown id", http.StatusOK)
	n.has(t, "unknown id", `id="cve-none"`)
	viewer.get(t, "/ui/cve").has(t, "empty form", `<input id="cve" name="id"`)
}
