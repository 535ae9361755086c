package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/internal/registrytest"
)

// The multi-replica tests: three `airlock serve` processes on one
// PostgreSQL database and one S3 bucket (MinIO), real clients spread over
// them, one upstream registry that counts what it serves.

// startReplicas starts n airlock replicas sharing backend b (a new one
// when nil), each with its own data_dir (a cache only).
func startReplicas(t *testing.T, up *registrytest.Upstream, n int, b *sharedBackend, o options) []*Airlock {
	t.Helper()
	if b == nil {
		b = newShared(t)
	}
	o.Shared = b
	var out []*Airlock
	for range n {
		oo := o
		oo.DataDir = ""
		out = append(out, startAirlock(t, up, oo))
	}
	return out
}

// blobGET fetches blob d of repo from a replica: status and body.
func blobGET(a *Airlock, repo string, d v1.Hash) (int, []byte, error) {
	resp, err := httpClient.Get(a.URL + "/v2/" + repo + "/blobs/" + d.String())
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func manifestGET(a *Airlock, repo, ref string) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", strings.Join([]string{string(types.OCIManifestSchema1), string(types.DockerManifestSchema2), string(types.OCIImageIndex), string(types.DockerManifestList)}, ","))
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestHAHerd (a): 100 clients spread round-robin over 3 replicas pull one
// uncached image at once; the upstream serves every blob and the manifest
// exactly once, and every client gets the upstream's bytes.
func TestHAHerd(t *testing.T) {
	up := registrytest.NewUpstream(t)
	rs := startReplicas(t, up, 3, nil, options{Policy: "auto", Hold: 60 * time.Second})
	const repo = "library/herd"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 3, 1<<20, types.OCIManifestSchema1))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	up.Reset()
	// The fetch takes ~1.5s: the herd really waits together.
	up.SetBlobRate(2 << 20)
	defer up.SetBlobRate(0)

	const clients = 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := pull(rs[i%len(rs)].Ref(t, repo+":v1"))
			if err != nil {
				errs <- fmt.Errorf("client %d (replica %d): %w", i, i%len(rs), err)
				return
			}
			if got.Digest != want.Digest || len(got.Layers) != len(want.Layers) {
				errs <- fmt.Errorf("client %d got %s", i, got.Digest)
				return
			}
			for l := range want.Layers {
				if !bytes.Equal(got.Layers[l].Data, want.Layers[l].Data) {
					errs <- fmt.Errorf("client %d: layer %d differs", i, l)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	blobs := append([]v1.Hash{want.ConfigDigest}, layerDigests(want)...)
	for _, b := range blobs {
		if n := up.CountBlobGETs(b); n != 1 {
			t.Errorf("upstream served blob %s %d times to 3 replicas, want 1", b, n)
		}
	}
	if n := up.Count(http.MethodGet, "/v2/"+repo+"/manifests/"+d.String()); n != 1 {
		t.Errorf("upstream served the manifest by digest %d times, want 1", n)
	}
	t.Logf("%d clients over 3 replicas: upstream GETs per blob = 1 for all %d blobs", clients, len(blobs))
}

func layerDigests(a *artifact) []v1.Hash {
	var out []v1.Hash
	for _, l := range a.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// jobOwner returns the replica whose process holds the job of image.
func jobOwner(t *testing.T, rs []*Airlock, image string) *Airlock {
	t.Helper()
	for _, a := range rs {
		if a.exited() {
			continue
		}
		r := a.admin(t, http.MethodGet, "/api/v1/jobs", nil)
		var out struct {
			Jobs []struct {
				Image struct{ Upstream, Repository, Digest string }
				Owner string
			}
		}
		if err := json.Unmarshal(r.Body, &out); err != nil {
			t.Fatalf("jobs: %v: %s", err, r.Body)
		}
		for _, j := range out.Jobs {
			if j.Image.Upstream+"/"+j.Image.Repository+"@"+j.Image.Digest != image || j.Owner == "" {
				continue
			}
			parts := strings.Split(j.Owner, "/")
			pid, _ := strconv.Atoi(parts[len(parts)-2])
			for _, b := range rs {
				if b.cmd.Process.Pid == pid {
					return b
				}
			}
			t.Fatalf("job owner %q is no replica", j.Owner)
		}
		return nil
	}
	return nil
}

// TestHAKillDuringFetch (b): the replica running the fetch is SIGKILLed in
// the middle of a blob; another replica takes the job over when the lease
// ends and finishes it, and no replica ever serves a partial blob.
func TestHAKillDuringFetch(t *testing.T) {
	up := registrytest.NewUpstream(t)
	rs := startReplicas(t, up, 3, nil, options{Policy: "auto"})
	const repo = "library/killed"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 4<<20, types.OCIManifestSchema1))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	image := "docker.io/" + repo + "@" + d.String()
	up.SetBlobRate(1 << 20) // a layer takes ~4s
	defer up.SetBlobRate(0)

	// Probes of every replica, all along: a 2xx is the whole blob.
	stop := make(chan struct{})
	var probes, served atomic.Int64
	var probeWG sync.WaitGroup
	blobs := map[v1.Hash][]byte{want.ConfigDigest: want.Config}
	for _, l := range want.Layers {
		blobs[l.Digest] = l.Data
	}
	for _, a := range rs {
		probeWG.Add(1)
		go func() {
			defer probeWG.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for dg, data := range blobs {
					status, body, err := blobGET(a, repo, dg)
					if err != nil {
						continue // the killed replica
					}
					probes.Add(1)
					if status/100 == 2 {
						served.Add(1)
						if !bytes.Equal(body, data) {
							t.Errorf("replica %s served %d bytes of blob %s, not the %d the upstream has", a.Host, len(body), dg, len(data))
						}
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	defer func() { close(stop); probeWG.Wait() }()

	if _, err := pull(rs[0].Ref(t, repo+"@"+d.String())); err == nil {
		t.Fatal("first pull was served before the fetch")
	}
	waitFor(t, 20*time.Second, "a blob GET in flight upstream", func() bool { return up.InFlight() > 0 })
	victim := jobOwner(t, rs, image)
	if victim == nil {
		t.Fatal("no replica holds the job")
	}
	time.Sleep(500 * time.Millisecond) // in the middle of a layer
	victim.Kill(t)
	killedAt := time.Now()
	t.Logf("killed %s (pid %d) in the middle of the fetch", victim.Host, victim.cmd.Process.Pid)

	var live []*Airlock
	for _, a := range rs {
		if a != victim {
			live = append(live, a)
		}
	}
	up.SetBlobRate(0)
	live[0].waitState(t, image, 60*time.Second, "approved")
	t.Logf("approved %s after the kill (lease 3s)", time.Since(killedAt).Round(time.Millisecond))
	for _, a := range live {
		assertSame(t, "pull from "+a.Host+" after the kill", want, mustPull(t, a.Ref(t, repo+"@"+d.String())))
	}
	if probes.Load() == 0 || served.Load() == 0 {
		t.Errorf("probes %d, served %d: the probe saw nothing", probes.Load(), served.Load())
	}
}

// TestHAApproveRevokeAcrossReplicas (c): an approval through one replica is
// served by the others on their very next request; a revoke through
// another is refused by the rest on their very next request, manifests and
// blobs alike.
func TestHAApproveRevokeAcrossReplicas(t *testing.T) {
	up := registrytest.NewUpstream(t)
	rs := startReplicas(t, up, 3, nil, options{})
	const repo = "library/decided"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 64<<10, types.OCIManifestSchema1))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	image := "docker.io/" + repo + "@" + d.String()
	if _, err := pull(rs[0].Ref(t, repo+"@"+d.String())); err == nil {
		t.Fatal("served before approval")
	}
	rs[1].waitState(t, image, stateTimeout, "awaiting-approval")

	for round := range 5 {
		approver, revoker := rs[round%3], rs[(round+1)%3]
		approver.action(t, "approve", image, "e2e: approve")
		for _, a := range rs {
			if status, body, err := manifestGET(a, repo, d.String()); err != nil || status != http.StatusOK || !bytes.Equal(body, want.Manifest) {
				t.Fatalf("round %d: replica %s right after the approval through %s: %d, %v", round, a.Host, approver.Host, status, err)
			}
			if status, body, err := blobGET(a, repo, want.Layers[0].Digest); err != nil || status != http.StatusOK || !bytes.Equal(body, want.Layers[0].Data) {
				t.Fatalf("round %d: replica %s blob right after the approval: %d, %v", round, a.Host, status, err)
			}
		}
		revoker.action(t, "revoke", image, "e2e: revoke")
		for _, a := range rs {
			if status, _, err := manifestGET(a, repo, d.String()); err != nil || status != http.StatusForbidden {
				t.Fatalf("round %d: replica %s served the manifest right after the revoke through %s: %d, %v", round, a.Host, revoker.Host, status, err)
			}
			if status, _, err := blobGET(a, repo, want.Layers[0].Digest); err != nil || status != http.StatusForbidden {
				t.Fatalf("round %d: replica %s served a blob right after the revoke: %d, %v", round, a.Host, status, err)
			}
		}
	}
}

// TestHAPostgresRestart (d): PostgreSQL restarts while replicas fetch;
// they reconnect, every job finishes, and nothing unapproved is served
// meanwhile.
func TestHAPostgresRestart(t *testing.T) {
	pg := pgtest.Start(t) // its own server: this test restarts it
	b := newShared(t)
	b.DSN = pg.NewDatabase(t)
	up := registrytest.NewUpstream(t)
	rs := startReplicas(t, up, 3, b, options{})
	const images = 6
	var refs []string
	var wants []*artifact
	for i := range images {
		repo := fmt.Sprintf("library/restart%d", i)
		d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 512<<10, types.OCIManifestSchema1))
		wants = append(wants, mustPull(t, up.Ref(t, repo+"@"+d.String())))
		refs = append(refs, repo+"@"+d.String())
	}
	up.SetBlobRate(1 << 20)
	for i, r := range refs {
		if _, err := pull(rs[i%3].Ref(t, r)); err == nil {
			t.Fatalf("%s served before approval", r)
		}
	}
	// Nothing is approved (manual policy): every 2xx is a leak.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answers atomic.Int64
	for _, a := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i, r := range refs {
					repo, dg, _ := strings.Cut(r, "@")
					status, _, err := manifestGET(a, repo, dg)
					if err == nil {
						answers.Add(1)
					}
					if status/100 == 2 {
						t.Errorf("replica %s served unapproved %s (status %d)", a.Host, r, status)
					}
					if status, _, err := blobGET(a, repo, wants[i].Layers[0].Digest); err == nil && status/100 == 2 {
						t.Errorf("replica %s served a blob of unapproved %s", a.Host, r)
					}
				}
				time.Sleep(30 * time.Millisecond)
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	before := answers.Load()
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the probes keep asking: 503s, never a 2xx
	pg.Restart(t)
	t.Logf("PostgreSQL was down for 2s; %d probe answers meanwhile", answers.Load()-before)
	up.SetBlobRate(0)
	for _, r := range refs {
		rs[0].waitState(t, "docker.io/"+r, 60*time.Second, "awaiting-approval")
	}
	close(stop)
	wg.Wait()
	if answers.Load() == 0 {
		t.Fatal("the leak probe got no answers")
	}
	// No job lost or stuck: the queue is empty, and the replicas serve
	// what is approved after the restart.
	r := rs[2].admin(t, http.MethodGet, "/api/v1/jobs", nil)
	var q struct{ Jobs []json.RawMessage }
	if err := json.Unmarshal(r.Body, &q); err != nil || len(q.Jobs) != 0 {
		t.Errorf("jobs left after every image was fetched (%v): %s", err, r.Body)
	}
	for i, ref := range refs {
		rs[1].action(t, "approve", "docker.io/"+ref, "e2e")
		assertSame(t, "after the restart", wants[i], mustPull(t, rs[(i+2)%3].Ref(t, ref)))
	}
}

