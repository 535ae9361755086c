package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers the "filesystem" storage driver
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"   // registers the "inmemory" storage driver
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// This file holds the registry benchmarks of issue 6 (docs/BENCHMARKS.md):
//
//	BenchmarkRegistryCached  cached approved pulls: airlock vs distribution
//	                         (filesystem and inmemory drivers) vs net/http
//	BenchmarkRegistryCold    cold pulls: airlock vs distribution's proxy mode
//	BenchmarkRegistryMemory  airlock's peak RSS while 16 clients pull a large layer
//
// Every server under test runs in its own process: airlock is the real
// binary, and the distribution registries and the net/http file server are
// this test binary re-executed in a child mode (see init below), so no
// server shares a Go runtime with the load-generating clients.
//
//	go test ./e2e -run '^$' -bench Registry -benchtime 3x
//
// AIRLOCK_BENCH_LARGE=1 adds a 512 MiB blob to the throughput and memory
// benchmarks.

// benchChildEnv selects a child mode of the test binary: "registry" runs a
// distribution registry from the YAML config at benchChildConfig; "files"
// serves benchChildDir with http.FileServer on benchChildAddr.
const (
	benchChildEnv    = "AIRLOCK_BENCH_CHILD"
	benchChildConfig = "AIRLOCK_BENCH_CHILD_CONFIG"
	benchChildDir    = "AIRLOCK_BENCH_CHILD_DIR"
	benchChildAddr   = "AIRLOCK_BENCH_CHILD_ADDR"
)

func init() {
	// Runs before TestMain: a child never builds airlock or runs tests.
	if mode := os.Getenv(benchChildEnv); mode != "" {
		os.Exit(benchChild(mode))
	}
}

func benchChild(mode string) int {
	var h http.Handler
	addr := os.Getenv(benchChildAddr)
	switch mode {
	case "registry":
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.PanicLevel)
		f, err := os.Open(os.Getenv(benchChildConfig))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			return 2
		}
		cfg, err := configuration.Parse(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench child: config:", err)
			return 2
		}
		h = handlers.NewApp(context.Background(), cfg)
		addr = cfg.HTTP.Addr
	case "files":
		h = http.FileServer(http.Dir(os.Getenv(benchChildDir)))
	default:
		fmt.Fprintln(os.Stderr, "bench child: unknown mode", mode)
		return 2
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	return 0
}

// benchServer is a server process under test.
type benchServer struct {
	Name string
	URL  string
	Host string
	Root string // the filesystem driver's rootdirectory, if any
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *benchServer) PID() int { return s.cmd.Process.Pid }

