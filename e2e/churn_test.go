package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// allAudit returns the whole audit log, newest first.
func (a *Airlock) allAudit(t testing.TB) []auditEntry {
	t.Helper()
	return a.audit(t, "")
}

// queuedJob is the part of a queued job the tests read.
type queuedJob struct {
	Image struct {
		Digest string `json:"digest"`
	} `json:"image"`
	NotBefore time.Time `json:"not_before"`
}

// queuedJobs returns the pipeline queue.
func (a *Airlock) queuedJobs(t testing.TB) []queuedJob {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/jobs", nil)
	var out struct {
		Jobs []queuedJob `json:"jobs"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &out) != nil {
		t.Fatalf("jobs: %d %s", r.Status, r.Body)
	}
	return out.Jobs
}

// TestChurnPermanentFailure: 300 anonymous pulls of an image that fails
// permanently (an OCI index with no manifests) queue it once and write three
// audit entries, not one job and ~3 entries per pull.
func TestChurnPermanentFailure(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	const repo = "churn/empty"
	d := up.PushIndex(t, repo+":1", registrytest.Index(t, types.OCIImageIndex))
	image := "docker.io/" + repo + "@" + d.String()
	al := startAirlock(t, up, options{})

	if r := al.getManifest(t, repo, "1"); r.Status != http.StatusForbidden {
		t.Fatalf("first pull = %d %s, want 403", r.Status, r.Body)
	}
	rec := al.waitState(t, image, stateTimeout, "failed")
	t.Logf("after the first pull: %s (%s)", rec.State, rec.Reason)

	// 300 anonymous pulls, 10 clients at once, by tag and by digest.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				reference := "1"
				if i%2 == 1 {
					reference = d.String()
				}
				req, _ := http.NewRequest(http.MethodGet, al.URL+"/v2/"+repo+"/manifests/"+reference, nil)
				req.Header.Set("Accept", manifestAccept)
				status := 0
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusForbidden] != 300 {
		t.Errorf("300 pulls answered %v, want 403 every time", statuses)
	}
	// Give anything the pulls queued time to run and write its entries.
	waitFor(t, stateTimeout, "the queue to be empty", func() bool { return len(al.queuedJobs(t)) == 0 })
	time.Sleep(500 * time.Millisecond)

	es := al.audit(t, image)
	var actions []string
	requests, fetches := 0, 0
	for _, e := range es {
		actions = append(actions, fmt.Sprintf("%s:%s:%s>%s", e.Actor, e.Action, e.From, e.To))
		switch e.Action {
		case "request":
			requests++
		case "step:fetch":
			fetches++
		}
	}
	// request, pending->fetching, fetching->failed: one job, run once.
	if len(es) != 3 || requests != 1 || fetches != 2 {
		t.Errorf("301 pulls wrote %d audit entries (%d requests, %d fetch steps), want 3 (1, 2): %v", len(es), requests, fetches, actions)
	}
	if all := al.allAudit(t); len(all) != len(es) {
		t.Errorf("the whole audit log holds %d entries, want %d", len(all), len(es))
	}
	if jobs := al.queuedJobs(t); len(jobs) != 0 {
		t.Errorf("%d jobs queued after the pulls, want 0", len(jobs))
	}
	var full struct {
		Image struct {
			State     string `json:"state"`
			Permanent bool   `json:"permanent"`
			Reason    string `json:"reason"`
		} `json:"image"`
	}
	if r := al.admin(t, http.MethodGet, "/api/v1/images/"+image, nil); json.Unmarshal(r.Body, &full) != nil || full.Image.State != "failed" || !full.Image.Permanent {
		t.Errorf("record after the pulls = %s; want failed and permanent", r.Body)
	}
	// An admin's rescan still queues it (and it fails the same way).
	if out, err := al.cli(t, "rescan", image); err != nil || !strings.Contains(out, "pending") {
		t.Fatalf("airlock rescan: %v\n%s", err, out)
	}
	al.waitState(t, image, stateTimeout, "failed")
	waitFor(t, stateTimeout, "the rescan to finish", func() bool {
		return len(al.queuedJobs(t)) == 0 && al.audit(t, image)[0].To == "failed"
	})
}

// TestChurnRescanSkipsBackoff: `airlock rescan` of a failed image that
// waits out a one-hour backoff runs it now.
func TestChurnRescanSkipsBackoff(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	const repo = "churn/later"
	d := up.PushImage(t, repo+":1", registrytest.Image(t, 1, 2048, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()

	// In front of the upstream: blob downloads are refused (a transient
	// failure) until the upstream is "fixed".
	var deny atomic.Bool
	deny.Store(true)
	target, err := url.Parse(up.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if deny.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			http.Error(w, "denied for now", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	al := startAirlock(t, up, options{UpstreamURL: front.URL, Edit: func(cfg string) string {
		cfg = strings.Replace(cfg, "    backoff: 200ms\n", "    backoff: 1h\n", 1)
		return strings.Replace(cfg, "    max_backoff: 2s\n", "    max_backoff: 2h\n", 1)
	}})
	if r := al.getManifest(t, repo, d.String()); r.Status != http.StatusForbidden {
		t.Fatalf("first pull = %d %s, want 403", r.Status, r.Body)
	}
	waitFor(t, stateTimeout, "the image to fail and wait for its retry", func() bool {
		d, _ := al.image(t, image)
		jobs := al.queuedJobs(t)
		return d.Image.State == "failed" && len(jobs) == 1 && time.Until(jobs[0].NotBefore) > 50*time.Minute
	})
	deny.Store(false)

	start := time.Now()
	out, err := al.cli(t, "rescan", image, "--reason", "upstream fixed")
	if err != nil {
		t.Fatalf("airlock rescan: %v\n%s", err, out)
	}
	al.waitState(t, image, 20*time.Second, "awaiting-approval")
	t.Logf("rescan ran the waiting image in %s", time.Since(start).Round(time.Millisecond))
	if jobs := al.queuedJobs(t); len(jobs) != 0 {
		t.Errorf("jobs left after the rescan: %+v", jobs)
	}
}

// listedImage is an admin API image list entry with its tag marks.
type listedImage struct {
	imageRecord
	TagStatus map[string]string `json:"tag_status"`
}

func (a *Airlock) listed(t testing.TB, digest v1.Hash) listedImage {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/images", nil)
	var out struct {
		Images []listedImage `json:"images"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode image list: %v\n%s", err, r.Body)
	}
	for _, img := range out.Images {
		if img.Digest == digest.String() {
			return img
		}
	}
	t.Fatalf("image list has no %s", digest)
	return listedImage{}
}

