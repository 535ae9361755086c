package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

// BenchmarkScanPipeline measures what issue 3 asks for: the time from the
// first pull of an image through the real airlock binary (gate.policy: scan,
// an offline test DB imported) until it is approved, for a small image and a
// ~100 MB one, split into the fetch step and the SBOM and match halves of
// the scan; and, in the same run, the grype CLI scanning the same image from
// the same upstream registry with the same DB. Every iteration pushes an
// image airlock has never seen; the benchmark fails if grype and airlock do
// not find the same vulnerabilities in it.
//
// It reports medians with b.ReportMetric (ns/op is suppressed: one
// iteration runs both scanners) and prints a plain table to stdout. See
// docs/BENCHMARKS.md. Run it with
//
//	go test ./e2e -run '^$' -bench ScanPipeline -benchtime 3x
func BenchmarkScanPipeline(b *testing.B) {
	work := b.TempDir()
	grypeBin := buildGrype(b, work)

	up := registrytest.NewUpstream(b)
	al := startAirlock(b, up, options{
		Policy: "scan",
		// The first pull is held until the pipeline is done, so the
		// client's GET of the manifest answers 200 at approval: its
		// duration is pull→approved.
		Hold:  5 * time.Minute,
		Extra: benchScanConfig,
	})
	if out, err := al.cli(b, "db", "import", vulndbtest.Archive(b, benchVulns...)); err != nil || !strings.Contains(out, "imported vulnerability DB") {
		b.Fatalf("airlock db import: %v\n%s", err, out)
	}
	// grype reads a copy of the very database airlock installed.
	grypeDB := filepath.Join(work, "grype-db")
	copyInstalledDB(b, filepath.Join(al.DataDir, "vulndb"), grypeDB)

	bench := &scanBench{up: up, al: al, grype: grypeBin, grypeDB: grypeDB, grypeHome: filepath.Join(work, "grype-home")}
	if err := os.MkdirAll(bench.grypeHome, 0o755); err != nil {
		b.Fatal(err)
	}

	// Warm-up, not measured: airlock's first scan after start and grype's
	// first run (binary not yet in the page cache).
	warm := bench.run(b, "bench/warmup", bench.smallImage(b))
	b.Logf("warm-up (not measured): airlock pull→approved %s, grype %s", benchMS(warm.airlock), benchMS(warm.grype))

	// Roughly grype's fixed cost per run (process start, config, DB open
	// and checksum, syft's license scanner, cataloger setup): a scan of an
	// empty directory.
	empty := filepath.Join(work, "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		b.Fatal(err)
	}
	var fixed []time.Duration
	for range 3 {
		d, _ := bench.runGrype(b, "dir:"+empty)
		fixed = append(fixed, d)
	}
	grypeFixed := benchMedian(fixed)

	var rows []benchRow
	cases := []struct {
		name, repo string
		image      func(testing.TB) v1.Image
	}{
		{"small", "bench/small", bench.smallImage},
		{"100MB", "bench/padded", func(tb testing.TB) v1.Image {
			return registrytest.PaddedImage(tb, bench.smallImage(tb), 100<<20)
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var samples []benchSample
			for b.Loop() {
				samples = append(samples, bench.run(b, c.repo, c.image(b)))
			}
			row := benchSummarize(c.name, samples)
			rows = append(rows, row)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(benchMSf(row.airlock), "airlock-ms/op")
			b.ReportMetric(benchMSf(row.fetch), "fetch-ms/op")
			b.ReportMetric(benchMSf(row.sbom), "sbom-ms/op")
			b.ReportMetric(benchMSf(row.match), "match-ms/op")
			b.ReportMetric(benchMSf(row.other), "other-ms/op")
			b.ReportMetric(benchMSf(row.grype), "grype-ms/op")
			b.ReportMetric(row.ratio(), "airlock/grype")
		})
	}
	if len(rows) > 0 {
		printBenchTable(os.Stdout, rows, warm, grypeFixed)
	}
}

