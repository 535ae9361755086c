package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// TestAdminAPI checks authentication, listing and showing images, the
// error statuses of the actions, and the health and metrics endpoints.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})

	// Authentication.
	const wrongToken = "e2e-WRONG-token-do-not-log-7d2b"
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"no token", nil},
		{"wrong token", map[string]string{"Authorization": "Bearer " + wrongToken}},
		{"basic auth", map[string]string{"Authorization": "Basic " + wrongToken}},
		{"token without scheme", map[string]string{"Authorization": adminToken}},
	} {
		for _, path := range []string{"/api/v1/images", "/api/v1/audit"} {
			r := doHTTP(t, http.MethodGet, al.AdminURL+path, nil, tc.hdr)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s: GET %s = %d, want 401", tc.name, path, r.Status)
			}
		}
		r := doHTTP(t, http.MethodPost, al.AdminURL+"/api/v1/approve", strings.NewReader(`{"image":"docker.io/library/x:v1"}`), tc.hdr)
		if r.Status != http.StatusUnauthorized {
			t.Errorf("%s: POST approve = %d, want 401", tc.name, r.Status)
		}
	}
	switch log := al.Log(); {
	case log == "":
		t.Errorf("no airlock log captured; cannot check that the token stays out of it")
	case strings.Contains(log, wrongToken):
		t.Errorf("airlock logged the wrong token it was sent")
	}
	// The running configuration, as an admin sees it: the admin token is
	// not in it (nor the state DSN's password on PostgreSQL).
	if out, err := al.cli(t, "settings"); err != nil || !strings.Contains(out, "approvals_required:") ||
		!strings.Contains(out, "upstreams:") || strings.Contains(out, adminToken) {
		t.Errorf("airlock settings: %v\n%s", err, out)
	}
	// The CLI with a wrong token fails.
	cmdOut, err := al.cli(t, "images", "list", "--admin-url", al.AdminURL, "--token-file", writeTemp(t, "tok", wrongToken))
	if err == nil || !strings.Contains(cmdOut, "401") {
		t.Errorf("airlock images list with a wrong token: %v\n%s", err, cmdOut)
	}

	// An image in awaiting-approval.
	const repo = "library/adm"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 1024, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()
	_, err = pull(al.Ref(t, repo+":v1"))
	assertDenied(t, "first pull", err, "quarantine")
	al.waitState(t, image, stateTimeout, "awaiting-approval")

	has := func(list []imageRecord) bool {
		for _, img := range list {
			if img.Upstream+"/"+img.Repository+"@"+img.Digest == image {
				return true
			}
		}
		return false
	}
	if !has(al.images(t, "awaiting-approval")) {
		t.Errorf("?state=awaiting-approval does not list %s", image)
	}
	if !has(al.images(t, "")) {
		t.Errorf("the unfiltered list does not include %s", image)
	}
	for _, st := range []string{"approved", "pending", "revoked"} {
		if has(al.images(t, st)) {
			t.Errorf("?state=%s lists %s, which is awaiting approval", st, image)
		}
	}
	if r := al.admin(t, http.MethodGet, "/api/v1/images?state=bogus", nil); r.Status != http.StatusBadRequest {
		t.Errorf("?state=bogus = %d, want 400", r.Status)
	}
	out, err := al.cli(t, "images", "list", "--state", "awaiting-approval", "--json")
	if err != nil || !strings.Contains(out, d.String()) {
		t.Errorf("airlock images list --state awaiting-approval --json: %v\n%s", err, out)
	}

	// Show.
	det, status := al.image(t, image)
	if status != http.StatusOK || det.Image.State != "awaiting-approval" || det.Image.Digest != d.String() {
		t.Errorf("show %s: %d %+v", image, status, det.Image)
	}
	if len(det.Audit) == 0 {
		t.Errorf("show %s: no audit entries", image)
	}
	if det2, status := al.image(t, "docker.io/"+repo+":v1"); status != http.StatusOK || det2.Image.Digest != d.String() {
		t.Errorf("show by tag: %d, digest %s, want %s", status, det2.Image.Digest, d)
	}
	unknown := "docker.io/" + repo + "@sha256:" + strings.Repeat("0", 64)
	for _, img := range []string{unknown, "docker.io/library/never:v1"} {
		if _, status := al.image(t, img); status != http.StatusNotFound {
			t.Errorf("show %s = %d, want 404", img, status)
		}
	}
	if r := al.admin(t, http.MethodGet, "/api/v1/images/not-an-image", nil); r.Status < 400 || r.Status >= 500 {
		t.Errorf("show of a malformed name = %d, want 4xx", r.Status)
	}

	// Actions: errors.
	for _, tc := range []struct {
		name, body string
		want       []int
	}{
		{"unknown digest", `{"image":"` + unknown + `"}`, []int{404, 409}},
		{"tag never pulled", `{"image":"docker.io/library/never:v1"}`, []int{404, 409}},
		{"invalid JSON", `{"image":`, []int{400}},
		{"not an object", `["x"]`, []int{400}},
		{"unknown field", `{"image":"` + image + `","bogus":1}`, []int{400}},
		{"no image", `{"reason":"x"}`, []int{400}},
		{"malformed digest", `{"image":"docker.io/library/adm@sha256:xyz"}`, []int{400}},
	} {
		for _, verb := range []string{"approve", "revoke", "rescan"} {
			r := doHTTP(t, http.MethodPost, al.AdminURL+"/api/v1/"+verb, strings.NewReader(tc.body),
				map[string]string{"Authorization": "Bearer " + adminToken, "Content-Type": "application/json"})
			ok := false
			for _, w := range tc.want {
				ok = ok || r.Status == w
			}
			if !ok {
				t.Errorf("%s %s: %d %s, want one of %v", verb, tc.name, r.Status, strings.TrimSpace(string(r.Body)), tc.want)
			}
			var e struct{ Error string }
			if json.Unmarshal(r.Body, &e) != nil || e.Error == "" {
				t.Errorf("%s %s: body %q has no error message", verb, tc.name, r.Body)
			}
		}
	}
	// 405 is what airlock means to answer; gorilla/mux loses the method
	// mismatch inside a subrouter and answers 404 (gorilla/mux#751).
	if r := al.admin(t, http.MethodGet, "/api/v1/approve", nil); r.Status != http.StatusMethodNotAllowed && r.Status != http.StatusNotFound {
		t.Errorf("GET /api/v1/approve = %d, want 405 (or 404)", r.Status)
	}

	// Approve of an image whose fetch has not finished: a conflict.
	up.SetBlobRate(32 << 10)
	t.Cleanup(func() { up.SetBlobRate(0) })
	const slowRepo = "library/slow"
	ds := up.PushImage(t, slowRepo+":v1", registrytest.Image(t, 1, 512<<10, types.OCIManifestSchema1))
	slowImage := "docker.io/" + slowRepo + "@" + ds.String()
	if r := al.getManifest(t, slowRepo, "v1"); r.Status != http.StatusForbidden {
		t.Fatalf("first pull of %s: %d, want 403", slowRepo, r.Status)
	}
	al.waitState(t, slowImage, stateTimeout, "fetching")
	r := al.admin(t, http.MethodPost, "/api/v1/approve", map[string]string{"image": slowImage, "reason": "too early"})
	if r.Status != http.StatusConflict {
		t.Errorf("approve while fetching: %d %s, want 409", r.Status, r.Body)
	}
	if rec, _ := al.image(t, slowImage); rec.Image.State == "approved" {
		t.Errorf("an image was approved before it was fetched")
	}
	up.SetBlobRate(0)

	// Approve, rescan, revoke: the happy paths.
	if got := al.action(t, "approve", image, "e2e"); got.State != "approved" {
		t.Errorf("approve: state %q", got.State)
	}
	if r := al.admin(t, http.MethodPost, "/api/v1/rescan", map[string]string{"image": image, "reason": "e2e rescan"}); r.Status != http.StatusOK {
		t.Errorf("rescan of an approved image: %d %s", r.Status, r.Body)
	}
	// Under the manual policy a rescan keeps the admin's approval.
	al.waitState(t, image, stateTimeout, "approved")
	jobsDone := func() bool {
		r := al.admin(t, http.MethodGet, "/api/v1/jobs", nil)
		return r.Status == http.StatusOK && !strings.Contains(string(r.Body), d.String())
	}
	waitFor(t, stateTimeout, "the rescan job to finish", jobsDone)
	if rec, _ := al.image(t, image); rec.Image.State != "approved" {
		t.Errorf("after rescan: %q, want approved", rec.Image.State)
	}
	if got := al.action(t, "revoke", image, "e2e revoke"); got.State != "revoked" {
		t.Errorf("revoke: state %q", got.State)
	}
	if !has(al.images(t, "revoked")) {
		t.Errorf("?state=revoked does not list %s", image)
	}
	// Audit log.
	actions := map[string]bool{}
	for _, e := range al.audit(t, image) {
		actions[e.Action] = true
	}
	for _, a := range []string{"request", "approve", "rescan", "revoke"} {
		if !actions[a] {
			t.Errorf("audit log of %s has no %q entry (has %v)", image, a, actions)
		}
	}
	if r := al.admin(t, http.MethodGet, "/api/v1/audit?limit=-1", nil); r.Status != http.StatusBadRequest {
		t.Errorf("audit?limit=-1 = %d, want 400", r.Status)
	}

	// Health, readiness, metrics: no token needed.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		r := doHTTP(t, http.MethodGet, al.AdminURL+p, nil, nil)
		if r.Status != http.StatusOK {
			t.Errorf("GET %s = %d", p, r.Status)
		}
		if p == "/metrics" {
			for _, m := range []string{"airlock_pulls_total", "airlock_queue_depth"} {
				if !strings.Contains(string(r.Body), m) {
					t.Errorf("/metrics lacks %s", m)
				}
			}
		}
	}
}

