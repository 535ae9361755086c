package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// conformancePkg is the OCI distribution-spec conformance suite. It is a
// `tool` in go.mod, so the version is pinned there and `go build` of it
// works offline from the module cache.
const conformancePkg = "github.com/opencontainers/distribution-spec/conformance"

// conformanceRepo is the repository the suite reads (its OCI_REPO1). It has
// two path components, so the docker.io upstream adds no library/ prefix.
const conformanceRepo = "conformance/repo1"

// conformanceExpectedFail lists the checks of the suite's pull workflow that
// may fail against Airlock, by check name (its path in the suite's report,
// e.g. "read-only/pull/manifest-by-tag"), with the reason. Every
// other check that runs must pass. Push, delete and blob-upload checks are
// not in the list: they are disabled (OCI_API_PUSH=false and the *_DELETE
// settings), because Airlock is a read-only proxy that answers them 405
// UNSUPPORTED by design (see README "Serving rules").
var conformanceExpectedFail = map[string]string{}

// TestConformanceOCIDistributionPull runs the OCI distribution-spec
// conformance suite (read-only mode: OCI_API_PUSH=false, preloaded content
// named by OCI_RO_DATA_*) against a real airlock whose content was pushed to
// the upstream, pulled once through airlock and approved by an admin.
func TestConformanceOCIDistributionPull(t *testing.T) {
	t.Parallel()
	suite := buildConformance(t)

	up := registrytest.NewUpstream(t)
	data := pushConformanceContent(t, up)

	al := startAirlock(t, up, options{Policy: "manual"})
	for _, tag := range data.Tags {
		image := "docker.io/" + conformanceRepo + "@" + data.TagDigest[tag]
		r := al.getManifest(t, conformanceRepo, tag)
		if r.Status != http.StatusForbidden {
			t.Fatalf("first pull of %s:%s: %d %s, want 403 (quarantine)", conformanceRepo, tag, r.Status, r.Body)
		}
		al.waitState(t, image, stateTimeout, "awaiting-approval")
		al.action(t, "approve", image, "e2e: conformance content")
	}

	results := t.TempDir()
	cmd := exec.Command(suite)
	// The suite reads ./oci-conformance.yaml if present: run it where there is none.
	cmd.Dir = results
	cmd.Env = conformanceEnv(
		"OCI_REGISTRY="+al.Host,
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		"OCI_LOG=error",
		"OCI_RESULTS_DIR="+results,
		"OCI_REPO1="+conformanceRepo,
		"OCI_REPO2=conformance/repo2",
		// Pull workflow only: Airlock answers every write 405 UNSUPPORTED.
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		// Stricter than the 1.1 default: blob responses must carry
		// Docker-Content-Digest. Not for manifests: with read-only data
		// the suite never captures the manifest response headers
		// (ManifestGetExists/ManifestHeadExists pass apiReturnResponse
		// only when it knows the manifest bytes), so it would report the
		// header missing although Airlock sends it; conformanceDigestHeaders
		// checks it instead.
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=false",
		"OCI_RO_DATA_TAGS="+strings.Join(data.Tags, " "),
		"OCI_RO_DATA_MANIFESTS="+strings.Join(data.Manifests, " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(data.Blobs, " "),
		"OCI_RO_DATA_REFERRERS="+strings.Join(data.Referrers, " "),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("conformance suite ran in %s (exit: %v; exit status 2 is its panic after the report, see parseConformanceReport)", time.Since(start).Round(time.Millisecond), runErr)
	if runErr != nil && !isExitError(runErr) {
		t.Fatalf("run %s: %v\n%s", suite, runErr, out.String())
	}

	cases := parseConformanceReport(out.String())
	if len(cases) == 0 {
		t.Fatalf("the suite reported no test cases; output:\n%s", out.String())
	}
	summary, bad := summarizeConformance(cases)
	t.Logf("OCI distribution-spec conformance, pull workflow, against airlock:\n%s", summary)
	for _, c := range bad {
		t.Errorf("conformance check %q: %s\n%s", c.Name, c.Status, indent(c.Errors, "    "))
	}
	// Checks that must run: a suite that silently skipped them proves nothing.
	mustPass := []string{
		"ping",
		"read-only/tag-list",
		"read-only/head/manifest-head-by-tag",
		"read-only/head/manifest-head-by-digest",
		"read-only/head/blob-head",
		"read-only/pull/manifest-by-tag",
		"read-only/pull/manifest-by-digest",
		"read-only/pull/blob-get",
		"read-only/referrers",
		"missing-manifest/by-digest",
		"missing-manifest/by-tag",
		"invalid-digest-format/manifest-get",
	}
	for _, name := range mustPass {
		if _, expected := conformanceExpectedFail[name]; expected {
			continue
		}
		if !slices.ContainsFunc(cases, func(c conformanceCase) bool { return c.Name == name && c.Status == "Pass" }) {
			t.Errorf("conformance check %q did not run and pass", name)
		}
	}
	conformanceManifestHeaders(t, al, data)
	if t.Failed() {
		t.Logf("suite output:\n%s", out.String())
	}
}

// conformanceManifestHeaders checks what the suite cannot check with
// read-only data (it does not know the manifest bytes): every manifest GET
// and HEAD, by tag and by digest, answers 200 with Docker-Content-Digest
// equal to the digest of the body, the Content-Type of the manifest's own
// mediaType, and a Content-Length equal to the body's size; HEAD with no
// body and the same headers.
func conformanceManifestHeaders(t *testing.T, al *Airlock, data *conformanceData) {
	t.Helper()
	refs := map[string]string{} // reference -> expected digest
	for _, tag := range data.Tags {
		refs[tag] = data.TagDigest[tag]
	}
	for _, d := range data.Manifests {
		refs[d] = d
	}
	accept := "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
	for ref, want := range refs {
		u := al.URL + "/v2/" + conformanceRepo + "/manifests/" + ref
		get := doHTTP(t, http.MethodGet, u, nil, map[string]string{"Accept": accept})
		if get.Status != http.StatusOK {
			t.Errorf("GET %s: %d %s", u, get.Status, get.Body)
			continue
		}
		var m struct {
			MediaType string `json:"mediaType"`
		}
		_ = json.Unmarshal(get.Body, &m)
		if got := digest.FromBytes(get.Body).String(); got != want {
			t.Errorf("GET %s: body digest %s, want %s", u, got, want)
		}
		for _, r := range []struct {
			method string
			res    httpResult
		}{{http.MethodGet, get}, {http.MethodHead, doHTTP(t, http.MethodHead, u, nil, map[string]string{"Accept": accept})}} {
			h := r.res.Header
			if r.res.Status != http.StatusOK {
				t.Errorf("%s %s: %d", r.method, u, r.res.Status)
				continue
			}
			if got := h.Get("Docker-Content-Digest"); got != want {
				t.Errorf("%s %s: Docker-Content-Digest %q, want %q", r.method, u, got, want)
			}
			if got := h.Get("Content-Type"); got != m.MediaType {
				t.Errorf("%s %s: Content-Type %q, want the manifest's mediaType %q", r.method, u, got, m.MediaType)
			}
			if got, wantLen := h.Get("Content-Length"), fmt.Sprint(len(get.Body)); got != wantLen {
				t.Errorf("%s %s: Content-Length %q, want %s", r.method, u, got, wantLen)
			}
			if r.method == http.MethodHead && len(r.res.Body) != 0 {
				t.Errorf("HEAD %s: %d body bytes, want none", u, len(r.res.Body))
			}
		}
	}
}

// buildConformance builds the conformance suite's binary into a temp dir.
func buildConformance(t *testing.T) string {
	t.Helper()
	goTool := "go"
	if gr := os.Getenv("GOROOT"); gr != "" {
		if p := filepath.Join(gr, "bin", "go"); fileExists(p) {
			goTool = p
		}
	}
	bin := filepath.Join(t.TempDir(), "conformance")
	out, err := exec.Command(goTool, "build", "-o", bin, conformancePkg).CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", conformancePkg, err, out)
	}
	return bin
}

// conformanceEnv is the test's environment without OCI_* variables (they
// configure the suite) plus extra.
func conformanceEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// conformanceData is the content the suite is told exists (OCI_RO_DATA_*).
type conformanceData struct {
	Tags      []string
	TagDigest map[string]string
	Manifests []string
	Blobs     []string
	Referrers []string
}

func (d *conformanceData) addBlob(dg string) {
	if !slices.Contains(d.Blobs, dg) {
		d.Blobs = append(d.Blobs, dg)
	}
}

// pushConformanceContent pushes to up, in conformanceRepo: an OCI image
// (tag "image"), a two-platform OCI index (tag "index"), and an OCI 1.1
// artifact (tag "artifact": artifactType, the empty config with a data
// field, a zero-byte layer, a subject pointing at the image, annotations).
func pushConformanceContent(t *testing.T, up *registrytest.Upstream) *conformanceData {
	t.Helper()
	d := &conformanceData{TagDigest: map[string]string{}}

	img := registrytest.Image(t, 2, 2048, types.OCIManifestSchema1)
	imgDigest := up.PushImage(t, conformanceRepo+":image", img)
	d.Tags = append(d.Tags, "image")
	d.TagDigest["image"] = imgDigest.String()
	d.Manifests = append(d.Manifests, imgDigest.String())
	imgManifest, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d.addBlob(imgManifest.Config.Digest.String())
	for _, l := range imgManifest.Layers {
		d.addBlob(l.Digest.String())
	}
	imgRaw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}

	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64/v8")
	idxDigest := up.PushIndex(t, conformanceRepo+":index", idx)
	d.Tags = append(d.Tags, "index")
	d.TagDigest["index"] = idxDigest.String()
	d.Manifests = append(d.Manifests, idxDigest.String())
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range im.Manifests {
		// Platform manifests are served because the approved index lists them.
		d.Manifests = append(d.Manifests, desc.Digest.String())
		child, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cm, err := child.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		d.addBlob(cm.Config.Digest.String())
		for _, l := range cm.Layers {
			d.addBlob(l.Digest.String())
		}
	}

	// The OCI 1.1 artifact, written byte for byte.
	emptyJSON := []byte("{}")
	note := []byte("airlock conformance artifact\n")
	for _, b := range [][]byte{emptyJSON, {}, note} {
		pushRawBlob(t, up, conformanceRepo, b)
		d.addBlob(digest.FromBytes(b).String())
	}
	artifact := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  "application/vnd.airlock.conformance.test",
		"config": map[string]any{
			"mediaType": "application/vnd.oci.empty.v1+json",
			"digest":    digest.FromBytes(emptyJSON).String(),
			"size":      len(emptyJSON),
			"data":      base64.StdEncoding.EncodeToString(emptyJSON),
		},
		"layers": []map[string]any{
			{"mediaType": "application/vnd.airlock.conformance.empty", "digest": digest.FromBytes(nil).String(), "size": 0},
			{"mediaType": "text/plain", "digest": digest.FromBytes(note).String(), "size": len(note)},
		},
		"subject": map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json",
			"digest":    imgDigest.String(),
			"size":      len(imgRaw),
		},
		"annotations": map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
	}
	raw, err := json.Marshal(artifact)
	if err != nil {
		t.Fatal(err)
	}
	artDigest := pushRawManifest(t, up, conformanceRepo, "artifact", "application/vnd.oci.image.manifest.v1+json", raw)
	d.Tags = append(d.Tags, "artifact")
	d.TagDigest["artifact"] = artDigest
	d.Manifests = append(d.Manifests, artDigest)
	// The referrers API is asked about the image: Airlock lists only the
	// artifacts it made itself, so the suite checks the answer is a valid,
	// here empty, OCI index.
	d.Referrers = append(d.Referrers, imgDigest.String())
	return d
}

