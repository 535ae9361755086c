package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// TestConcurrentColdPulls: many clients pulling the same uncached image at
// once all get it (the hold covers the fetch under the auto policy), and
// the upstream sees exactly one GET per blob.
func TestConcurrentColdPulls(t *testing.T) {
	t.Parallel()
	const clients = 50
	up := registrytest.NewUpstream(t)
	const repo = "library/hot"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 4, 256<<10, types.DockerManifestSchema2))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	up.Reset()

	al := startAirlock(t, up, options{Policy: "auto", Hold: 30 * time.Second})
	ref := al.Ref(t, repo+":v1")
	// A transport of its own, closed at the end: otherwise connections the
	// clients opened but never used keep airlock's graceful shutdown
	// waiting (net/http treats a new, unused connection as busy for 5s).
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = clients
	defer tr.CloseIdleConnections()

	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, clients)
	got := make([]*artifact, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], errs[i] = pull(ref, remote.WithTransport(tr))
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent cold pulls finished in %s", clients, time.Since(began).Round(time.Millisecond))

	failed := 0
	for i := range clients {
		if errs[i] != nil {
			failed++
			if failed <= 5 {
				t.Errorf("client %d: %v", i, errs[i])
			}
			continue
		}
		assertSame(t, fmt.Sprintf("client %d", i), want, got[i])
	}
	if failed > 0 {
		t.Fatalf("%d of %d clients failed", failed, clients)
	}

	for _, b := range want.blobs() {
		if n := up.CountBlobGETs(b); n != 1 {
			t.Errorf("upstream saw %d GETs of blob %s, want exactly 1", n, b)
		}
	}
	if n := up.Count("GET", "/v2/"+repo+"/manifests/"+d.String()); n != 1 {
		t.Errorf("upstream saw %d GETs of the manifest by digest, want 1", n)
	}
	rec, _ := al.image(t, "docker.io/"+repo+"@"+d.String())
	if rec.Image.State != "approved" || rec.Image.ApprovedBy != "pipeline" {
		t.Errorf("image is %q approved by %q, want approved by the pipeline (auto policy)", rec.Image.State, rec.Image.ApprovedBy)
	}
}