// startBenchChild re-executes the test binary in child mode with env, waits
// until GET probe answers, and kills the child at cleanup.
func startBenchChild(tb testing.TB, label, host, probe string, env ...string) *benchServer {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	s := &benchServer{Name: label, URL: "http://" + host, Host: host, done: make(chan struct{})}
	logPath := filepath.Join(tb.TempDir(), label+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	s.cmd = exec.Command(self)
	s.cmd.Env = append(append(childEnv(), benchChildAddr+"="+host), env...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// The child dies with the test binary, whatever happens to it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		tb.Fatal(err)
	}
	logf.Close()
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	tb.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.done:
			out, _ := os.ReadFile(logPath)
			tb.Fatalf("%s exited before it was ready:\n%s", label, out)
		default:
		}
		resp, err := http.Get(s.URL + probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return s
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			tb.Fatalf("%s not ready after 20s: %v\n%s", label, err, out)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// startDistribution runs distribution v3 in a child process: driver is
// "filesystem" (in a temp dir) or "inmemory"; proxyURL, if set, makes it a
// pull-through cache of that registry.
func startDistribution(tb testing.TB, label, driver, proxyURL string) *benchServer {
	tb.Helper()
	dir := tb.TempDir()
	host := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	storage := "  inmemory: {}\n"
	root := ""
	if driver == "filesystem" {
		root = filepath.Join(dir, "storage")
		storage = fmt.Sprintf("  filesystem:\n    rootdirectory: %q\n", root)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
%s  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: airlock-bench
`, storage, host)
	if proxyURL != "" {
		cfg += fmt.Sprintf("proxy:\n  remoteurl: %q\n", proxyURL)
	}
	p := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	s := startBenchChild(tb, label, host, "/v2/", benchChildEnv+"=registry", benchChildConfig+"="+p)
	s.Root = root
	return s
}

// startAirlockAt runs airlock with the auto policy in front of any
// registry URL (the benchmarks' distribution registries).
func startAirlockAt(tb testing.TB, upstreamURL string, hold time.Duration) *Airlock {
	tb.Helper()
	return startAirlock(tb, nil, options{Policy: "auto", Hold: hold, UpstreamURL: upstreamURL, TagTTL: time.Minute, LogLevel: "warn"})
}

// ---- client side ----

// benchTransport is shared by all benchmark clients: enough idle
// connections for 100 concurrent clients, no transparent gzip.
func newBenchClient() (*http.Client, func()) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Minute}, tr.CloseIdleConnections
}

// benchGet GETs u, reads and discards the body, and returns the body size.
// Any status but 200 is an error.
func benchGet(ctx context.Context, c *http.Client, u, accept string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: body: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return n, nil
}

// benchPull pulls repo:tag from base like a client: the manifest, then the
// config and every layer in order, reading every byte.
func benchPull(ctx context.Context, c *http.Client, base, repo, tag string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET manifest %s:%s: %s %s", repo, tag, resp.Status, benchTail(string(body), 3))
	}
	var m struct {
		Config v1.Descriptor   `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("decode manifest: %w", err)
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		n, err := benchGet(ctx, c, base+"/v2/"+repo+"/blobs/"+d.Digest.String(), "")
		if err != nil {
			return err
		}
		if n != d.Size {
			return fmt.Errorf("blob %s: got %d bytes, want %d", d.Digest, n, d.Size)
		}
	}
	return nil
}

// latencies runs total requests to u with c concurrent clients and returns
// every request's duration.
func latencies(ctx context.Context, cl *http.Client, u, accept string, conc, total int) ([]time.Duration, error) {
	return latenciesAcross(ctx, cl, []string{u}, accept, conc, total)
}

// throughput GETs u reps times with conc concurrent clients (reps each) and
// returns the aggregate MB/s (1 MB = 1e6 bytes).
func throughput(ctx context.Context, cl *http.Client, u string, size int64, conc, reps int) (float64, error) {
	return throughputAcross(ctx, cl, []string{u}, size, conc, reps)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func benchUS(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func benchLarge() bool { return os.Getenv("AIRLOCK_BENCH_LARGE") == "1" }

// pushTo pushes img to the registry at host as repo:tag.
func pushTo(tb testing.TB, host, ref string, img v1.Image) v1.Hash {
	tb.Helper()
	r, err := name.ParseReference(host+"/"+ref, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		tb.Fatalf("push %s: %v", r, err)
	}
	d, err := img.Digest()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// singleLayer returns the digest and size of img's only layer.
func singleLayer(tb testing.TB, img v1.Image) (v1.Hash, int64) {
	tb.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		tb.Fatalf("image layers: %d, %v", len(ls), err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		tb.Fatal(err)
	}
	n, err := ls[0].Size()
	if err != nil {
		tb.Fatal(err)
	}
	return d, n
}

// approveThroughAirlock makes airlock fetch and approve repo:tag (policy
// auto; the held GET answers 200 once the image is approved).
func approveThroughAirlock(tb testing.TB, al *Airlock, cl *http.Client, repo, tag string) {
	tb.Helper()
	if err := benchPull(context.Background(), cl, al.URL, repo, tag); err != nil {
		tb.Fatalf("first pull through airlock: %v\n%s", err, al.logTail(30))
	}
}

// ---- 1. cached approved pulls ----

type cachedTarget struct {
	name string
	base string
	repo string
}

type latRow struct {
	what     string
	conc     int
	p50, p99 map[string]time.Duration
	n        int
	order    []string
}

type tputRow struct {
	what  string
	size  int64
	conc  int
	mbps  map[string]float64
	order []string
}

// BenchmarkRegistryCached compares serving approved, cached content:
// airlock (policy auto; every image pulled once through it before the
// clock starts) against distribution v3 serving the same content from the
// filesystem driver (the fair comparison: airlock stores on the
// filesystem too) and from the inmemory driver, and, for blobs, the same
// blob file served by net/http's FileServer (the ceiling of disk and
// loopback). All servers are separate processes on 127.0.0.1. Within one
// iteration every server is measured once, in an order that rotates per
// iteration.
func BenchmarkRegistryCached(b *testing.B) {
	ctx := context.Background()
	cl, closeIdle := newBenchClient()
	defer closeIdle()

	distFS := startDistribution(b, "distribution-fs", "filesystem", "")
	distMem := startDistribution(b, "distribution-inmemory", "inmemory", "")
	al := startAirlockAt(b, distFS.URL, 2*time.Minute)

	// The small image (config + one ~1 MiB layer) goes to every registry;
	// the large blobs only to the filesystem one (airlock's upstream):
	// the inmemory driver copies its whole buffer on every write, which
	// makes large pushes quadratic.
	const repo, tag = "bench/cached", "v1"
	small := registrytest.Image(b, 1, 1<<20, types.DockerManifestSchema2)
	smallDigest := pushTo(b, distFS.Host, repo+":"+tag, small)
	pushTo(b, distMem.Host, repo+":"+tag, small)
	smallLayer, smallSize := singleLayer(b, small)
	type blobCase struct {
		label string
		repo  string
		d     v1.Hash
		size  int64
		reps  int // GETs per client per iteration
	}
	blobs := []blobCase{{"1MiB", repo, smallLayer, smallSize, 64}}
	large := []struct {
		label string
		size  int64
		reps  int
	}{{"64MiB", 64 << 20, 2}}
	if benchLarge() {
		large = append(large, struct {
			label string
			size  int64
			reps  int
		}{"512MiB", 512 << 20, 1})
	}
	for _, l := range large {
		img := registrytest.Image(b, 1, l.size, types.DockerManifestSchema2)
		r := "bench/blob-" + strings.ToLower(l.label)
		pushTo(b, distFS.Host, r+":"+tag, img)
		d, n := singleLayer(b, img)
		blobs = append(blobs, blobCase{l.label, r, d, n, l.reps})
		approveThroughAirlock(b, al, cl, r, tag)
	}
	approveThroughAirlock(b, al, cl, repo, tag)
	// The ceiling: the very blob files of distribution's filesystem store.
	files := startBenchChild(b, "fileserver", fmt.Sprintf("127.0.0.1:%d", freePort(b)), "/",
		benchChildEnv+"=files", benchChildDir+"="+filepath.Join(distFS.Root, "docker/registry/v2/blobs"))
	fileURL := func(d v1.Hash) string {
		return files.URL + "/" + d.Algorithm + "/" + d.Hex[:2] + "/" + d.Hex + "/data"
	}
	runtime.GC()

	regs := []cachedTarget{{"airlock", al.URL, repo}, {"distribution-fs", distFS.URL, repo}, {"distribution-mem", distMem.URL, repo}}
	order := func(i int, names []string) []int {
		idx := make([]int, len(names))
		for k := range idx {
			idx[k] = (k + i) % len(names)
		}
		return idx
	}

	var lrows []latRow
	const perLevel = 2000
	for _, kind := range []struct{ label, ref string }{{"manifest-by-digest", smallDigest.String()}, {"manifest-by-tag", tag}} {
		for _, conc := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/c=%d", kind.label, conc), func(b *testing.B) {
				all := map[string][]time.Duration{}
				it := 0
				for b.Loop() {
					for _, k := range order(it, nil2names(regs)) {
						t := regs[k]
						ds, err := latencies(ctx, cl, t.base+"/v2/"+t.repo+"/manifests/"+kind.ref, manifestAccept, conc, perLevel)
						if err != nil {
							b.Fatalf("%s: %v", t.name, err)
						}
						all[t.name] = append(all[t.name], ds...)
					}
					it++
				}
				row := latRow{what: kind.label, conc: conc, p50: map[string]time.Duration{}, p99: map[string]time.Duration{}, n: len(all["airlock"])}
				for _, t := range regs {
					row.p50[t.name], row.p99[t.name] = percentile(all[t.name], 0.50), percentile(all[t.name], 0.99)
					row.order = append(row.order, t.name)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(benchUS(row.p50["airlock"]), "airlock-p50-µs")
				b.ReportMetric(benchUS(row.p99["airlock"]), "airlock-p99-µs")
				b.ReportMetric(benchUS(row.p50["distribution-fs"]), "distfs-p50-µs")
				b.ReportMetric(benchUS(row.p99["distribution-fs"]), "distfs-p99-µs")
				b.ReportMetric(benchUS(row.p50["distribution-mem"]), "distmem-p50-µs")
				b.ReportMetric(benchUS(row.p99["distribution-mem"]), "distmem-p99-µs")
				b.ReportMetric(ratio(float64(row.p99["airlock"]), float64(row.p99["distribution-fs"])), "p99-airlock/distfs")
				lrows = append(lrows, row)
			})
		}
	}

	var trows []tputRow
	for _, bc := range blobs {
		for _, conc := range []int{1, 8} {
			b.Run(fmt.Sprintf("blob-%s/c=%d", bc.label, conc), func(b *testing.B) {
				targets := []cachedTarget{
					{"airlock", al.URL + "/v2/" + bc.repo + "/blobs/" + bc.d.String(), ""},
					{"distribution-fs", distFS.URL + "/v2/" + bc.repo + "/blobs/" + bc.d.String(), ""},
					{"net/http-files", fileURL(bc.d), ""},
				}
				if bc.repo == repo {
					targets = append(targets, cachedTarget{"distribution-mem", distMem.URL + "/v2/" + bc.repo + "/blobs/" + bc.d.String(), ""})
				}
				sums := map[string]float64{}
				it := 0
				for b.Loop() {
					for _, k := range order(it, nil2names(targets)) {
						t := targets[k]
						mbps, err := throughput(ctx, cl, t.base, bc.size, conc, bc.reps)
						if err != nil {
							b.Fatalf("%s: %v", t.name, err)
						}
						sums[t.name] += mbps
					}
					it++
				}
				row := tputRow{what: bc.label, size: bc.size, conc: conc, mbps: map[string]float64{}}
				for _, t := range targets {
					row.mbps[t.name] = sums[t.name] / float64(it)
					row.order = append(row.order, t.name)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(row.mbps["airlock"], "airlock-MB/s")
				b.ReportMetric(row.mbps["distribution-fs"], "distfs-MB/s")
				b.ReportMetric(row.mbps["net/http-files"], "fileserver-MB/s")
				if v, ok := row.mbps["distribution-mem"]; ok {
					b.ReportMetric(v, "distmem-MB/s")
				}
				b.ReportMetric(ratio(row.mbps["airlock"], row.mbps["distribution-fs"]), "airlock/distfs")
				b.ReportMetric(ratio(row.mbps["airlock"], row.mbps["net/http-files"]), "airlock/fileserver")
				trows = append(trows, row)
			})
		}
	}
	printCachedTable(os.Stdout, lrows, trows)
}

func nil2names(ts []cachedTarget) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

func printCachedTable(w io.Writer, lrows []latRow, trows []tputRow) {
	if len(lrows) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Cached approved pulls: manifest GET latency (µs), airlock vs distribution v3 (filesystem / inmemory driver)")
		fmt.Fprintf(w, "%-19s %3s %6s  %9s %9s  %9s %9s  %9s %9s  %11s %11s\n", "request", "c", "n", "airlock50", "airlock99", "distfs50", "distfs99", "distmem50", "distmem99", "p50 al/fs", "p99 al/fs")
		for _, r := range lrows {
			fmt.Fprintf(w, "%-19s %3d %6d  %9.0f %9.0f  %9.0f %9.0f  %9.0f %9.0f  %11.2f %11.2f\n", r.what, r.conc, r.n,
				benchUS(r.p50["airlock"]), benchUS(r.p99["airlock"]),
				benchUS(r.p50["distribution-fs"]), benchUS(r.p99["distribution-fs"]),
				benchUS(r.p50["distribution-mem"]), benchUS(r.p99["distribution-mem"]),
				ratio(float64(r.p50["airlock"]), float64(r.p50["distribution-fs"])),
				ratio(float64(r.p99["airlock"]), float64(r.p99["distribution-fs"])))
		}
		fmt.Fprintln(w, "target: p99 al/fs ≤ 1.20")
	}
	if len(trows) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Cached approved pulls: blob GET throughput (MB/s, aggregate over c clients; mean over iterations)")
		fmt.Fprintf(w, "%-7s %10s %3s  %9s %9s %9s %10s  %8s %10s\n", "blob", "bytes", "c", "airlock", "distfs", "distmem", "fileserver", "al/fs", "al/files")
		for _, r := range trows {
			mem := "-"
			if v, ok := r.mbps["distribution-mem"]; ok {
				mem = fmt.Sprintf("%.0f", v)
			}
			fmt.Fprintf(w, "%-7s %10d %3d  %9.0f %9.0f %9s %10.0f  %8.2f %10.2f\n", r.what, r.size, r.conc,
				r.mbps["airlock"], r.mbps["distribution-fs"], mem, r.mbps["net/http-files"],
				ratio(r.mbps["airlock"], r.mbps["distribution-fs"]), ratio(r.mbps["airlock"], r.mbps["net/http-files"]))
		}
		fmt.Fprintln(w, "target: al/fs ≥ 0.95")
		fmt.Fprintln(w)
	}
}

// ---- 2. cold pulls ----

type coldRow struct {
	clients              int
	n                    int
	first, last          map[string]time.Duration
	perBlobMax, perBlobM map[string]float64
}

// BenchmarkRegistryCold compares the first pulls of an image neither has
// seen: airlock (policy auto, gate.hold 5m, so the manifest GET is held
// until the image is fetched and approved) against distribution v3 in
// proxy mode (filesystem driver), both in front of the same in-process
// registrytest upstream, with 1 and 100 concurrent clients. Each iteration
// pushes a new random image (4 layers of 2 MiB) and pulls it through both,
// in an order that alternates per iteration. Reported: the time until the
// first client has the manifest and every blob, the time until the last
// one has, and the upstream GETs per blob (counted by the upstream).
// Airlock must make exactly one GET per blob; the benchmark fails
// otherwise.
func BenchmarkRegistryCold(b *testing.B) {
	ctx := context.Background()
	cl, closeIdle := newBenchClient()
	defer closeIdle()
	up := registrytest.NewUpstream(b)
	al := startAirlock(b, up, options{Policy: "auto", Hold: 5 * time.Minute})
	proxy := startDistribution(b, "distribution-proxy", "filesystem", up.URL())

	var rows []coldRow
	seq := 0
	for _, clients := range []int{1, 100} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			firsts, lasts := map[string][]time.Duration{}, map[string][]time.Duration{}
			perBlobMax, perBlobSum, blobsSeen := map[string]float64{}, map[string]float64{}, 0
			it := 0
			for b.Loop() {
				b.StopTimer()
				seq++
				repo := fmt.Sprintf("bench/cold%d", seq)
				img := registrytest.Image(b, 4, 2<<20, types.DockerManifestSchema2)
				up.PushImage(b, repo+":v1", img)
				var blobs []v1.Hash
				ls, _ := img.Layers()
				for _, l := range ls {
					d, _ := l.Digest()
					blobs = append(blobs, d)
				}
				cd, _ := img.ConfigName()
				blobs = append(blobs, cd)
				runtime.GC()
				b.StartTimer()
				systems := []struct{ name, base string }{{"airlock", al.URL}, {"distribution-proxy", proxy.URL}}
				if it%2 == 1 {
					systems[0], systems[1] = systems[1], systems[0]
				}
				for _, sys := range systems {
					up.Reset()
					first, last, err := coldPull(ctx, cl, sys.base, repo, "v1", clients)
					if err != nil {
						b.Fatalf("%s, %d clients: %v", sys.name, clients, err)
					}
					firsts[sys.name] = append(firsts[sys.name], first)
					lasts[sys.name] = append(lasts[sys.name], last)
					for _, d := range blobs {
						n := up.CountBlobGETs(d)
						if sys.name == "airlock" && n != 1 {
							b.Fatalf("airlock made %d upstream GETs of blob %s with %d clients, want exactly 1", n, d, clients)
						}
						perBlobSum[sys.name] += float64(n)
						perBlobMax[sys.name] = max(perBlobMax[sys.name], float64(n))
					}
				}
				blobsSeen += len(blobs)
				it++
			}
			row := coldRow{clients: clients, n: it, first: map[string]time.Duration{}, last: map[string]time.Duration{}, perBlobMax: perBlobMax, perBlobM: map[string]float64{}}
			for k := range firsts {
				row.first[k], row.last[k] = benchMedian(firsts[k]), benchMedian(lasts[k])
				row.perBlobM[k] = perBlobSum[k] / float64(blobsSeen)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(benchMSf(row.first["airlock"]), "airlock-first-ms")
			b.ReportMetric(benchMSf(row.last["airlock"]), "airlock-last-ms")
			b.ReportMetric(benchMSf(row.first["distribution-proxy"]), "proxy-first-ms")
			b.ReportMetric(benchMSf(row.last["distribution-proxy"]), "proxy-last-ms")
			b.ReportMetric(row.perBlobM["airlock"], "airlock-upstream-GETs/blob")
			b.ReportMetric(row.perBlobM["distribution-proxy"], "proxy-upstream-GETs/blob")
			b.ReportMetric(ratio(float64(row.first["airlock"]), float64(row.first["distribution-proxy"])), "first-airlock/proxy")
			rows = append(rows, row)
		})
	}
	if len(rows) > 0 {
		w := os.Stdout
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Cold pulls of a new 8 MiB image (4 × 2 MiB layers): airlock (auto policy, held pull) vs distribution proxy mode, same upstream")
		fmt.Fprintf(w, "%7s %2s  %13s %13s  %12s %12s  %9s  %19s %19s\n", "clients", "n", "airlock first", "airlock last", "proxy first", "proxy last", "first a/p", "airlock GETs/blob", "proxy GETs/blob")
		for _, r := range rows {
			fmt.Fprintf(w, "%7d %2d  %13s %13s  %12s %12s  %9.2f  %10.2f (max %2.0f) %10.2f (max %2.0f)\n", r.clients, r.n,
				benchMS(r.first["airlock"]), benchMS(r.last["airlock"]), benchMS(r.first["distribution-proxy"]), benchMS(r.last["distribution-proxy"]),
				ratio(float64(r.first["airlock"]), float64(r.first["distribution-proxy"])),
				r.perBlobM["airlock"], r.perBlobMax["airlock"], r.perBlobM["distribution-proxy"], r.perBlobMax["distribution-proxy"])
		}
		fmt.Fprintln(w, "first/last: time until the first/last client has the manifest and every blob (medians). airlock must make exactly 1 GET per blob.")
		fmt.Fprintln(w)
	}
}