// pushRawBlob uploads b to repo on up (POST, then a monolithic PUT).
func pushRawBlob(t *testing.T, up *registrytest.Upstream, repo string, b []byte) {
	t.Helper()
	r := doHTTP(t, http.MethodPost, up.URL()+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("upstream blob upload start: %d %s", r.Status, r.Body)
	}
	base, err := url.Parse(up.URL() + "/v2/" + repo + "/blobs/uploads/")
	if err != nil {
		t.Fatal(err)
	}
	loc, err := base.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatalf("upstream upload location %q: %v", r.Header.Get("Location"), err)
	}
	q := loc.Query()
	q.Set("digest", digest.FromBytes(b).String())
	loc.RawQuery = q.Encode()
	r = doHTTP(t, http.MethodPut, loc.String(), bytes.NewReader(b), map[string]string{"Content-Type": "application/octet-stream"})
	if r.Status != http.StatusCreated {
		t.Fatalf("upstream blob upload finish: %d %s", r.Status, r.Body)
	}
}

// pushRawManifest PUTs raw as repo:tag on up and returns its digest.
func pushRawManifest(t *testing.T, up *registrytest.Upstream, repo, tag, mediaType string, raw []byte) string {
	t.Helper()
	r := doHTTP(t, http.MethodPut, up.URL()+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(raw), map[string]string{"Content-Type": mediaType})
	if r.Status != http.StatusCreated {
		t.Fatalf("upstream manifest put %s:%s: %d %s", repo, tag, r.Status, r.Body)
	}
	return digest.FromBytes(raw).String()
}