// TestRevokeByTagRefusesFallback: revoking by tag refuses the tag (DENIED,
// not the previous approved digest) until a newer digest is approved;
// --allow-fallback serves the previous one, and says so.
func TestRevokeByTagRefusesFallback(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})

	// pushApproved moves repo:v1 to a new image upstream, pulls the tag
	// through airlock (which quarantines it) and approves it.
	pushApproved := func(repo string) v1.Hash {
		t.Helper()
		d := up.PushImage(t, repo+":v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
		image := "docker.io/" + repo + "@" + d.String()
		_ = al.getManifest(t, repo, "v1")
		al.waitState(t, image, stateTimeout, "awaiting-approval")
		al.action(t, "approve", image, "e2e: reviewed")
		if r := al.getManifest(t, repo, "v1"); r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("tag after approving %s: %d %s", d, r.Status, r.Header.Get("Docker-Content-Digest"))
		}
		return d
	}

	const repo = "churn/app"
	dA := pushApproved(repo)
	dB := pushApproved(repo)

	out, err := al.cli(t, "revoke", "docker.io/"+repo+":v1", "--reason", "CVE-2026-0001 in openssl")
	if err != nil {
		t.Fatalf("airlock revoke by tag: %v\n%s", err, out)
	}
	want := "tag v1 is refused until a digest newer than " + dB.String() + " is approved"
	if !strings.Contains(out, want) || !strings.Contains(out, "revoked") {
		t.Errorf("airlock revoke by tag printed %q, want it to say %q", out, want)
	}
	r := al.getManifest(t, repo, "v1")
	if r.Status != http.StatusForbidden || r.Header.Get("Docker-Content-Digest") == dA.String() {
		t.Fatalf("tag after revoke by tag = %d (digest %q), want 403 DENIED, not the older %s", r.Status, r.Header.Get("Docker-Content-Digest"), dA)
	}
	if errs := registryErrors(r.Body); len(errs) == 0 || errs[0].Code != "DENIED" {
		t.Errorf("tag after revoke by tag: %s, want DENIED", r.Body)
	}
	// By digest, the older image is still what it was: approved.
	if r := al.getManifest(t, repo, dA.String()); r.Status != http.StatusOK {
		t.Errorf("the older digest by digest = %d, want 200", r.Status)
	}
	if a, b := al.listed(t, dA), al.listed(t, dB); a.TagStatus["v1"] != "older" || b.TagStatus["v1"] != "upstream" {
		t.Errorf("tag marks after the revoke: A %v, B %v; want older, upstream", a.TagStatus, b.TagStatus)
	}

	// A newer digest, once approved, serves the tag again.
	dC := up.PushImage(t, repo+":v1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	imageC := "docker.io/" + repo + "@" + dC.String()
	if r := al.getManifest(t, repo, "v1"); r.Status != http.StatusForbidden || r.Header.Get("Docker-Content-Digest") == dA.String() {
		t.Errorf("tag while the newer digest is in quarantine = %d %q, want 403", r.Status, r.Header.Get("Docker-Content-Digest"))
	}
	al.waitState(t, imageC, stateTimeout, "awaiting-approval")
	al.action(t, "approve", imageC, "e2e: fixed version")
	if r := al.getManifest(t, repo, "v1"); r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != dC.String() {
		t.Errorf("tag after approving the newer digest = %d %q, want 200 %s", r.Status, r.Header.Get("Docker-Content-Digest"), dC)
	}
	out, err = al.cli(t, "images", "list")
	if err != nil {
		t.Fatalf("airlock images list: %v\n%s", err, out)
	}
	for d, mark := range map[v1.Hash]string{dA: "v1 (older)", dB: "v1 (older)", dC: "v1 (current)"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, d.String()) {
				found = true
				if !strings.Contains(line, mark) {
					t.Errorf("images list row of %s = %q, want %q", d, line, mark)
				}
			}
		}
		if !found {
			t.Errorf("images list has no row for %s:\n%s", d, out)
		}
	}

	// --allow-fallback: the tag falls back to the previous approved digest.
	const repo2 = "churn/fallback"
	dA2 := pushApproved(repo2)
	dB2 := pushApproved(repo2)
	out, err = al.cli(t, "revoke", "docker.io/"+repo2+":v1", "--allow-fallback", "--reason", "bad build")
	if err != nil {
		t.Fatalf("airlock revoke --allow-fallback: %v\n%s", err, out)
	}
	if want := "tag v1 now falls back to " + dA2.String(); !strings.Contains(out, want) {
		t.Errorf("airlock revoke --allow-fallback printed %q, want %q", out, want)
	}
	if r := al.getManifest(t, repo2, "v1"); r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != dA2.String() {
		t.Errorf("tag after revoke --allow-fallback = %d %q, want 200 %s", r.Status, r.Header.Get("Docker-Content-Digest"), dA2)
	}
	if d, _ := al.image(t, "docker.io/"+repo2+"@"+dB2.String()); d.Image.State != "revoked" {
		t.Errorf("revoked digest is %q", d.Image.State)
	}
	// The API answers in words too, and refuses allow_fallback by digest.
	r = al.admin(t, http.MethodPost, "/api/v1/revoke", map[string]any{"image": "docker.io/" + repo2 + "@" + dA2.String(), "allow_fallback": true})
	if r.Status != http.StatusBadRequest {
		t.Errorf("allow_fallback on a revoke by digest = %d %s, want 400", r.Status, r.Body)
	}
}

