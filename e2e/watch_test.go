package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

// manifestGETs counts the upstream's GETs of repo's manifests (by tag or digest).
func manifestGETs(up *registrytest.Upstream, repo string) int {
	n := 0
	for _, r := range up.Requests() {
		if r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/v2/"+repo+"/manifests/") {
			n++
		}
	}
	return n
}

// watchedList is the part of GET /api/v1/watches the tests read.
type watchedList struct {
	Watches []struct {
		Image  string   `json:"image"`
		Tags   []string `json:"tags"`
		Source string   `json:"source"`
		Status *struct {
			Error  string `json:"error"`
			Listed int    `json:"listed"`
			Queued int    `json:"queued"`
			Tags   []struct {
				Tag    string `json:"tag"`
				Digest string `json:"digest"`
				State  string `json:"state"`
			} `json:"tags"`
		} `json:"status"`
	} `json:"watches"`
}

// TestWatchApprovesMovedTagBeforePull: a watched tag is approved before any
// client asks; when the tag moves upstream the new digest is approved
// before the first client pull, and that pull sends no manifest GET
// upstream; a new digest the policy rejects is rejected with its reason
// through the normal pipeline transition, and pulls of the tag keep
// getting the last approved digest.
func TestWatchApprovesMovedTagBeforePull(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	clean := []registrytest.Pkg{{Name: "openssl", Version: "3.0.2-r0"}, {Name: "musl", Version: "1.2.5-r0"}}
	d1 := up.PushImage(t, "watched/app:v1", registrytest.AlpineImage(t, "3.20.3", clean...)).String()
	up.PushImage(t, "watched/app:latest", registrytest.AlpineImage(t, "3.20.3", clean...))
	dbDir := t.TempDir()
	vulndbtest.Build(t, dbDir, baseVulns...)
	up.Reset() // the pushes' own requests
	rcv := newHookReceiver(t)
	al := startAirlock(t, up, options{Policy: "scan", NoHold: true, Env: []string{"EVENTS_E2E_SECRET=" + eventsSecret}, Extra: `
events:
  min_backoff: 100ms
  webhooks:
    - url: ` + rcv.url() + `
      secret_env: EVENTS_E2E_SECRET
      types: ["dev.airlock.image.rejected"]
scan:
  db_dir: ` + dbDir + `
  max_db_age: 0s
  rescan_interval: 0s
policy:
  fail_on: critical
watch:
  - image: docker.io/watched/app
    tags: ["v*"]
    interval: 1s
`})
	key := func(d string) string { return "docker.io/watched/app@" + d }

	// Approved with no client having asked.
	rec := al.waitState(t, key(d1), 90*time.Second, "approved", "rejected", "failed")
	if rec.State != "approved" {
		t.Fatalf("v1: %s (%s), want approved by the watch", rec.State, rec.Reason)
	}
	if entries := al.audit(t, key(d1)); len(entries) == 0 || entries[len(entries)-1].Actor != "watch" {
		t.Errorf("v1's first audit entry: %+v, want a request by the watch", entries)
	}
	// "latest" does not match v*: never resolved, never queued.
	if n := up.Count(http.MethodHead, "/v2/watched/app/manifests/latest"); n != 0 {
		t.Errorf("the watch checked the unwatched tag latest %d times", n)
	}

	// The tag moves: approved before any client pull.
	d2 := up.PushImage(t, "watched/app:v1", registrytest.AlpineImage(t, "3.20.3", append(clean, registrytest.Pkg{Name: "zlib", Version: "1.3-r0"})...)).String()
	rec = al.waitState(t, key(d2), 90*time.Second, "approved", "rejected", "failed")
	if rec.State != "approved" {
		t.Fatalf("moved v1: %s (%s), want approved by the watch", rec.State, rec.Reason)
	}
	up.Reset()
	res := al.getManifest(t, "watched/app", "v1")
	if res.Status != http.StatusOK || res.Header.Get("Docker-Content-Digest") != d2 {
		t.Fatalf("first client pull of the moved tag: %d %s, want 200 with %s", res.Status, res.Header.Get("Docker-Content-Digest"), d2)
	}
	if n := manifestGETs(up, "watched/app"); n != 0 {
		t.Errorf("the first client pull made %d manifest GETs upstream; the watch had fetched it", n)
	}

	// A new digest the policy rejects: rejected with the CVE named, and
	// the tag keeps serving the last approved digest.
	d3 := up.PushImage(t, "watched/app:v1", registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"})).String()
	rec = al.waitState(t, key(d3), 90*time.Second, "approved", "rejected", "failed")
	if rec.State != "rejected" || !strings.Contains(rec.Reason, "CVE-2026-1001") {
		t.Fatalf("vulnerable v1: %s (%s), want rejected naming CVE-2026-1001", rec.State, rec.Reason)
	}
	rejected := false
	for _, e := range al.audit(t, key(d3)) {
		if e.To == "rejected" && e.Actor == "pipeline" {
			rejected = true
		}
	}
	if !rejected {
		t.Errorf("no pipeline transition to rejected in %s's audit trail", key(d3))
	}
	// ... and reported by a signed event, the only one this endpoint wants.
	evs := rcv.waitEvents(1, 60*time.Second)
	if names := eventNames(evs); len(names) != 1 || names[0] != "dev.airlock.image.rejected "+key(d3) || !evs[0].signatureOK ||
		!strings.Contains(evs[0].Data.Reason, "CVE-2026-1001") {
		t.Errorf("webhook events for the rejected move: %q (%+v)", names, evs)
	}
	res = al.getManifest(t, "watched/app", "v1")
	if res.Status != http.StatusOK || res.Header.Get("Docker-Content-Digest") != d2 {
		t.Errorf("pull after the rejected move: %d %s, want the last approved %s", res.Status, res.Header.Get("Docker-Content-Digest"), d2)
	}

	// airlock watch list shows the config watch and what it saw.
	out, err := al.cli(t, "watch", "list", "--json")
	if err != nil {
		t.Fatalf("airlock watch list: %v\n%s", err, out)
	}
	var list watchedList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("watch list JSON: %v\n%s", err, out)
	}
	if len(list.Watches) != 1 || list.Watches[0].Image != "docker.io/watched/app" || list.Watches[0].Source != "config" ||
		list.Watches[0].Status == nil || len(list.Watches[0].Status.Tags) != 1 || list.Watches[0].Status.Tags[0].Digest != d3 {
		t.Errorf("watch list: %s", out)
	}
	if out, err := al.cli(t, "watch", "list"); err != nil || !strings.Contains(out, "docker.io/watched/app") || !strings.Contains(out, "v1=rejected") {
		t.Errorf("airlock watch list: %v\n%s", err, out)
	}
	if out, err := al.cli(t, "watch", "remove", "docker.io/watched/app"); err == nil || !strings.Contains(out, "config file") {
		t.Errorf("removing a config watch: %v\n%s", err, out)
	}
}