// conformanceCase is one leaf check of the suite's report.
type conformanceCase struct {
	Name   string // e.g. "read-only/pull/manifest-by-tag"
	Status string // Pass, FAIL, Error, Skip, Disabled, Unknown
	Errors string // what the suite printed under a failed check
}

var reportLine = regexp.MustCompile(`^(\s*)OCI Conformance Test(?:/(.*))?: (Pass|FAIL|Error|Skip|Disabled|Unknown)$`)

// parseConformanceReport reads the leaf checks from the test tree the suite
// prints on stdout ("Test results", one "OCI Conformance Test/<path>: <status>"
// line per check, indented by depth, the errors of a failed leaf under it as
// " - <error>"). The stdout report is used rather than junit.xml because the
// suite, in read-only mode, panics in ReportResultsYAML (a nil testData for
// the skipped "blobs-sha256" tests) before it writes junit.xml and
// report.html; the stdout report is printed first.
func parseConformanceReport(out string) []conformanceCase {
	type node struct {
		indent int
		c      conformanceCase
	}
	var nodes []node
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Configuration:") {
			break
		}
		if m := reportLine.FindStringSubmatch(line); m != nil {
			nodes = append(nodes, node{indent: len(m[1]), c: conformanceCase{Name: m[2], Status: m[3]}})
			continue
		}
		if len(nodes) > 0 && strings.TrimSpace(line) != "" {
			last := &nodes[len(nodes)-1].c
			last.Errors += strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "- ")) + "\n"
		}
	}
	var leaves []conformanceCase
	for i, n := range nodes {
		if i+1 < len(nodes) && nodes[i+1].indent > n.indent {
			continue // has children
		}
		if n.c.Name == "" {
			continue // the root, when nothing ran
		}
		leaves = append(leaves, n.c)
	}
	return leaves
}