// TestAuditPruningKeepsAdminActions: with audit.max_entries the log is cut
// back to the bound, oldest pipeline and pull entries first, at start and
// periodically; admin actions stay.
func TestAuditPruningKeepsAdminActions(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Extra: "audit:\n  max_entries: 12\n  prune_interval: 1s\n"})
	var images []string
	for i := 0; i < 6; i++ {
		repo := fmt.Sprintf("prune/app%d", i)
		d := up.PushImage(t, repo+":1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
		images = append(images, "docker.io/"+repo+"@"+d.String())
		_ = al.getManifest(t, repo, d.String())
	}
	for _, image := range images {
		al.waitState(t, image, stateTimeout, "awaiting-approval")
	}
	for _, image := range images[:3] {
		al.action(t, "approve", image, "e2e: reviewed")
	}
	al.action(t, "revoke", images[0], "e2e: CVE")
	// 6 images x (request, fetching, awaiting-approval) + 4 admin actions = 22.
	waitFor(t, 20*time.Second, "the audit log to be pruned to 12 entries", func() bool { return len(al.allAudit(t)) <= 12 })
	time.Sleep(1500 * time.Millisecond) // one more pass: nothing more goes
	es := al.allAudit(t)
	admins, minOther := 0, ^uint64(0)
	for _, e := range es {
		if strings.HasPrefix(e.Actor, "admin") {
			admins++
		} else if e.Seq < minOther {
			minOther = e.Seq
		}
	}
	if len(es) != 12 || admins != 4 {
		t.Errorf("after pruning: %d entries with %d admin actions, want 12 with all 4", len(es), admins)
	}
	// What went is the oldest: every non-admin entry left is newer than 10 removed ones.
	if minOther <= 10 {
		t.Errorf("oldest non-admin entry kept is #%d; the 10 oldest should have gone", minOther)
	}

	// Restarted with a smaller bound, pruning runs at start.
	al.Stop(t)
	al2 := startAirlock(t, up, options{DataDir: al.DataDir, Extra: "audit:\n  max_entries: 5\n  prune_interval: 1h\n"})
	waitFor(t, 10*time.Second, "pruning at start", func() bool { return len(al2.allAudit(t)) <= 5 })
	admins = 0
	for _, e := range al2.allAudit(t) {
		if strings.HasPrefix(e.Actor, "admin") {
			admins++
		}
	}
	if n := len(al2.allAudit(t)); n != 5 || admins != 4 {
		t.Errorf("after pruning at start: %d entries with %d admin actions, want 5 with all 4", n, admins)
	}
}