// writeTemp writes content to a new file in a temp dir and returns its path.
func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := t.TempDir() + "/" + name
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImageRecordTags: the tag a client pulled an image by shows on the
// image's record (admin API and `airlock images list`), so an admin can
// tell what "library/app@sha256:…" is.
func TestImageRecordTags(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	const repo = "library/tagged"
	d := up.PushImage(t, repo+":1.0", registrytest.Image(t, 1, 1024, types.DockerManifestSchema2))
	image := "docker.io/" + repo + "@" + d.String()
	_, err := pull(al.Ref(t, repo+":1.0"))
	assertDenied(t, "first pull", err, "quarantine")
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	// A second pull of the same tag, as a retrying client would.
	_, err = pull(al.Ref(t, repo+":1.0"))
	assertDenied(t, "second pull", err, "awaiting-approval")

	det, _ := al.image(t, image)
	if !slices.Contains(det.Image.Tags, "1.0") {
		t.Errorf("record of %s, pulled by tag 1.0, has tags %q; want it to list 1.0", image, det.Image.Tags)
	}
	out, err := al.cli(t, "images", "list", "--state", "awaiting-approval")
	if err != nil {
		t.Fatalf("airlock images list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, d.String()) && !strings.Contains(line, "1.0") {
			t.Errorf("airlock images list shows no tag for the image: %q", line)
		}
	}
}