// benchScanConfig: scan with no age limit on the fixture DB, no scheduled
// rescans, and a policy that approves whatever it finds (the benchmark
// wants approved images that do have vulnerabilities to compare).
const benchScanConfig = `
scan:
  max_db_age: 0s
  rescan_interval: 0s
policy:
  fail_on: none
`

// benchVulns is the benchmark's vulnerability DB: every Alpine package of
// benchPkgs but one is affected.
var benchVulns = []vulndbtest.Vuln{
	{ID: "CVE-2026-7001", Severity: "Critical", Distro: "alpine:3.20", Package: "openssl", Ecosystem: "apk", Fix: "3.0.2-r0"},
	{ID: "CVE-2026-7002", Severity: "High", Distro: "alpine:3.20", Package: "zlib", Ecosystem: "apk", Fix: "1.3-r0"},
	{ID: "CVE-2026-7003", Severity: "Medium", Distro: "alpine:3.20", Package: "busybox", Ecosystem: "apk", Fix: "1.37.0-r0"},
	{ID: "CVE-2026-7004", Severity: "Low", Distro: "alpine:3.20", Package: "musl", Ecosystem: "apk"},
	{ID: "CVE-2026-7005", Severity: "High", Distro: "alpine:3.20", Package: "libcurl", Ecosystem: "apk", Fix: "8.9.0-r0"},
	{ID: "CVE-2026-7005", Severity: "High", Distro: "alpine:3.20", Package: "curl", Ecosystem: "apk", Fix: "8.9.0-r0"},
	// Not installed, or installed at a fixed version: must not match.
	{ID: "CVE-2026-7006", Severity: "Critical", Distro: "alpine:3.20", Package: "ca-certificates", Ecosystem: "apk", Fix: "20240705-r0"},
	{ID: "CVE-2026-7007", Severity: "Critical", Distro: "alpine:3.20", Package: "sqlite-libs", Ecosystem: "apk", Fix: "3.46.0-r0"},
	{ID: "CVE-2026-7008", Severity: "Critical", Distro: "debian:12", Package: "libc6", Ecosystem: "deb", Fix: "2.36-9+deb12u4"},
}

// benchPkgs are the packages of the benchmark's Alpine images, plus one
// "bench-seq" package whose version makes each image new.
var benchPkgs = []registrytest.Pkg{
	{Name: "musl", Version: "1.2.5-r0"},
	{Name: "busybox", Version: "1.36.1-r29"},
	{Name: "openssl", Version: "3.0.1-r0"},
	{Name: "zlib", Version: "1.2.13-r0"},
	{Name: "libcurl", Version: "8.8.0-r0"},
	{Name: "curl", Version: "8.8.0-r0"},
	{Name: "ca-certificates", Version: "20240705-r0"},
	{Name: "apk-tools", Version: "2.14.4-r0"},
}

// scanBench is the shared setup of one BenchmarkScanPipeline run.
type scanBench struct {
	up        *registrytest.Upstream
	al        *Airlock
	grype     string // the grype binary
	grypeDB   string // GRYPE_DB_CACHE_DIR: <grypeDB>/6/vulnerability.db
	grypeHome string // HOME and XDG dirs of the grype process
	seq       int    // images made so far; makes every image distinct
}

// benchSample is one measured image.
type benchSample struct {
	// airlock is the first pull's wall-clock time; fetch, sbom and match
	// are parts of it, other is the rest.
	airlock, fetch, sbom, match, other time.Duration
	grype                              time.Duration
}

// smallImage returns a new small Alpine image: benchPkgs plus a bench-seq
// package whose version no earlier image had.
func (s *scanBench) smallImage(tb testing.TB) v1.Image {
	s.seq++
	pkgs := append(slices.Clone(benchPkgs), registrytest.Pkg{Name: "bench-seq", Version: fmt.Sprintf("1.0.%d-r0", s.seq)})
	return registrytest.AlpineImage(tb, "3.20.3", pkgs...)
}

