package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/content"
)

// gcResult is the part of `airlock gc --json` (POST /api/v1/gc) the tests
// read, declared here to pin the API's JSON field names.
type gcResult struct {
	DryRun bool `json:"dry_run"`
	Purges []struct {
		Image  string `json:"image"`
		State  string `json:"state"`
		Rule   string `json:"rule"`
		Reason string `json:"reason"`
		Bytes  int64  `json:"bytes"`
	} `json:"purges"`
	Skipped      []string `json:"skipped"`
	BlobsFreed   int      `json:"blobs_freed"`
	BytesFreed   int64    `json:"bytes_freed"`
	ContentBlobs int      `json:"content_blobs"`
	ContentBytes int64    `json:"content_bytes"`
	KeptBytes    int64    `json:"kept_bytes"`
}

// gc runs `airlock gc --json` (with --dry-run if dry) and decodes it.
func (a *Airlock) gc(t testing.TB, dry bool) gcResult {
	t.Helper()
	args := []string{"gc", "--json"}
	if dry {
		args = append(args, "--dry-run")
	}
	out, err := a.cli(t, args...)
	if err != nil {
		t.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var res gcResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("decode airlock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if res.DryRun != dry {
		t.Fatalf("airlock %s: dry_run %v", strings.Join(args, " "), res.DryRun)
	}
	return res
}

// gcRetry runs POST /api/v1/gc until it is not refused as busy (a
// collector killed mid-run holds its lease until the lease expires).
func (a *Airlock) gcRetry(t testing.TB, timeout time.Duration) gcResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := a.admin(t, http.MethodPost, "/api/v1/gc", nil)
		if r.Status == http.StatusOK {
			var res gcResult
			if err := json.Unmarshal(r.Body, &res); err != nil {
				t.Fatalf("decode gc: %v\n%s", err, r.Body)
			}
			return res
		}
		if r.Status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("POST /api/v1/gc: %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// contentStore opens the content store of a's data directory from the
// test process: the filesystem under data_dir/content, or on the ha
// backend the S3 prefix its replicas share.
func contentStore(t testing.TB, a *Airlock) *content.Store {
	t.Helper()
	ctx := context.Background()
	if !haSuite() {
		cs, err := content.New(ctx, "filesystem", map[string]any{"rootdirectory": filepath.Join(a.DataDir, "content")})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	b := backendFor(t, a.DataDir)
	params := b.s3.Params(b.Root)
	// Credentials as parameters: the driver then does not read them from
	// this (shared, parallel) test process's environment.
	params["accesskey"], params["secretkey"] = b.s3.AccessKey, b.s3.SecretKey
	drv, err := factory.Create(ctx, content.S3DriverName, params)
	if err != nil {
		t.Fatal(err)
	}
	return content.NewWithDriver(drv)
}

// storedBlobs lists every blob in cs with its size.
func storedBlobs(t testing.TB, cs *content.Store) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := cs.Walk(context.Background(), func(b content.BlobInfo) error {
		out[b.Digest.String()] = b.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertStored checks that each of ds is (want) or is not (!want) in cs.
func assertStored(t testing.TB, cs *content.Store, what string, want bool, ds ...string) {
	t.Helper()
	for _, d := range ds {
		_, err := cs.Stat(context.Background(), digest.Digest(d))
		switch {
		case want && err != nil:
			t.Errorf("%s: %s not in the content store: %v", what, d, err)
		case !want && err == nil:
			t.Errorf("%s: %s still in the content store", what, d)
		case !want && !errors.Is(err, content.ErrNotFound):
			t.Errorf("%s: stat %s: %v", what, d, err)
		}
	}
}

// metricValue returns the value of the sample of metric name (with labels,
// e.g. `x{rule="a"}`, if given so) in a Prometheus text exposition.
func metricValue(body, name string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// digests returns the string form of hs.
func digests(hs ...v1.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

// retentionDetail is the part of an image record retention changes.
type retentionDetail struct {
	Image struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
		Pinned bool   `json:"pinned"`
	} `json:"image"`
}

func (a *Airlock) retentionState(t testing.TB, image string) retentionDetail {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/images/"+image, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("image %s: %d %s", image, r.Status, r.Body)
	}
	var d retentionDetail
	if err := json.Unmarshal(r.Body, &d); err != nil {
		t.Fatalf("decode image %s: %v", image, err)
	}
	return d
}

// TestRetentionGC: two approved, pulled images share a base layer; one is
// revoked and denied_after makes it purgeable. The dry run lists exactly
// that purge and the bytes it frees and changes nothing; the run purges it
// (state purged, reason, audited as the admin who asked for the run),
// deletes its own blobs and
// keeps the shared one, and the kept image is still served byte for byte.
// A pull of the purged digest is refused and the image runs the pipeline
// again; approved again, it is served byte for byte. A pinned image is
// exempt from gc until unpinned, and the gc metrics are on /metrics.
func TestRetentionGC(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Extra: "retention:\n  denied_after: 1s\n  gc_grace: 1s\npulls:\n  flush_interval: 100ms\n"})
	cs := contentStore(t, al)

	base := registrytest.Image(t, 1, 64<<10, types.OCIManifestSchema1)
	const keepRepo, dropRepo = "library/gc-keep", "library/gc-drop"
	dKeep := up.PushImage(t, keepRepo+":v1", registrytest.PaddedImage(t, base, 32<<10))
	dDrop := up.PushImage(t, dropRepo+":v1", registrytest.PaddedImage(t, base, 48<<10))
	wantKeep := mustPull(t, up.Ref(t, keepRepo+"@"+dKeep.String()))
	wantDrop := mustPull(t, up.Ref(t, dropRepo+"@"+dDrop.String()))
	if wantKeep.Layers[0].Digest != wantDrop.Layers[0].Digest {
		t.Fatal("the two images do not share their base layer")
	}
	shared := wantKeep.Layers[0].Digest.String()
	keepOwn := digests(dKeep, wantKeep.ConfigDigest, wantKeep.Layers[1].Digest)
	dropOwn := digests(dDrop, wantDrop.ConfigDigest, wantDrop.Layers[1].Digest)
	dropBytes := int64(len(wantDrop.Manifest) + len(wantDrop.Config) + len(wantDrop.Layers[1].Data))
	keepImage := "docker.io/" + keepRepo + "@" + dKeep.String()
	dropImage := "docker.io/" + dropRepo + "@" + dDrop.String()
	keepRef := al.Ref(t, keepRepo+"@"+dKeep.String())
	dropRef := al.Ref(t, dropRepo+"@"+dDrop.String())

	approveFirstPull(t, al, keepRef, keepImage)
	approveFirstPull(t, al, dropRef, dropImage)
	assertSame(t, "kept image", wantKeep, mustPull(t, keepRef))
	assertSame(t, "image to drop", wantDrop, mustPull(t, dropRef))
	assertStored(t, cs, "after the pulls", true, append(append([]string{shared}, keepOwn...), dropOwn...)...)

	// Nothing is purgeable yet: approved images, no unpulled_after.
	if res := al.gc(t, true); len(res.Purges) != 0 {
		t.Fatalf("dry run before the revoke: purges %+v", res.Purges)
	}
	al.action(t, "revoke", dropImage, "e2e: revoked for retention")

	// Dry run: once denied_after and gc_grace passed, exactly that purge
	// and its own three blobs.
	var dry gcResult
	waitFor(t, 30*time.Second, "the revoked image to be purgeable", func() bool {
		dry = al.gc(t, true)
		return len(dry.Purges) > 0 && dry.BlobsFreed > 0
	})
	if len(dry.Purges) != 1 {
		t.Fatalf("dry run purges %+v, want only %s", dry.Purges, dropImage)
	}
	p := dry.Purges[0]
	if p.Image != dropImage || p.State != "revoked" || p.Rule != "denied_after" || !strings.Contains(p.Reason, "denied_after") {
		t.Errorf("dry run purge %+v", p)
	}
	if p.Bytes != dropBytes {
		t.Errorf("dry run: purge frees %d bytes, want %d (manifest, config and own layer)", p.Bytes, dropBytes)
	}
	if dry.BlobsFreed != 3 || dry.BytesFreed != dropBytes {
		t.Errorf("dry run would free %d blobs, %d bytes; want 3, %d", dry.BlobsFreed, dry.BytesFreed, dropBytes)
	}
	// The human-readable dry run says the same.
	if out, err := al.cli(t, "gc", "--dry-run"); err != nil || !strings.Contains(out, "would purge 1 images") ||
		!strings.Contains(out, dropImage) || !strings.Contains(out, fmt.Sprintf("would free 3 blobs, %d bytes", dropBytes)) {
		t.Errorf("airlock gc --dry-run: %v\n%s", err, out)
	}
	// ... and changed nothing.
	auditBefore := len(al.audit(t, dropImage))
	if d := al.retentionState(t, dropImage); d.Image.State != "revoked" {
		t.Errorf("after the dry run: %s is %s", dropImage, d.Image.State)
	}
	assertStored(t, cs, "after the dry run", true, append(append([]string{shared}, keepOwn...), dropOwn...)...)
	assertSame(t, "kept image after the dry run", wantKeep, mustPull(t, keepRef))

	// The run.
	res := al.gc(t, false)
	if len(res.Purges) != 1 || res.Purges[0].Image != dropImage || res.Purges[0].Bytes != dropBytes {
		t.Fatalf("gc purges %+v (skipped %v), want %s freeing %d bytes", res.Purges, res.Skipped, dropImage, dropBytes)
	}
	if res.BlobsFreed != 3 || res.BytesFreed != dropBytes {
		t.Errorf("gc freed %d blobs, %d bytes; want 3, %d", res.BlobsFreed, res.BytesFreed, dropBytes)
	}
	stored := storedBlobs(t, cs)
	var storedBytes int64
	for _, n := range stored {
		storedBytes += n
	}
	if res.ContentBlobs != len(stored) || res.ContentBytes != storedBytes {
		t.Errorf("gc says the store holds %d blobs, %d bytes; it holds %d, %d", res.ContentBlobs, res.ContentBytes, len(stored), storedBytes)
	}
	d := al.retentionState(t, dropImage)
	if d.Image.State != "purged" || !strings.Contains(d.Image.Reason, "denied_after") {
		t.Errorf("after gc: %s is %s (%s), want purged by denied_after", dropImage, d.Image.State, d.Image.Reason)
	}
	audit := al.audit(t, dropImage)
	if len(audit) != auditBefore+1 || audit[0].Action != "purge" || audit[0].Actor != "admin" ||
		audit[0].From != "revoked" || audit[0].To != "purged" || !strings.Contains(audit[0].Reason, "denied_after") {
		t.Errorf("after gc: audit %+v, want one new purge entry by admin (who ran gc)", audit)
	}
	assertStored(t, cs, "purged image's own blobs", false, dropOwn...)
	assertStored(t, cs, "shared base layer and kept image", true, append([]string{shared}, keepOwn...)...)
	assertSame(t, "kept image after gc", wantKeep, mustPull(t, keepRef))
	if d := al.retentionState(t, keepImage); d.Image.State != "approved" {
		t.Errorf("kept image is %s", d.Image.State)
	}

	// Metrics of this process's only run.
	m := string(doHTTP(t, http.MethodGet, al.AdminURL+"/metrics", nil, nil).Body)
	for name, want := range map[string]float64{
		"airlock_gc_blobs_freed_total":                               3,
		"airlock_gc_bytes_freed_total":                               float64(dropBytes),
		"airlock_gc_duration_seconds_count":                          1,
		`airlock_retention_images_purged_total{rule="denied_after"}`: 1,
		"airlock_content_blobs":                                      float64(len(stored)),
		"airlock_content_bytes":                                      float64(storedBytes),
	} {
		if got, ok := metricValue(m, name); !ok || got != want {
			t.Errorf("/metrics %s = %v (found %v), want %v", name, got, ok, want)
		}
	}

	// A pull of the purged digest is refused and queues it again.
	before := up.CountBlobGETs(wantDrop.Layers[1].Digest)
	_, err := pull(dropRef)
	assertDenied(t, "pull of the purged image", err, "quarantine")
	al.waitState(t, dropImage, stateTimeout, "awaiting-approval")
	if up.CountBlobGETs(wantDrop.Layers[1].Digest) <= before {
		t.Errorf("the purged image's layer was not fetched again from the upstream")
	}
	assertStored(t, cs, "re-fetched image", true, dropOwn...)
	al.action(t, "approve", dropImage, "e2e: approved again after purge")
	assertSame(t, "purged image approved again", wantDrop, mustPull(t, dropRef))
	// Its audit trail, oldest first, shows the whole way round.
	var trail []string
	audit = al.audit(t, dropImage)
	for i := len(audit) - 1; i >= 0; i-- {
		trail = append(trail, audit[i].To)
	}
	t.Logf("audit trail of %s: %v", dropImage, trail)
	if !isSubsequence(trail, []string{"awaiting-approval", "approved", "revoked", "purged", "pending", "fetching", "awaiting-approval", "approved"}) {
		t.Errorf("audit trail %v does not show purge, re-fetch, quarantine and approval in order", trail)
	}

	// Pin: a purgeable image is exempt from gc until unpinned.
	al.action(t, "revoke", dropImage, "e2e: revoked again")
	waitFor(t, 30*time.Second, "the revoked image to be purgeable again", func() bool {
		return len(al.gc(t, true).Purges) == 1
	})
	if out, err := al.cli(t, "pin", dropImage, "--reason", "e2e: keep it"); err != nil || !strings.Contains(out, "pinned true") {
		t.Fatalf("airlock pin: %v\n%s", err, out)
	}
	if out, err := al.cli(t, "pin", dropImage); err == nil {
		t.Errorf("airlock pin of a pinned image succeeded:\n%s", out)
	}
	if res := al.gc(t, false); len(res.Purges) != 0 || res.BlobsFreed != 0 {
		t.Errorf("gc with the image pinned: purges %+v, freed %d blobs", res.Purges, res.BlobsFreed)
	}
	if d := al.retentionState(t, dropImage); d.Image.State != "revoked" || !d.Image.Pinned {
		t.Errorf("pinned image after gc: %+v", d.Image)
	}
	assertStored(t, cs, "pinned image", true, dropOwn...)
	if a := al.audit(t, dropImage); a[0].Action != "pin" || !strings.Contains(a[0].Reason, "e2e: keep it") {
		t.Errorf("pin not audited: %+v", a[0])
	}
	if out, err := al.cli(t, "unpin", dropImage); err != nil || !strings.Contains(out, "pinned false") {
		t.Fatalf("airlock unpin: %v\n%s", err, out)
	}
	if res := al.gc(t, false); len(res.Purges) != 1 || res.Purges[0].Image != dropImage || res.BlobsFreed != 3 {
		t.Errorf("gc after unpin: purges %+v, freed %d blobs; want %s and its 3 blobs", res.Purges, res.BlobsFreed, dropImage)
	}
	assertStored(t, cs, "unpinned, purged image", false, dropOwn...)
	assertStored(t, cs, "shared base layer and kept image", true, append([]string{shared}, keepOwn...)...)
	assertSame(t, "kept image at the end", wantKeep, mustPull(t, keepRef))
}

// isSubsequence reports whether want appears in got in order (not
// necessarily adjacent).
func isSubsequence(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestRetentionKillMidGC: many revoked images are purgeable; a gc started
// through the admin API is SIGKILLed while it sweeps. After a restart on
// the same data a second gc finishes the job: every purgeable image is
// purged, every kept image is served byte for byte, and the content store
// holds exactly the blobs kept images reference (no orphan, nothing
// missing).
func TestRetentionKillMidGC(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("many images: skipped in -short")
	}
	up := registrytest.NewUpstream(t)
	// Pull records off: the queueing GETs below are pulls, written in
	// batches; a batch landing between the gc's plan and its purges
	// rightly keeps those images (pulled since), and the run would not
	// purge every image this test counts on (seen on a loaded CI machine).
	o := options{Policy: "auto", Extra: "retention:\n  denied_after: 1s\n  gc_grace: 1s\npulls:\n  enabled: false\n"}
	al := startAirlock(t, up, o)
	cs := contentStore(t, al)

	const nKeep, nDrop, ownLayers = 3, 150, 6
	base := registrytest.Image(t, 1, 8<<10, types.OCIManifestSchema1)
	type img struct {
		repo  string
		d     v1.Hash
		image string
		want  *artifact
	}
	mk := func(repo string) img {
		im := base
		for range ownLayers {
			im = registrytest.PaddedImage(t, im, 512)
		}
		d := up.PushImage(t, repo+":v1", im)
		return img{repo: repo, d: d, image: "docker.io/" + repo + "@" + d.String()}
	}
	var keep, drop []img
	for i := range nKeep {
		k := mk(fmt.Sprintf("library/kill-keep-%d", i))
		k.want = mustPull(t, up.Ref(t, k.repo+"@"+k.d.String()))
		keep = append(keep, k)
	}
	for i := range nDrop {
		drop = append(drop, mk(fmt.Sprintf("library/kill-drop-%03d", i)))
	}
	all := append(append([]img{}, keep...), drop...)

	// Queue every image with a manifest GET (policy auto approves it).
	parallel(t, len(all), 8, func(i int) error {
		r, err := httpClient.Get(al.URL + "/v2/" + all[i].repo + "/manifests/" + all[i].d.String())
		if err != nil {
			return err
		}
		r.Body.Close()
		return nil
	})
	waitFor(t, 3*time.Minute, "every image approved", func() bool {
		return len(al.images(t, "approved")) == len(all)
	})
	for _, k := range keep {
		assertSame(t, "kept "+k.repo, k.want, mustPull(t, al.Ref(t, k.repo+"@"+k.d.String())))
	}
	parallel(t, len(drop), 8, func(i int) error {
		r, err := httpPostJSON(al.AdminURL+"/api/v1/revoke", map[string]string{"image": drop[i].image, "reason": "e2e: kill mid-gc"})
		if err != nil {
			return err
		}
		if r != http.StatusOK {
			return fmt.Errorf("revoke %s: %d", drop[i].image, r)
		}
		return nil
	})
	perDrop := ownLayers + 2 // manifest, config, own layers
	waitFor(t, 30*time.Second, "every revoked image purgeable", func() bool {
		dry := al.gc(t, true)
		return len(dry.Purges) == nDrop && dry.BlobsFreed == nDrop*perDrop
	})
	total := len(storedBlobs(t, cs))
	if want := 1 + nKeep*perDrop + nDrop*perDrop; total != want {
		t.Fatalf("%d blobs stored, want %d", total, want)
	}

	// Start the run; SIGKILL airlock as soon as the sweep deleted something.
	gcDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, al.AdminURL+"/api/v1/gc", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		status := 0
		if r, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req); err == nil {
			r.Body.Close()
			status = r.StatusCode
		}
		gcDone <- status
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		// A walk may fail when the sweep removes a directory under it.
		n := 0
		err := cs.Walk(context.Background(), func(content.BlobInfo) error { n++; return nil })
		if err == nil && n < total {
			break
		}
	}
	al.Kill(t)
	status := <-gcDone
	left := len(storedBlobs(t, cs))
	switch {
	case left == total:
		t.Fatalf("the sweep deleted nothing in 2 minutes (gc answered %d)", status)
	case left == total-nDrop*perDrop:
		t.Logf("killed after the sweep had finished (gc answered %d): the test did not cut it", status)
	default:
		t.Logf("killed mid-sweep: %d of %d blobs to free are left", left-(total-nDrop*perDrop), nDrop*perDrop)
	}

	// Restart on the same data; the next gc finishes the sweep.
	o.DataDir = al.DataDir
	al2 := startAirlock(t, up, o)
	// Every purge committed, with its audit entry, before the sweep began;
	// the partial sweep deleted nothing a kept image needs.
	if n := len(al2.images(t, "purged")); n != nDrop {
		t.Errorf("after the kill: %d images purged, want %d", n, nDrop)
	}
	if a := al2.audit(t, drop[nDrop-1].image); len(a) == 0 || a[0].Action != "purge" || a[0].Actor != "admin" {
		t.Errorf("after the kill: audit of %s: %+v", drop[nDrop-1].image, a)
	}
	for _, k := range keep {
		assertSame(t, "kept "+k.repo+" after the kill", k.want, mustPull(t, al2.Ref(t, k.repo+"@"+k.d.String())))
	}
	res := al2.gcRetry(t, 30*time.Second)
	t.Logf("second gc: %d purges, %d blobs freed, %d skipped", len(res.Purges), res.BlobsFreed, len(res.Skipped))
	if n := len(al2.images(t, "purged")); n != nDrop {
		t.Errorf("%d images purged, want %d", n, nDrop)
	}
	approved := al2.images(t, "approved")
	if len(approved) != nKeep {
		t.Errorf("%d images approved, want %d", len(approved), nKeep)
	}
	for _, k := range keep {
		assertSame(t, "kept "+k.repo+" after the kill and gc", k.want, mustPull(t, al2.Ref(t, k.repo+"@"+k.d.String())))
	}
	// The store holds exactly what kept images reference.
	referenced := map[string]bool{}
	for _, rec := range approved {
		referenced[rec.Digest] = true
		for _, d := range append(slices.Clone(rec.Manifests), rec.Blobs...) {
			referenced[d] = true
		}
	}
	stored := storedBlobs(t, cs)
	for d := range stored {
		if !referenced[d] {
			t.Errorf("orphan blob %s left in the content store", d)
		}
	}
	for d := range referenced {
		if _, ok := stored[d]; !ok {
			t.Errorf("blob %s of a kept image is missing", d)
		}
	}
	if len(stored) != 1+nKeep*perDrop {
		t.Errorf("%d blobs stored at the end, want %d", len(stored), 1+nKeep*perDrop)
	}
	// Quiet: a further run has nothing to do.
	if res := al2.gc(t, false); len(res.Purges) != 0 || res.BlobsFreed != 0 {
		t.Errorf("gc after the store is clean: purges %d, freed %d blobs", len(res.Purges), res.BlobsFreed)
	}
}

// httpPostJSON POSTs body as JSON to an admin API URL with the token and
// returns the status (for use off the test goroutine).
func httpPostJSON(u string, body any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(string(b)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	r, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	r.Body.Close()
	return r.StatusCode, nil
}

// parallel runs fn(0..n-1) on up to width goroutines and fails the test
// with the first error.
func parallel(t testing.TB, n, width int, fn func(i int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range width {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
