package e2e

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// blobFinalPath is where the filesystem content store keeps a complete blob.
func blobFinalPath(dataDir string, d v1.Hash) string {
	return filepath.Join(dataDir, "content", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")
}

// uploadBytes sums the sizes of the files under the content store's uploads/.
func uploadBytes(t testing.TB, dataDir string) (files int, size int64) {
	t.Helper()
	root := filepath.Join(dataDir, "content", "uploads")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files++
			size += fi.Size()
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("walk %s: %v", root, err)
	}
	return files, size
}

// TestCrashDuringFetchResumes SIGKILLs airlock in the middle of fetching a
// big layer, checks that no partial blob reached its final path, and that
// a restart resumes the job by itself, keeps the blob refused until an
// admin approves, and then serves every byte.
func TestCrashDuringFetchResumes(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	const repo = "library/big"
	const layerSize = 8 << 20
	img := registrytest.Image(t, 1, layerSize, types.DockerManifestSchema2)
	d := up.PushImage(t, repo+":v1", img)
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	big := want.Layers[0].Digest
	image := "docker.io/" + repo + "@" + d.String()
	dataDir := t.TempDir()

	up.SetBlobRate(1 << 20) // 1 MiB/s: the layer takes ~8s
	t.Cleanup(func() { up.SetBlobRate(0) })
	served0 := up.BlobBytesServed()
	gets0 := up.CountBlobGETs(big)

	al := startAirlock(t, up, options{DataDir: dataDir})
	// A manifest request starts the pipeline.
	r := al.getManifest(t, repo, "v1")
	if r.Status != http.StatusForbidden {
		t.Fatalf("first manifest GET: %d %s, want 403 DENIED", r.Status, r.Body)
	}
	// Wait until the layer is partly sent upstream side.
	waitFor(t, 30*time.Second, "the big layer to be partly fetched", func() bool {
		return up.BlobBytesServed()-served0 >= 2<<20
	})
	if rec, _ := al.image(t, image); rec.Image.State != "fetching" {
		t.Fatalf("image is %q mid-fetch, want fetching", rec.Image.State)
	}
	al.Kill(t)
	sent := up.BlobBytesServed() - served0
	t.Logf("SIGKILLed airlock after upstream sent %d of %d layer bytes", sent, len(want.Layers[0].Data))
	if sent >= int64(len(want.Layers[0].Data)) {
		t.Fatalf("the whole layer was sent before the kill; the test did not interrupt the fetch")
	}

	// A fresh look at the content store: the big layer is not at its final path.
	if _, err := os.Stat(blobFinalPath(dataDir, big)); !os.IsNotExist(err) {
		t.Fatalf("after the kill, %s exists (err %v): a partial blob reached its final path", blobFinalPath(dataDir, big), err)
	}
	files, size := uploadBytes(t, dataDir)
	t.Logf("after the kill: %d partial upload file(s), %d bytes under content/uploads", files, size)
	if size >= layerSize {
		t.Errorf("uploads hold %d bytes, more than the layer", size)
	}

	// Restart on the same data_dir, with the upstream at full speed.
	up.SetBlobRate(0)
	al2 := startAirlock(t, up, options{DataDir: dataDir})
	// Before approval the big layer is refused, whatever the job's progress.
	assertBlobRefused(t, al2, repo, big)
	// No client request: the queued job resumes by itself.
	rec := al2.waitState(t, image, stateTimeout, "awaiting-approval")
	if !slices.Contains(rec.Blobs, big.String()) {
		t.Errorf("record blobs %v do not include the big layer %s", rec.Blobs, big)
	}
	if n := up.CountBlobGETs(big) - gets0; n < 2 {
		t.Errorf("upstream saw %d GETs of the big layer, want a second one from the resumed job", n)
	}
	if !haSuite() { // on S3 the content is not under data_dir
		if fi, err := os.Stat(blobFinalPath(dataDir, big)); err != nil || fi.Size() != int64(len(want.Layers[0].Data)) {
			t.Errorf("after the resumed fetch: %s: %v (size %v), want the whole layer", blobFinalPath(dataDir, big), err, fi)
		}
		if files, _ := uploadBytes(t, dataDir); files != 0 {
			t.Errorf("%d upload file(s) left under content/uploads after the resumed fetch", files)
		}
	}
	assertBlobRefused(t, al2, repo, big)
	r = al2.getManifest(t, repo, d.String())
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "awaiting-approval") {
		t.Errorf("manifest before approval: %d %s, want 403 awaiting-approval", r.Status, r.Body)
	}

	al2.action(t, "approve", image, "e2e: approved after the crash")
	assertSame(t, "pull after restart", want, mustPull(t, al2.Ref(t, repo+":v1")))

	// The audit log shows every transition, oldest first here.
	entries := al2.audit(t, image)
	slices.Reverse(entries)
	var trail []string
	for _, e := range entries {
		trail = append(trail, e.Action+":"+e.From+"->"+e.To+"("+e.Actor+")")
	}
	t.Logf("audit trail: %s", strings.Join(trail, " | "))
	next := 0
	for _, step := range []struct{ action, to, actor string }{
		{"request", "pending", "pull"},
		{"step:fetch", "fetching", "pipeline"}, // the run that was killed
		{"step:fetch", "fetching", "pipeline"}, // the resumed run
		{"", "awaiting-approval", "pipeline"},
		{"approve", "approved", "admin"},
	} {
		found := false
		for ; next < len(entries); next++ {
			e := entries[next]
			if e.To == step.to && (step.action == "" || e.Action == step.action) && strings.HasPrefix(e.Actor, step.actor) {
				found = true
				next++
				break
			}
		}
		if !found {
			t.Errorf("audit log lacks, in order, %s -> %s by %s; trail: %s", step.action, step.to, step.actor, strings.Join(trail, " | "))
			break
		}
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Seq <= entries[i-1].Seq || entries[i].Time.Before(entries[i-1].Time) {
			t.Errorf("audit entries out of order: %+v before %+v", entries[i-1], entries[i])
		}
	}
}