// run pushes img to the upstream as repo:i<seq>, pulls it through airlock
// (the held first pull answers at approval), reads airlock's step times and
// report, runs the grype CLI on the same upstream reference, and checks
// that both found the same vulnerabilities.
func (s *scanBench) run(b *testing.B, repo string, img v1.Image) benchSample {
	b.Helper()
	tag := fmt.Sprintf("i%d", s.seq)
	pushStart := time.Now()
	dgst := s.up.PushImage(b, repo+":"+tag, img).String()
	pushed := time.Since(pushStart)
	key := "docker.io/" + repo + "@" + dgst
	// The in-process upstream's inmemory driver leaves a lot of garbage
	// behind a large push: collect it before the clock starts.
	runtime.GC()

	var sm benchSample
	served := s.up.BlobBytesServed()
	start := time.Now()
	res := heldPull(b, s.al, repo, tag)
	sm.airlock = time.Since(start)
	airlockBytes := s.up.BlobBytesServed() - served
	if res.Status != http.StatusOK {
		d, _ := s.al.image(b, key)
		b.Fatalf("first pull of %s:%s: %d %s (state %s: %s)", repo, tag, res.Status, res.Body, d.Image.State, d.Image.Reason)
	}
	if got := res.Header.Get("Docker-Content-Digest"); got != dgst {
		b.Fatalf("first pull of %s:%s served %s, pushed %s", repo, tag, got, dgst)
	}

	steps := imageSteps(b, s.al, key)
	fetch, ok := steps["fetch"]
	if !ok {
		b.Fatalf("%s: no fetch step in the record: %v", key, steps)
	}
	sm.fetch = fetch
	rep := vulnReport(b, s.al, key)
	if rep.State != "approved" || len(rep.Report.Platforms) != 1 {
		b.Fatalf("%s: state %s, %d platform reports; want approved, 1", key, rep.State, len(rep.Report.Platforms))
	}
	p := rep.Report.Platforms[0]
	sm.sbom = benchSecs(p.SBOMSeconds)
	sm.match = benchSecs(p.MatchSeconds)
	sm.other = sm.airlock - sm.fetch - sm.sbom - sm.match
	var airlockFound []string
	for _, m := range p.Matches {
		airlockFound = append(airlockFound, m.ID+" "+m.Package+"@"+m.Version)
	}

	// Every blob came from the upstream: the image was new to airlock.
	if size := blobSize(b, img); airlockBytes < size {
		b.Fatalf("%s: airlock fetched %d blob bytes from the upstream, the image has %d: not a fresh image", key, airlockBytes, size)
	}

	var grypeFound []string
	served = s.up.BlobBytesServed()
	sm.grype, grypeFound = s.runGrype(b, "registry:"+s.up.Host()+"/"+repo+":"+tag)
	grypeBytes := s.up.BlobBytesServed() - served

	slices.Sort(airlockFound)
	airlockFound = slices.Compact(airlockFound)
	if len(airlockFound) == 0 {
		b.Fatalf("%s: airlock found no vulnerabilities; the benchmark image must have some", key)
	}
	if !slices.Equal(airlockFound, grypeFound) {
		b.Fatalf("%s: airlock and grype disagree\nairlock: %q\ngrype:   %q", key, airlockFound, grypeFound)
	}
	b.Logf("%s:%s (push %s, not measured): airlock %s (fetch %s, sbom %s, match %s; %s fetched), grype %s (%s fetched); both found %d matches",
		repo, tag, pushed.Round(time.Millisecond), benchMS(sm.airlock), benchMS(sm.fetch), benchMS(sm.sbom), benchMS(sm.match), benchBytes(airlockBytes),
		benchMS(sm.grype), benchBytes(grypeBytes), len(airlockFound))
	return sm
}