// summarizeConformance returns a table of the checks (one row per check
// name, with counts per status) and the cases that failed unexpectedly.
func summarizeConformance(cases []conformanceCase) (string, []conformanceCase) {
	type row struct{ pass, fail, skip, disabled int }
	rows := map[string]*row{}
	var bad []conformanceCase
	for _, c := range cases {
		r := rows[c.Name]
		if r == nil {
			r = &row{}
			rows[c.Name] = r
		}
		switch c.Status {
		case "Pass":
			r.pass++
		case "Skip":
			r.skip++
		case "Disabled":
			r.disabled++
		default: // FAIL, Error, Unknown
			r.fail++
			if _, ok := conformanceExpectedFail[c.Name]; !ok {
				bad = append(bad, c)
			}
		}
	}
	names := make([]string, 0, len(rows))
	for n := range rows {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "  %-46s %5s %5s %5s %8s  %s\n", "check", "pass", "fail", "skip", "disabled", "note")
	for _, n := range names {
		r := rows[n]
		note := ""
		if why, ok := conformanceExpectedFail[n]; ok {
			note = "expected to fail: " + why
		}
		fmt.Fprintf(&sb, "  %-46s %5d %5d %5d %8d  %s\n", n, r.pass, r.fail, r.skip, r.disabled, note)
	}
	return sb.String(), bad
}

func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return prefix + "(none)"
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
