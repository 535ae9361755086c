package e2e

import (
	"encoding/json"
	"io"
	"math/rand"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// propImage is one image the property test can push to a repository tag.
type propImage struct {
	img    v1.Image
	digest string
	blobs  []string // config and layers
}

func newPropImage(t testing.TB, layers ...v1.Layer) propImage {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigName()
	p := propImage{img: img, digest: d.String(), blobs: []string{cfg.String()}}
	for _, l := range layers {
		ld, _ := l.Digest()
		p.blobs = append(p.blobs, ld.String())
	}
	return p
}

// probeStatus GETs u and returns the status and Docker-Content-Digest; it
// never fails the test on a transport error (status 0).
func probeStatus(c *http.Client, u string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Docker-Content-Digest")
}

// TestPropertyGateNeverLeaks runs a seeded random sequence of pulls (by
// tag and by digest), approvals, revocations, upstream tag moves and
// restarts (SIGTERM or SIGKILL) under gate.policy manual. After every step
// it checks, against a model of which digests are approved at that moment,
// every manifest (by digest and by tag) and every blob of every repository:
// a 200 is only ever given for an approved manifest, or for a blob an
// approved image of that repository references; and approved content is
// never refused. Repositories share a base layer, so a blob approved in one
// must still be refused in the others. Set AIRLOCK_PROP_SEED to replay.
func TestPropertyGateNeverLeaks(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	if s := os.Getenv("AIRLOCK_PROP_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("AIRLOCK_PROP_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with AIRLOCK_PROP_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	const steps = 100
	budget := 55 * time.Second
	begin := time.Now()

	up := registrytest.NewUpstream(t)
	base, err := random.Layer(2048, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	repos := []string{"prop/a", "prop/b", "prop/c"}
	images := map[string][]propImage{}
	for _, repo := range repos {
		for i := 0; i < 3; i++ {
			l, err := random.Layer(1024+int64(i), types.DockerLayer)
			if err != nil {
				t.Fatal(err)
			}
			images[repo] = append(images[repo], newPropImage(t, base, l))
		}
		up.PushImage(t, repo+":t", images[repo][0].img)
		for i, im := range images[repo] {
			up.PushImage(t, repo+":v"+strconv.Itoa(i), im.img) // so that every digest exists upstream
		}
	}
	var allBlobs []string
	for _, repo := range repos {
		for _, im := range images[repo] {
			for _, b := range im.blobs {
				if !slices.Contains(allBlobs, b) {
					allBlobs = append(allBlobs, b)
				}
			}
		}
	}
	key := func(repo, d string) string { return "docker.io/" + repo + "@" + d }

	// The model: approved[repo][digest].
	approved := map[string]map[string]bool{}
	for _, repo := range repos {
		approved[repo] = map[string]bool{}
	}
	blobAllowed := func(repo, b string) bool {
		for _, im := range images[repo] {
			if approved[repo][im.digest] && slices.Contains(im.blobs, b) {
				return true
			}
		}
		return false
	}

	opts := options{DataDir: t.TempDir(), NoHold: true}
	al := startAirlock(t, up, opts)
	c := &http.Client{Timeout: 10 * time.Second}
	checks, served := 0, 0

	check := func(step int, what string) {
		t.Helper()
		for _, repo := range repos {
			for _, im := range images[repo] {
				status, _ := probeStatus(c, al.URL+"/v2/"+repo+"/manifests/"+im.digest)
				checks++
				switch {
				case status == 0 || status >= 500:
					t.Fatalf("step %d (%s): manifest %s@%s: status %d", step, what, repo, im.digest, status)
				case status == 200 && !approved[repo][im.digest]:
					t.Fatalf("step %d (%s): LEAK: manifest %s@%s served but not approved", step, what, repo, im.digest)
				case status != 200 && approved[repo][im.digest]:
					t.Fatalf("step %d (%s): approved manifest %s@%s refused with %d", step, what, repo, im.digest, status)
				case status == 200:
					served++
				}
			}
			status, dg := probeStatus(c, al.URL+"/v2/"+repo+"/manifests/t")
			checks++
			if status == 0 || status >= 500 {
				t.Fatalf("step %d (%s): %s:t status %d", step, what, repo, status)
			}
			if status == 200 {
				served++
				if !approved[repo][dg] {
					t.Fatalf("step %d (%s): LEAK: %s:t served %s, not approved", step, what, repo, dg)
				}
			}
			for _, b := range allBlobs {
				status, _ := probeStatus(c, al.URL+"/v2/"+repo+"/blobs/"+b)
				checks++
				allowed := blobAllowed(repo, b)
				switch {
				case status == 0 || status >= 500:
					t.Fatalf("step %d (%s): blob %s in %s: status %d", step, what, b, repo, status)
				case status == 200 && !allowed:
					t.Fatalf("step %d (%s): LEAK: blob %s served in %s, which no approved image of it references", step, what, b, repo)
				case status != 200 && allowed:
					t.Fatalf("step %d (%s): blob %s of an approved image of %s refused with %d", step, what, b, repo, status)
				case status == 200:
					served++
				}
			}
		}
	}

	// adminPost approves or revokes; it returns the new state or "" when
	// the admin API refused (e.g. the image is still in the pipeline).
	adminPost := func(verb, image string) string {
		r := al.admin(t, http.MethodPost, "/api/v1/"+verb, map[string]string{"image": image, "reason": "property test"})
		if r.Status != http.StatusOK {
			return ""
		}
		var img imageRecord
		if err := json.Unmarshal(r.Body, &img); err != nil {
			t.Fatalf("decode %s answer: %v", verb, err)
		}
		return img.State
	}

	counts := map[string]int{}
	check(0, "start")
	for step := 1; step <= steps; step++ {
		if time.Since(begin) > budget {
			t.Logf("time budget spent after %d steps", step-1)
			break
		}
		repo := repos[rng.Intn(len(repos))]
		im := images[repo][rng.Intn(len(images[repo]))]
		var what string
		switch p := rng.Intn(100); {
		case p < 20:
			what = "pull " + repo + ":t"
			_, _ = probeStatus(c, al.URL+"/v2/"+repo+"/manifests/t")
		case p < 35:
			what = "pull " + repo + "@" + im.digest[:19]
			_, _ = probeStatus(c, al.URL+"/v2/"+repo+"/manifests/"+im.digest)
		case p < 60:
			// Approve something awaiting approval (give the pipeline a moment).
			var cands []string
			for _, img := range images[repo] {
				if !approved[repo][img.digest] {
					cands = append(cands, img.digest)
				}
			}
			if len(cands) == 0 {
				what = "approve (nothing to approve in " + repo + ")"
				break
			}
			d := cands[rng.Intn(len(cands))]
			deadline := time.Now().Add(5 * time.Second)
			st := ""
			for time.Now().Before(deadline) {
				if rec, status := al.image(t, key(repo, d)); status == http.StatusOK && (rec.Image.State == "awaiting-approval" || rec.Image.State == "revoked") {
					st = adminPost("approve", key(repo, d))
					break
				} else if status != http.StatusOK {
					_, _ = probeStatus(c, al.URL+"/v2/"+repo+"/manifests/"+d) // start its pipeline
				}
				time.Sleep(30 * time.Millisecond)
			}
			what = "approve " + repo + "@" + d[:19] + " -> " + st
			if st == "approved" {
				approved[repo][d] = true
			}
		case p < 75:
			var cands []string
			for d, ok := range approved[repo] {
				if ok {
					cands = append(cands, d)
				}
			}
			slices.Sort(cands)
			if len(cands) == 0 {
				what = "revoke (nothing approved in " + repo + ")"
				break
			}
			d := cands[rng.Intn(len(cands))]
			st := adminPost("revoke", key(repo, d))
			what = "revoke " + repo + "@" + d[:19] + " -> " + st
			if st == "" {
				t.Fatalf("step %d: revoke of approved %s refused", step, key(repo, d))
			}
			approved[repo][d] = false
		case p < 90:
			what = "upstream moves " + repo + ":t to " + im.digest[:19]
			up.PushImage(t, repo+":t", im.img)
		default:
			if rng.Intn(2) == 0 {
				what = "restart (SIGTERM)"
				al.Stop(t)
			} else {
				what = "restart (SIGKILL)"
				al.Kill(t)
			}
			al = startAirlock(t, up, opts)
		}
		counts[strings.Fields(what)[0]]++
		check(step, what)
		t.Logf("step %2d: %s; approved now %d", step, what, countTrue(approved))
	}
	t.Logf("seed %d: %v; %d checks, %d answers 200, all consistent with the model, in %s",
		seed, counts, checks, served, time.Since(begin).Round(time.Millisecond))
	if served == 0 {
		t.Errorf("nothing was ever served: the sequence never approved anything")
	}
}

func countTrue(m map[string]map[string]bool) int {
	n := 0
	for _, r := range m {
		for _, v := range r {
			if v {
				n++
			}
		}
	}
	return n
}