// blobSize is the size of img's config and layer blobs as pushed.
func blobSize(tb testing.TB, img v1.Image) int64 {
	tb.Helper()
	m, err := img.Manifest()
	if err != nil {
		tb.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// heldPull GETs repo:tag's manifest from airlock as a client's first pull.
// gate.hold is long, so the answer comes when the pipeline is done.
func heldPull(tb testing.TB, a *Airlock, repo, tag string) httpResult {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, a.URL+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", manifestAccept)
	c := &http.Client{Timeout: 6 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", req.URL, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// imageSteps returns the duration of each pipeline step in image's record
// (GET /api/v1/images/<image> → image.steps).
func imageSteps(tb testing.TB, a *Airlock, image string) map[string]time.Duration {
	tb.Helper()
	r := a.admin(tb, http.MethodGet, "/api/v1/images/"+image, nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("image %s: %d %s", image, r.Status, r.Body)
	}
	var d struct {
		Image struct {
			Steps []struct {
				Step     string    `json:"step"`
				Status   string    `json:"status"`
				Started  time.Time `json:"started"`
				Finished time.Time `json:"finished"`
			} `json:"steps"`
		} `json:"image"`
	}
	if err := json.Unmarshal(r.Body, &d); err != nil {
		tb.Fatalf("decode image %s: %v\n%s", image, err, r.Body)
	}
	out := map[string]time.Duration{}
	for _, s := range d.Image.Steps {
		out[s.Step] = s.Finished.Sub(s.Started)
	}
	return out
}

// benchReport is the part of GET /api/v1/images/<image>/vulnerabilities
// the benchmark reads.
type benchReport struct {
	State  string `json:"state"`
	Report struct {
		Platforms []struct {
			Matches []struct {
				ID      string `json:"id"`
				Package string `json:"package"`
				Version string `json:"version"`
			} `json:"matches"`
			SBOMSeconds  float64 `json:"sbom_seconds"`
			MatchSeconds float64 `json:"match_seconds"`
		} `json:"platforms"`
	} `json:"report"`
}

func vulnReport(tb testing.TB, a *Airlock, image string) benchReport {
	tb.Helper()
	r := a.admin(tb, http.MethodGet, "/api/v1/images/"+image+"/vulnerabilities", nil)
	if r.Status != http.StatusOK {
		tb.Fatalf("vulnerabilities of %s: %d %s", image, r.Status, r.Body)
	}
	var rep benchReport
	if err := json.Unmarshal(r.Body, &rep); err != nil {
		tb.Fatalf("decode vulnerabilities of %s: %v\n%s", image, err, r.Body)
	}
	return rep
}

// runGrype runs `grype <source> -o json` (source is e.g.
// "registry:<host>/<repo>:<tag>") offline against the copied DB and returns
// its wall-clock time and what it found, as sorted "<id> <package>@<version>"
// strings.
func (s *scanBench) runGrype(tb testing.TB, source string) (time.Duration, []string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.grype, source, "-o", "json")
	cmd.Dir = s.grypeHome
	cmd.Env = append(childEnv(),
		"HOME="+s.grypeHome, // no user config, no docker credentials
		"XDG_CONFIG_HOME="+filepath.Join(s.grypeHome, "config"),
		"XDG_CACHE_HOME="+filepath.Join(s.grypeHome, "cache"),
		"GRYPE_DB_CACHE_DIR="+s.grypeDB,
		"GRYPE_DB_AUTO_UPDATE=false",
		"GRYPE_DB_VALIDATE_AGE=false",
		"GRYPE_CHECK_FOR_APP_UPDATE=false",
		"GRYPE_REGISTRY_INSECURE_USE_HTTP=true",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		tb.Fatalf("grype %s: %v\n%s", source, err, benchTail(stderr.String(), 40))
	}
	var doc struct {
		Matches []struct {
			Vulnerability struct {
				ID string `json:"id"`
			} `json:"vulnerability"`
			Artifact struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"artifact"`
		} `json:"matches"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		tb.Fatalf("grype %s: decode JSON output: %v\n%.400s", source, err, stdout.String())
	}
	var found []string
	for _, m := range doc.Matches {
		found = append(found, m.Vulnerability.ID+" "+m.Artifact.Name+"@"+m.Artifact.Version)
	}
	slices.Sort(found)
	return elapsed, slices.Compact(found)
}

// buildGrype builds the grype CLI (a tool dependency in go.mod, at the
// version of the grype library airlock uses) into dir, without -trimpath so
// that it shares the build cache. The benchmark is skipped if that fails.
func buildGrype(b *testing.B, dir string) string {
	b.Helper()
	goTool := "go"
	if gr := os.Getenv("GOROOT"); gr != "" {
		if p := filepath.Join(gr, "bin", "go"); fileExists(p) {
			goTool = p
		}
	}
	bin := filepath.Join(dir, "grype")
	start := time.Now()
	out, err := exec.Command(goTool, "build", "-o", bin, "github.com/anchore/grype/cmd/grype").CombinedOutput()
	if err != nil {
		b.Skipf("cannot build the grype CLI (go build github.com/anchore/grype/cmd/grype): %v\n%s", err, benchTail(string(out), 20))
	}
	b.Logf("built grype CLI in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// copyInstalledDB copies the v6 DB installed under srcRoot (airlock's
// scan.db_dir) to dstRoot in grype's layout, <dstRoot>/6/vulnerability.db
// plus import.json.
func copyInstalledDB(tb testing.TB, srcRoot, dstRoot string) {
	tb.Helper()
	dst := filepath.Join(dstRoot, "6")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"vulnerability.db", "import.json"} {
		data, err := os.ReadFile(filepath.Join(srcRoot, "6", name))
		if err != nil {
			tb.Fatalf("read airlock's installed DB: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// benchRow is one line of the result table: medians over the iterations.
type benchRow struct {
	name                               string
	n                                  int
	airlock, fetch, sbom, match, other time.Duration
	grype                              time.Duration
}

func (r benchRow) ratio() float64 {
	if r.grype <= 0 {
		return 0
	}
	return float64(r.airlock) / float64(r.grype)
}

func benchSummarize(name string, samples []benchSample) benchRow {
	pick := func(f func(benchSample) time.Duration) time.Duration {
		var ds []time.Duration
		for _, s := range samples {
			ds = append(ds, f(s))
		}
		return benchMedian(ds)
	}
	return benchRow{
		name:    name,
		n:       len(samples),
		airlock: pick(func(s benchSample) time.Duration { return s.airlock }),
		fetch:   pick(func(s benchSample) time.Duration { return s.fetch }),
		sbom:    pick(func(s benchSample) time.Duration { return s.sbom }),
		match:   pick(func(s benchSample) time.Duration { return s.match }),
		other:   pick(func(s benchSample) time.Duration { return s.other }),
		grype:   pick(func(s benchSample) time.Duration { return s.grype }),
	}
}

func benchMedian(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	if n := len(ds); n%2 == 0 {
		return (ds[n/2-1] + ds[n/2]) / 2
	}
	return ds[len(ds)/2]
}

func printBenchTable(w io.Writer, rows []benchRow, warm benchSample, grypeFixed time.Duration) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Scan pipeline: airlock first pull → approved vs the grype CLI on the same image (medians)")
	fmt.Fprintf(w, "%-6s %2s  %21s  %8s %8s %8s %8s  %9s  %13s\n", "image", "n", "airlock pull→approved", "fetch", "sbom", "match", "other", "grype CLI", "airlock/grype")
	for _, r := range rows {
		fmt.Fprintf(w, "%-6s %2d  %21s  %8s %8s %8s %8s  %9s  %13.2f\n", r.name, r.n, benchMS(r.airlock), benchMS(r.fetch), benchMS(r.sbom), benchMS(r.match), benchMS(r.other), benchMS(r.grype), r.ratio())
	}
	fmt.Fprintln(w, "target: airlock/grype ≤ 1.00. fetch, sbom and match are parts of airlock's time (medians of each, so")
	fmt.Fprintln(w, "they need not add up); other = the rest: tag resolution, queueing, state writes, storing SBOMs and report.")
	fmt.Fprintf(w, "grype on an empty directory (roughly its fixed cost per run): %s. Warm-up, not counted: airlock %s, grype %s.\n\n", benchMS(grypeFixed), benchMS(warm.airlock), benchMS(warm.grype))
}

func benchMS(d time.Duration) string { return fmt.Sprintf("%.0f ms", benchMSf(d)) }

func benchMSf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func benchBytes(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func benchSecs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func benchTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