// coldPull starts clients pulls of repo:tag from base at once and returns
// when the first and the last finished.
func coldPull(ctx context.Context, cl *http.Client, base, repo, tag string, clients int) (first, last time.Duration, err error) {
	var wg sync.WaitGroup
	durs := make([]time.Duration, clients)
	errs := make([]error, clients)
	gate := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			start := time.Now()
			errs[i] = benchPull(ctx, cl, base, repo, tag)
			durs[i] = time.Since(start)
		}()
	}
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	return slices.Min(durs), slices.Max(durs), nil
}

// ---- 3. memory ----

// procMem reads VmHWM (peak RSS) and VmRSS of pid, in bytes.
func procMem(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 1 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	if hwm == 0 {
		return 0, 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	return hwm, rss, nil
}

// resetHWM resets pid's peak RSS to its current RSS (Linux ≥ 4.0); it
// reports whether that worked.
func resetHWM(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// BenchmarkRegistryMemory measures airlock's peak RSS (VmHWM) while 16
// clients pull an image with one large layer (64 MiB; 512 MiB with
// AIRLOCK_BENCH_LARGE=1): first cold (the held first pull, so airlock
// fetches the layer while the clients wait, then serves it 16 times), then
// cached (the peak is reset before). Distribution v3 (filesystem driver)
// serving the same 16 pulls is measured the same way for comparison. The
// target is an airlock peak under 200 MiB.
func BenchmarkRegistryMemory(b *testing.B) {
	const clients = 16
	ctx := context.Background()
	cl, closeIdle := newBenchClient()
	defer closeIdle()
	size, label := int64(64<<20), "64MiB"
	if benchLarge() {
		size, label = 512<<20, "512MiB"
	}
	distFS := startDistribution(b, "distribution-fs", "filesystem", "")
	img := registrytest.Image(b, 1, size, types.DockerManifestSchema2)
	type memRow struct {
		name        string
		start, peak int64
	}
	var rows []memRow
	seq := 0
	b.Run(label, func(b *testing.B) {
		var coldPeak, cachedPeak, distPeak, startRSS int64
		for b.Loop() {
			b.StopTimer()
			seq++
			repo := fmt.Sprintf("bench/mem%d", seq)
			pushTo(b, distFS.Host, repo+":v1", img)
			// A new airlock per iteration: the cold phase must fetch.
			al := startAirlockAt(b, distFS.URL, 5*time.Minute)
			pid := al.cmd.Process.Pid
			runtime.GC()
			b.StartTimer()
			_, rss0, err := procMem(pid)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := coldPull(ctx, cl, al.URL, repo, "v1", clients); err != nil {
				b.Fatalf("cold pulls: %v\n%s", err, al.logTail(30))
			}
			hwm, _, err := procMem(pid)
			if err != nil {
				b.Fatal(err)
			}
			coldPeak, startRSS = max(coldPeak, hwm), max(startRSS, rss0)
			if !resetHWM(pid) {
				b.Logf("cannot reset VmHWM of pid %d; the cached figure includes the cold phase", pid)
			}
			if _, _, err := coldPull(ctx, cl, al.URL, repo, "v1", clients); err != nil {
				b.Fatalf("cached pulls: %v", err)
			}
			hwm, _, _ = procMem(pid)
			cachedPeak = max(cachedPeak, hwm)
			resetHWM(distFS.PID())
			if _, _, err := coldPull(ctx, cl, distFS.URL, repo, "v1", clients); err != nil {
				b.Fatalf("distribution pulls: %v", err)
			}
			hwm, _, _ = procMem(distFS.PID())
			distPeak = max(distPeak, hwm)
			b.StopTimer()
			al.Stop(b)
			b.StartTimer()
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(mib(startRSS), "airlock-start-RSS-MiB")
		b.ReportMetric(mib(coldPeak), "airlock-cold-peak-MiB")
		b.ReportMetric(mib(cachedPeak), "airlock-cached-peak-MiB")
		b.ReportMetric(mib(distPeak), "distfs-peak-MiB")
		rows = append(rows, memRow{"airlock, cold (fetch + 16 held pulls)", startRSS, coldPeak},
			memRow{"airlock, cached (16 pulls)", 0, cachedPeak},
			memRow{"distribution-fs (16 pulls)", 0, distPeak})
		if coldPeak >= 200<<20 || cachedPeak >= 200<<20 {
			b.Errorf("airlock peak RSS %.0f MiB (cold) / %.0f MiB (cached), target < 200 MiB", mib(coldPeak), mib(cachedPeak))
		}
	})
	if len(rows) > 0 {
		w := os.Stdout
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Memory: peak RSS (VmHWM, max over iterations) while %d clients pull a %s layer (%d bytes)\n", clients, label, size)
		for _, r := range rows {
			fmt.Fprintf(w, "  %-40s %7.1f MiB\n", r.name, mib(r.peak))
		}
		fmt.Fprintf(w, "  airlock RSS before the pulls: %.1f MiB. target: airlock < 200 MiB\n\n", mib(rows[0].start))
	}
}