// TestHAFailStatic: with state.fail_static, a replica that loses
// PostgreSQL keeps serving what it served within the window, answers 503
// for the rest, and says so on /readyz (200 "degraded", so a load
// balancer keeps it); when the database is back it decides as before.
func TestHAFailStatic(t *testing.T) {
	pg := pgtest.Start(t) // its own server: this test stops it
	b := newShared(t)
	b.DSN = pg.NewDatabase(t)
	up := registrytest.NewUpstream(t)
	rs := startReplicas(t, up, 1, b, options{Policy: "auto", Hold: 30 * time.Second,
		Edit: func(cfg string) string {
			return strings.Replace(cfg, "  driver: postgres\n", "  driver: postgres\n  fail_static: 1m\n", 1)
		}})
	a := rs[0]
	var refs []string
	var wants []*artifact
	for i := range 2 {
		repo := fmt.Sprintf("library/static%d", i)
		d := up.PushImage(t, repo+":v1", registrytest.Image(t, 1, 4096, types.OCIManifestSchema1))
		wants = append(wants, mustPull(t, up.Ref(t, repo+"@"+d.String())))
		refs = append(refs, repo+"@"+d.String())
	}
	// Both approved; only the first is pulled through this replica.
	assertSame(t, "before the outage", wants[0], mustPull(t, a.Ref(t, refs[0])))
	if _, err := pull(a.Ref(t, refs[1])); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "docker.io/"+refs[1], stateTimeout, "approved")
	// A third image never reaches this replica before the outage.
	repo3 := "library/static-unseen"
	d3 := up.PushImage(t, repo3+":v1", registrytest.Image(t, 1, 4096, types.OCIManifestSchema1))

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "during the outage", wants[0], mustPull(t, a.Ref(t, refs[0])))
	status, _, err := manifestGET(a, repo3, d3.String())
	if err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("unseen image during the outage: %d, %v; want 503", status, err)
	}
	r := doHTTP(t, http.MethodGet, a.AdminURL+"/readyz", nil, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(string(r.Body), "degraded") || r.Header.Get("Airlock-Degraded") != "true" {
		t.Errorf("/readyz during the outage: %d %q", r.Status, r.Body)
	}
	pg.Restart(t)
	waitFor(t, 30*time.Second, "/readyz ready again", func() bool {
		r := doHTTP(t, http.MethodGet, a.AdminURL+"/readyz", nil, nil)
		return r.Status == http.StatusOK && strings.HasPrefix(string(r.Body), "ready")
	})
	// Back to normal: the unseen image goes through the pipeline (policy
	// auto) and the held pull is answered once it is approved.
	if status, _, err := manifestGET(a, repo3, d3.String()); err != nil || status != http.StatusOK {
		t.Errorf("new image after the outage: %d, %v; want 200 after its pipeline", status, err)
	}
	if rec, _ := a.image(t, "docker.io/"+repo3+"@"+d3.String()); rec.Image.State != "approved" {
		t.Errorf("new image after the outage is %q", rec.Image.State)
	}
}

// TestHARevokeCutsDownloadOnOtherReplica: a revoke through one replica
// cuts a download already in flight from another (the serving replica
// is woken by the database's notification, not by its own admin call).
func TestHARevokeCutsDownloadOnOtherReplica(t *testing.T) {
	up := registrytest.NewUpstream(t)
	const repo = "inflight/replicas"
	d, layer, data := pushBigLayerImage(t, up, repo)
	key := "docker.io/" + repo + "@" + d.String()
	rs := startReplicas(t, up, 2, nil, options{NoHold: true})
	_ = rs[0].getManifest(t, repo, "1")
	rs[0].waitState(t, key, 2*time.Minute, "awaiting-approval")
	rs[1].action(t, "approve", key, "e2e")
	rs[0].waitState(t, key, stateTimeout, "approved")
	assertRevokeCutsDownload(t, rs[0], rs[1], repo, key, layer, data)
}
