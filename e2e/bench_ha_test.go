package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// BenchmarkHA measures the scale-out backends (issue 10), side by side in
// one run, every figure printed next to its reference:
//
//   - cached manifest GET by digest, p50/p99 at 16 clients: one airlock on
//     bbolt + filesystem (the reference), one on PostgreSQL + S3, and three
//     replicas on PostgreSQL + S3 with requests round-robin over them;
//   - blob MB/s (a 16 MiB layer, 4 clients): filesystem vs S3 (MinIO on
//     this machine), one replica, and three replicas round-robin;
//   - upstream GETs per blob when 100 clients round-robin over three
//     replicas pull one uncached image at once: replicas sharing the
//     PostgreSQL state (cross-replica fetch lease) vs three replicas that
//     share only the S3 bucket and coordinate nothing across processes (an
//     in-process guard only, as Harbor's is).
//
// All servers are separate processes on this 2-core machine, PostgreSQL
// and MinIO included, so absolute figures are low; the ratios are the point.
func BenchmarkHA(b *testing.B) {
	ctx := context.Background()
	cl, closeIdle := newBenchClient()
	defer closeIdle()
	up := registrytest.NewUpstream(b)
	const repo = "library/bench-ha"
	d := up.PushImage(b, repo+":v1", registrytest.Image(b, 1, 16<<20, types.OCIManifestSchema1))
	img := mustPull(b, up.Ref(b, repo+"@"+d.String()))
	layer := img.Layers[0]

	quiet := options{Policy: "auto", Hold: 60 * time.Second, TagTTL: time.Minute, LogLevel: "warn"}
	single := startAirlock(b, up, quiet)
	shared := newShared(b)
	onePG := quiet
	onePG.Shared = shared
	pg1 := startAirlock(b, up, onePG)
	pg3 := []*Airlock{pg1, startAirlock(b, up, onePG), startAirlock(b, up, onePG)}
	for _, a := range []*Airlock{single, pg1} {
		approveThroughAirlock(b, a, cl, repo, "v1")
	}

	type target struct {
		name string
		urls []string
	}
	urls := func(as []*Airlock, path string) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.URL+path)
		}
		return out
	}
	mpath := "/v2/" + repo + "/manifests/" + d.String()
	bpath := "/v2/" + repo + "/blobs/" + layer.Digest.String()
	mt := []target{
		{"bbolt+fs, 1 replica", urls([]*Airlock{single}, mpath)},
		{"pg+s3, 1 replica", urls([]*Airlock{pg1}, mpath)},
		{"pg+s3, 3 replicas", urls(pg3, mpath)},
	}
	bt := []target{
		{"filesystem, 1 replica", urls([]*Airlock{single}, bpath)},
		{"s3, 1 replica", urls([]*Airlock{pg1}, bpath)},
		{"s3, 3 replicas", urls(pg3, bpath)},
	}
	const conc, total = 16, 3000
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(os.Stdout, "\nBenchmarkHA iteration %d\n%-24s %10s %10s %12s\n", i+1, "cached manifest GET", "p50 µs", "p99 µs", "p99 / bbolt")
		var ref time.Duration
		for _, t := range mt {
			ds, err := latenciesAcross(ctx, cl, t.urls, manifestAccept, conc, total)
			if err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
			p50, p99 := percentile(ds, 0.5), percentile(ds, 0.99)
			if ref == 0 {
				ref = p99
			}
			fmt.Fprintf(os.Stdout, "%-24s %10.0f %10.0f %12.2f\n", t.name, benchUS(p50), benchUS(p99), ratio(float64(p99), float64(ref)))
		}
		fmt.Fprintf(os.Stdout, "%-24s %10s %12s\n", "16 MiB blob, 4 clients", "MB/s", "/ filesystem")
		var fs float64
		for _, t := range bt {
			mbps, err := throughputAcross(ctx, cl, t.urls, int64(len(layer.Data)), 4, 4)
			if err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
			if fs == 0 {
				fs = mbps
			}
			fmt.Fprintf(os.Stdout, "%-24s %10.1f %12.2f\n", t.name, mbps, ratio(mbps, fs))
		}
	}

	// The herd, once per backend: a new image each.
	herd := func(rs []*Airlock, tag string) float64 {
		hd := up.PushImage(b, repo+":"+tag, registrytest.Image(b, 3, 1<<20, types.OCIManifestSchema1))
		him := mustPull(b, up.Ref(b, repo+"@"+hd.String()))
		up.Reset()
		up.SetBlobRate(4 << 20)
		defer up.SetBlobRate(0)
		var wg sync.WaitGroup
		errs := make([]error, 100)
		for c := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[c] = benchPull(ctx, cl, rs[c%len(rs)].URL, repo, tag)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			b.Fatalf("herd: %v", err)
		}
		blobs := append([]v1.Hash{him.ConfigDigest}, layerDigests(him)...)
		gets := 0
		for _, h := range blobs {
			gets += up.CountBlobGETs(h)
		}
		return float64(gets) / float64(len(blobs))
	}
	withLease := herd(pg3, "herd-lease")
	// Three replicas, each with its own bbolt state, sharing only the S3 bucket.
	bucketOnly := quiet
	bucketOnly.Extra = s3StorageYAMLRoot(shared.s3, false, shared.Root)
	bucketOnly.Env = shared.env()
	var independent []*Airlock
	for range 3 {
		independent = append(independent, startAirlock(b, up, bucketOnly))
	}
	withoutLease := herd(independent, "herd-nolease")
	fmt.Fprintf(os.Stdout, "%-44s %8s\n", "100-client herd over 3 replicas", "GETs/blob")
	fmt.Fprintf(os.Stdout, "%-44s %8.2f\n", "shared PostgreSQL state (cross-replica lease)", withLease)
	fmt.Fprintf(os.Stdout, "%-44s %8.2f\n", "shared S3 only, in-process guard (Harbor)", withoutLease)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(withLease, "GETs/blob-lease")
	b.ReportMetric(withoutLease, "GETs/blob-nolease")
	if withLease != 1 {
		b.Errorf("with the cross-replica lease the upstream served %.2f GETs per blob, want 1", withLease)
	}
}

// latenciesAcross is latencies with request i going to urls[i%len(urls)].
func latenciesAcross(ctx context.Context, cl *http.Client, urls []string, accept string, conc, total int) ([]time.Duration, error) {
	var next atomic.Int64
	out := make([][]time.Duration, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				start := time.Now()
				if _, err := benchGet(ctx, cl, urls[int(i)%len(urls)], accept); err != nil {
					errs[w] = err
					return
				}
				out[w] = append(out[w], time.Since(start))
			}
		}()
	}
	wg.Wait()
	return slices.Concat(out...), errors.Join(errs...)
}

// throughputAcross is throughput with client w using urls[w%len(urls)].
func throughputAcross(ctx context.Context, cl *http.Client, urls []string, size int64, conc, reps int) (float64, error) {
	var wg sync.WaitGroup
	errs := make([]error, conc)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range reps {
				n, err := benchGet(ctx, cl, urls[w%len(urls)], "")
				if err == nil && n != size {
					err = fmt.Errorf("%d bytes, want %d", n, size)
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(size) * float64(conc*reps) / time.Since(start).Seconds() / 1e6, nil
}
