package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// loadTarget is one URL the load test requests and what it must answer.
type loadTarget struct {
	path    string
	allowed bool   // approved content: 200 with the right bytes
	digest  string // the body's digest when allowed and addressed by digest
}

// TestLoadMixedPulls runs 32 clients for 10 seconds against airlock, each
// requesting at random manifests (by tag and digest) and blobs of approved
// and of quarantined images. It counts wrong answers (quarantined content
// served, approved content refused or with wrong bytes), 5xx and transport
// errors, which must all be zero, samples airlock's RSS, which must stay
// bounded, and prints requests/s and latency percentiles.
func TestLoadMixedPulls(t *testing.T) {
	t.Parallel()
	const clients = 32
	const duration = 10 * time.Second
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{NoHold: true})

	var targets []loadTarget
	add := func(repo string, approve bool) {
		img := registrytest.Image(t, 2, 64<<10, types.DockerManifestSchema2)
		d := up.PushImage(t, repo+":1", img)
		key := "docker.io/" + repo + "@" + d.String()
		_ = al.getManifest(t, repo, "1")
		al.waitState(t, key, stateTimeout, "awaiting-approval")
		if approve {
			al.action(t, "approve", key, "load test")
		}
		targets = append(targets,
			loadTarget{path: "/v2/" + repo + "/manifests/1", allowed: approve},
			loadTarget{path: "/v2/" + repo + "/manifests/" + d.String(), allowed: approve, digest: d.String()})
		cfg, _ := img.ConfigName()
		targets = append(targets, loadTarget{path: "/v2/" + repo + "/blobs/" + cfg.String(), allowed: approve, digest: cfg.String()})
		ls, _ := img.Layers()
		for _, l := range ls {
			ld, _ := l.Digest()
			targets = append(targets, loadTarget{path: "/v2/" + repo + "/blobs/" + ld.String(), allowed: approve, digest: ld.String()})
		}
	}
	for _, r := range []string{"load/ok1", "load/ok2", "load/ok3"} {
		add(r, true)
	}
	for _, r := range []string{"load/q1", "load/q2"} {
		add(r, false)
	}

	pid := al.pid()
	rss0 := procRSS(t, pid)
	var peak atomic.Int64
	peak.Store(rss0)
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			b, err := readRSS(pid)
			if err == nil && b > peak.Load() {
				peak.Store(b)
			}
		}
	}()

	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	var (
		total, wrong, fivexx, errs atomic.Int64
		mu                         sync.Mutex
		lats                       []time.Duration
		firstWrong                 atomic.Value
	)
	end := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			var mine []time.Duration
			for time.Now().Before(end) {
				tg := targets[rng.Intn(len(targets))]
				req, _ := http.NewRequest(http.MethodGet, al.URL+tg.path, nil)
				req.Header.Set("Accept", manifestAccept)
				start := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				h := sha256.New()
				_, err = io.Copy(h, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(start))
				total.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				got := "sha256:" + hex.EncodeToString(h.Sum(nil))
				switch {
				case resp.StatusCode >= 500:
					fivexx.Add(1)
				case tg.allowed && resp.StatusCode != 200,
					tg.allowed && tg.digest != "" && got != tg.digest,
					!tg.allowed && resp.StatusCode != 403 && resp.StatusCode != 404:
					wrong.Add(1)
					firstWrong.CompareAndSwap(nil, tg.path+" -> "+resp.Status)
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}(int64(i) + time.Now().UnixNano())
	}
	wg.Wait()
	close(stopSampling)
	sampler.Wait()

	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(float64(len(lats))*p))]
	}
	n := total.Load()
	t.Logf("load: %d clients, %s, %d targets: %d requests (%.0f req/s); latency p50 %s p90 %s p99 %s max %s",
		clients, duration, len(targets), n, float64(n)/duration.Seconds(),
		pct(0.50), pct(0.90), pct(0.99), pct(1))
	t.Logf("load: wrong answers %d, 5xx %d, transport errors %d; airlock RSS %d MiB before, peak %d MiB",
		wrong.Load(), fivexx.Load(), errs.Load(), rss0>>20, peak.Load()>>20)
	if wrong.Load() != 0 {
		t.Errorf("%d wrong answers, first: %v", wrong.Load(), firstWrong.Load())
	}
	if fivexx.Load() != 0 || errs.Load() != 0 {
		t.Errorf("%d 5xx answers and %d transport errors", fivexx.Load(), errs.Load())
	}
	if n < 100 {
		t.Errorf("only %d requests in %s", n, duration)
	}
	if grow := peak.Load() - rss0; grow > 200<<20 {
		t.Errorf("RSS grew by %d MiB under load", grow>>20)
	}
	if al.exited() {
		t.Fatal("airlock exited under load")
	}
}