// rateLimitedFront fronts up and answers the first n tag listings with
// 429 and Retry-After; it records when every request arrived.
type rateLimitedFront struct {
	srv  *httptest.Server
	left atomic.Int32

	mu       sync.Mutex
	arrivals []time.Time
	limited  []time.Time
}

func newRateLimitedFront(t *testing.T, up *registrytest.Upstream, n int32, retryAfter string) *rateLimitedFront {
	target, err := url.Parse(up.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	f := &rateLimitedFront{}
	f.left.Store(n)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		f.mu.Lock()
		f.arrivals = append(f.arrivals, now)
		f.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/tags/list") && f.left.Add(-1) >= 0 {
			f.mu.Lock()
			f.limited = append(f.limited, now)
			f.mu.Unlock()
			w.Header().Set("Retry-After", retryAfter)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestWatch429IsHonoured: a watch added through the CLI meets an upstream
// that answers 429 with Retry-After: 2 twice. Nothing is sent to the
// upstream until each Retry-After has passed, and the watched tag is still
// approved before any client asks.
func TestWatch429IsHonoured(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	d := up.PushImage(t, "watched/limited:v1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1)).String()
	front := newRateLimitedFront(t, up, 2, "2")
	al := startAirlock(t, up, options{Policy: "auto", UpstreamURL: front.srv.URL})

	out, err := al.cli(t, "watch", "add", "docker.io/watched/limited", "--tag", "v1", "--tag", "semver:>=1 <2", "--interval", "1s", "--max-new", "2")
	if err != nil || !strings.Contains(out, "watching docker.io/watched/limited") {
		t.Fatalf("airlock watch add: %v\n%s", err, out)
	}
	start := time.Now()
	rec := al.waitState(t, "docker.io/watched/limited@"+d, 60*time.Second, "approved", "rejected", "failed")
	if rec.State != "approved" {
		t.Fatalf("watched tag behind a 429: %s (%s)", rec.State, rec.Reason)
	}
	if took := time.Since(start); took < 3900*time.Millisecond {
		t.Errorf("approved after %s; two Retry-After: 2 answers should take ≥ 4s", took)
	}
	front.mu.Lock()
	arrivals, limited := append([]time.Time(nil), front.arrivals...), append([]time.Time(nil), front.limited...)
	front.mu.Unlock()
	if len(limited) != 2 {
		t.Fatalf("%d 429 answers sent, want 2", len(limited))
	}
	for _, l := range limited {
		for _, a := range arrivals {
			if a.After(l) && a.Before(l.Add(1900*time.Millisecond)) {
				t.Errorf("a request reached the upstream %s after a 429 with Retry-After: 2", a.Sub(l).Round(time.Millisecond))
			}
		}
	}
	// Bounded: the 429s did not turn into a retry storm.
	if n := len(arrivals); n > 40 {
		t.Errorf("the upstream saw %d requests", n)
	}
	// The API watch is listed, and can be removed.
	r := al.admin(t, http.MethodGet, "/api/v1/watches", nil)
	var list watchedList
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Watches) != 1 || list.Watches[0].Source != "api" {
		t.Fatalf("watch list: %d %s", r.Status, r.Body)
	}
	if out, err := al.cli(t, "watch", "remove", "docker.io/watched/limited"); err != nil {
		t.Fatalf("airlock watch remove: %v\n%s", err, out)
	}
	r = al.admin(t, http.MethodGet, "/api/v1/watches", nil)
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Watches) != 0 {
		t.Errorf("after remove: %s", r.Body)
	}
}
