package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// pullsReport is the part of GET /api/v1/images/<image>/pulls the tests
// read, declared here to pin the API's JSON field names.
type pullsReport struct {
	Image struct {
		Digest string `json:"digest"`
	} `json:"image"`
	State      string    `json:"state"`
	LastPulled time.Time `json:"last_pulled"`
	PullCount  int64     `json:"pull_count"`
	Pullers    []struct {
		Addr      string    `json:"addr"`
		UserAgent string    `json:"user_agent"`
		Last      time.Time `json:"last"`
		Pulls     int64     `json:"pulls"`
		Heads     int64     `json:"heads"`
	} `json:"pullers"`
}

func (a *Airlock) pulls(t testing.TB, image string) pullsReport {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/images/"+image+"/pulls", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("pulls of %s: %d %s", image, r.Status, r.Body)
	}
	var out pullsReport
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode pulls: %v\n%s", err, r.Body)
	}
	return out
}

// approvedImage pushes repo:tag upstream, has Airlock quarantine it with a
// first (denied) pull, approves it and returns its image name.
func approvedImage(t *testing.T, al *Airlock, up *registrytest.Upstream, repo, tag string) string {
	t.Helper()
	d := up.PushImage(t, repo+":"+tag, registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()
	if r := al.getManifest(t, repo, tag); r.Status != http.StatusForbidden {
		t.Fatalf("first pull: %d, want 403 (quarantine)", r.Status)
	}
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	al.action(t, "approve", image, "pull records test")
	return image
}

// TestPullRecords: two nodes with different user agents pull an approved
// image; `airlock images pulls` (and the API) lists both with their
// counts, and still answers after the image is revoked, which is when the
// question "who pulled it?" is asked.
func TestPullRecords(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Extra: "pulls:\n  flush_interval: 200ms\n  recent: 5\n"})
	const repo = "library/pulled"
	image := approvedImage(t, al, up, repo, "v1")
	dgst := image[strings.Index(image, "@")+1:]

	nodeA := map[string]string{"Accept": manifestAccept, "User-Agent": "containerd/1.7.24 node-a"}
	nodeB := map[string]string{"Accept": manifestAccept, "User-Agent": "docker/27.5.1 node-b"}
	// node-a: three GETs by tag (podman's way).
	for range 3 {
		if r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+repo+"/manifests/v1", nil, nodeA); r.Status != http.StatusOK {
			t.Fatalf("node-a GET: %d %s", r.Status, r.Body)
		}
	}
	// node-b: HEAD by tag, then GET by digest (docker's and containerd's way).
	if r := doHTTP(t, http.MethodHead, al.URL+"/v2/"+repo+"/manifests/v1", nil, nodeB); r.Status != http.StatusOK {
		t.Fatalf("node-b HEAD: %d", r.Status)
	}
	if r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+repo+"/manifests/"+dgst, nil, nodeB); r.Status != http.StatusOK {
		t.Fatalf("node-b GET: %d %s", r.Status, r.Body)
	}
	// A hostile user agent (a tab, invalid UTF-8, a right-to-left
	// override, 600 bytes; net/http sends no other control characters) is
	// stored cleaned, and counts like any other.
	evil := map[string]string{"Accept": manifestAccept, "User-Agent": "evil\tnode\xff\u202e" + strings.Repeat("x", 600)}
	if r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+repo+"/manifests/"+dgst, nil, evil); r.Status != http.StatusOK {
		t.Fatalf("evil GET: %d", r.Status)
	}

	var rep pullsReport
	waitFor(t, 15*time.Second, "pull records flushed", func() bool {
		rep = al.pulls(t, image)
		return rep.PullCount == 5 && len(rep.Pullers) == 3
	})
	byUA := map[string]int{}
	for i, p := range rep.Pullers {
		switch {
		case p.UserAgent == nodeA["User-Agent"]:
			if p.Pulls != 3 || p.Heads != 0 {
				t.Errorf("node-a: %d pulls, %d heads; want 3, 0", p.Pulls, p.Heads)
			}
		case p.UserAgent == nodeB["User-Agent"]:
			if p.Pulls != 1 || p.Heads != 1 {
				t.Errorf("node-b: %d pulls, %d heads; want 1, 1", p.Pulls, p.Heads)
			}
		case strings.HasPrefix(p.UserAgent, "evilnodexxx"):
			if len(p.UserAgent) > 256 || strings.ContainsAny(p.UserAgent, "\t\u202e\xff") {
				t.Errorf("hostile user agent stored as %q", p.UserAgent)
			}
			if i != 0 {
				t.Errorf("the newest puller is not first: %+v", rep.Pullers)
			}
		default:
			t.Errorf("unexpected puller %+v", p)
		}
		if p.Addr != "127.0.0.1" {
			t.Errorf("puller address %q, want the TCP peer 127.0.0.1", p.Addr)
		}
		byUA[p.UserAgent]++
	}
	if rep.LastPulled.IsZero() || rep.State != "approved" || rep.Image.Digest != dgst {
		t.Errorf("report: %+v", rep)
	}
	// The image record carries the same figures.
	if d, _ := al.image(t, image); d.Image.State != "approved" {
		t.Errorf("state %s", d.Image.State)
	}
	detail := al.admin(t, http.MethodGet, "/api/v1/images/"+image, nil)
	if !strings.Contains(string(detail.Body), `"pull_count": 5`) || !strings.Contains(string(detail.Body), `"last_pulled"`) {
		t.Errorf("GET /images/<image> lacks pull_count 5 and last_pulled:\n%s", detail.Body)
	}

	// Revoked: no more serving, and the question is still answered, by
	// digest and by tag, from the CLI.
	al.action(t, "revoke", image, "compromised")
	if r := al.getManifest(t, repo, "v1"); r.Status != http.StatusForbidden {
		t.Fatalf("GET after revoke: %d", r.Status)
	}
	for _, name := range []string{image, "docker.io/" + repo + ":v1"} {
		out, err := al.cli(t, "images", "pulls", name)
		if err != nil {
			t.Fatalf("airlock images pulls %s: %v\n%s", name, err, out)
		}
		for _, want := range []string{"state revoked", "pulls 5", "containerd/1.7.24 node-a", "docker/27.5.1 node-b", "LAST", "CLIENT", "USER AGENT", "127.0.0.1"} {
			if !strings.Contains(out, want) {
				t.Errorf("airlock images pulls %s: no %q in\n%s", name, want, out)
			}
		}
		if strings.ContainsAny(out, "\u202e\xff") {
			t.Errorf("the CLI printed what the client sent unescaped")
		}
	}
	out, err := al.cli(t, "images", "pulls", image, "--json")
	if err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	var viaCLI pullsReport
	if err := json.Unmarshal([]byte(out), &viaCLI); err != nil || viaCLI.PullCount != 5 || len(viaCLI.Pullers) != 3 || viaCLI.State != "revoked" {
		t.Errorf("--json: %v %+v\n%s", err, viaCLI, out)
	}
	// Denied pulls after the revoke count nothing.
	time.Sleep(600 * time.Millisecond)
	if rep := al.pulls(t, image); rep.PullCount != 5 {
		t.Errorf("pull_count %d after denied pulls, want 5", rep.PullCount)
	}
	// An image Airlock does not know: 404.
	if r := al.admin(t, http.MethodGet, "/api/v1/images/docker.io/library/none@sha256:"+strings.Repeat("0", 64)+"/pulls", nil); r.Status != http.StatusNotFound {
		t.Errorf("pulls of an unknown image: %d %s", r.Status, r.Body)
	}
}

// TestPullRecordsFlushOnStop: with a flush interval far beyond the test,
// pulls served before a graceful stop are written by the stop itself.
func TestPullRecordsFlushOnStop(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Extra: "pulls:\n  flush_interval: 1h\n"})
	const repo = "library/stopped"
	image := approvedImage(t, al, up, repo, "v1")
	for range 4 {
		if r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+repo+"/manifests/v1", nil, map[string]string{"Accept": manifestAccept, "User-Agent": "node-c"}); r.Status != http.StatusOK {
			t.Fatalf("GET: %d %s", r.Status, r.Body)
		}
	}
	if rep := al.pulls(t, image); rep.PullCount != 0 {
		t.Fatalf("pull_count %d before any flush, want 0 (interval 1h)", rep.PullCount)
	}
	al.Stop(t)
	al = startAirlock(t, up, options{DataDir: al.DataDir, Extra: "pulls:\n  flush_interval: 1h\n"})
	rep := al.pulls(t, image)
	if rep.PullCount != 4 || len(rep.Pullers) != 1 || rep.Pullers[0].UserAgent != "node-c" || rep.Pullers[0].Pulls != 4 {
		t.Errorf("after a graceful stop: %+v", rep)
	}
}
