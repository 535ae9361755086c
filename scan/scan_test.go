package scan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v6dist "github.com/anchore/grype/grype/db/v6/distribution"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/scan"
)

// The fixture: in each distro, libfoo is vulnerable (Critical, fixed
// upstream), libok is at the fixed version of a Low CVE (no match), and
// libbar has a Medium CVE with no fix. A Debian record for libfoo must not
// leak into Alpine results and vice versa.
var (
	alpineCritical = vulndbtest.Vuln{ID: "CVE-2099-1001", Severity: "Critical", Distro: "alpine:3.20", Package: "libfoo",
		Ecosystem: "apk", Constraint: "< 1.2.3-r1", Fix: "1.2.3-r1", Description: "libfoo heap overflow in the frobnicator."}
	alpineLowFixed = vulndbtest.Vuln{ID: "CVE-2099-1002", Severity: "Low", Distro: "alpine:3.20", Package: "libok",
		Ecosystem: "apk", Constraint: "< 2.0.0-r0", Fix: "2.0.0-r0"}
	alpineMedium = vulndbtest.Vuln{ID: "CVE-2099-1003", Severity: "Medium", Distro: "alpine:3.20", Package: "libbar",
		Ecosystem: "apk", Fix: ""}
	debianCritical = vulndbtest.Vuln{ID: "CVE-2099-2001", Severity: "Critical", Distro: "debian:12", Package: "libfoo",
		Ecosystem: "deb", Constraint: "< 1.2.3-1", Fix: "1.2.3-1"}
	debianLowFixed = vulndbtest.Vuln{ID: "CVE-2099-2002", Severity: "Low", Distro: "debian:12", Package: "libok",
		Ecosystem: "deb", Constraint: "< 2.0.0-1", Fix: "2.0.0-1"}
	debianMedium = vulndbtest.Vuln{ID: "CVE-2099-2003", Severity: "Medium", Distro: "debian:12", Package: "libbar",
		Ecosystem: "deb", Fix: ""}

	allVulns = []vulndbtest.Vuln{alpineCritical, alpineLowFixed, alpineMedium, debianCritical, debianLowFixed, debianMedium}

	alpinePkgs = []registrytest.Pkg{{Name: "libfoo", Version: "1.2.2-r0"}, {Name: "libok", Version: "2.0.0-r0"}, {Name: "libbar", Version: "3.1.0-r0"}}
	debianPkgs = []registrytest.Pkg{{Name: "libfoo", Version: "1.2.2-1"}, {Name: "libok", Version: "2.0.0-1"}, {Name: "libbar", Version: "3.1.0-1"}}
)

// allVulnsDB is an installed DB of allVulns, built once and copied into
// each test's root (building one costs a few hundred ms under -race).
var allVulnsDB struct {
	once sync.Once
	dir  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if allVulnsDB.dir != "" {
		os.RemoveAll(allVulnsDB.dir)
	}
	os.Exit(code)
}

// installAllVulns installs a copy of the allVulns DB into root.
func installAllVulns(t testing.TB, root string) {
	t.Helper()
	allVulnsDB.once.Do(func() {
		dir, err := os.MkdirTemp("", "scan-test-db-")
		if err != nil {
			t.Fatal(err)
		}
		vulndbtest.Build(t, dir, allVulns...)
		allVulnsDB.dir = dir
	})
	if allVulnsDB.dir == "" {
		t.Fatal("building the shared test DB failed earlier")
	}
	if err := os.CopyFS(root, os.DirFS(allVulnsDB.dir)); err != nil {
		t.Fatalf("install test DB: %v", err)
	}
}

// newScanner installs a database of vulns in a fresh root and opens it.
func newScanner(t testing.TB, opts []scan.Option, vulns ...vulndbtest.Vuln) (*scan.Scanner, string) {
	t.Helper()
	root := t.TempDir()
	switch {
	case slices.Equal(vulns, allVulns):
		installAllVulns(t, root)
	case len(vulns) > 0:
		vulndbtest.Build(t, root, vulns...)
	}
	s, err := scan.New(root, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

func refOf(t testing.TB, repo string, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d.String()
}

func scanImage(t testing.TB, s *scan.Scanner, repo string, img v1.Image) *scan.Result {
	t.Helper()
	res, err := s.Scan(context.Background(), img, refOf(t, repo, img))
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return res
}

// brief renders matches as comparable strings.
func brief(ms []scan.Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s %s %s@%s(%s) fixed=%v state=%s", m.VulnID, m.Severity, m.Package, m.Version, m.Type, m.FixedIn, m.FixState))
	}
	return out
}

func TestScanAlpine(t *testing.T) {
	s, root := newScanner(t, nil, allVulns...)
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)
	res := scanImage(t, s, "docker.io/library/alpine", img)
	t.Logf("alpine: SBOM %s, match %s", res.SBOMDuration, res.MatchDuration)

	want := []string{
		"CVE-2099-1001 Critical libfoo@1.2.2-r0(apk) fixed=[1.2.3-r1] state=fixed",
		"CVE-2099-1003 Medium libbar@3.1.0-r0(apk) fixed=[] state=not-fixed",
	}
	if got := brief(res.Matches); !slices.Equal(got, want) {
		t.Errorf("matches:\n got %q\nwant %q", got, want)
	}
	if res.Distro != "alpine 3.20.3" {
		t.Errorf("Distro = %q, want %q", res.Distro, "alpine 3.20.3")
	}
	if len(res.Matches) > 0 {
		m := res.Matches[0]
		if !strings.Contains(m.Namespace, "alpine") {
			t.Errorf("Namespace = %q, want an alpine namespace", m.Namespace)
		}
		if m.Description != alpineCritical.Description {
			t.Errorf("Description = %q, want %q", m.Description, alpineCritical.Description)
		}
	}

	checkPackages(t, res, "apk", "pkg:apk/alpine/libfoo@1.2.2-r0")
	checkSPDX(t, res, "libfoo", "libok", "libbar")
	var doc struct {
		Source struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"source"`
		Distro struct {
			ID string `json:"id"`
		} `json:"distro"`
	}
	if err := json.Unmarshal(res.SyftJSON, &doc); err != nil {
		t.Fatalf("SyftJSON: %v", err)
	}
	d, _ := img.Digest()
	if doc.Source.Name != "docker.io/library/alpine" || doc.Source.Version != d.String() || doc.Distro.ID != "alpine" {
		t.Errorf("syft JSON source %+v distro %+v; want docker.io/library/alpine %s, alpine", doc.Source, doc.Distro, d)
	}
	if len(res.SyftJSON) == 0 || !json.Valid(res.SyftJSON) {
		t.Errorf("SyftJSON is empty or invalid (%d bytes)", len(res.SyftJSON))
	}
	if want := filepath.Join(root, "6", "vulnerability.db"); res.DB.Path != want {
		t.Errorf("DB.Path = %q, want %q", res.DB.Path, want)
	}
	if !strings.HasPrefix(res.DB.Checksum, "xxh64:") {
		t.Errorf("DB.Checksum = %q, want xxh64:...", res.DB.Checksum)
	}
}

func TestScanDebian(t *testing.T) {
	s, _ := newScanner(t, nil, allVulns...)
	img := registrytest.DebianImage(t, "12", debianPkgs...)
	res := scanImage(t, s, "docker.io/library/debian", img)
	t.Logf("debian: SBOM %s, match %s", res.SBOMDuration, res.MatchDuration)

	want := []string{
		"CVE-2099-2001 Critical libfoo@1.2.2-1(deb) fixed=[1.2.3-1] state=fixed",
		"CVE-2099-2003 Medium libbar@3.1.0-1(deb) fixed=[] state=not-fixed",
	}
	if got := brief(res.Matches); !slices.Equal(got, want) {
		t.Errorf("matches:\n got %q\nwant %q", got, want)
	}
	if res.Distro != "debian 12" {
		t.Errorf("Distro = %q, want %q", res.Distro, "debian 12")
	}
	checkPackages(t, res, "deb", "pkg:deb/debian/libfoo@1.2.2-1")
	checkSPDX(t, res, "libfoo", "libok", "libbar")
}

// TestScanNoOSPackages: an image with no distro and no packages scans
// cleanly with no matches.
func TestScanNoOSPackages(t *testing.T) {
	s, _ := newScanner(t, nil, allVulns...)
	img := registrytest.Image(t, 1, 512, "application/vnd.oci.image.manifest.v1+json")
	res := scanImage(t, s, "example.com/random", img)
	if res.Distro != "" || len(res.Matches) != 0 || len(res.Packages) != 0 {
		t.Errorf("got distro %q, %d matches, %d packages; want none", res.Distro, len(res.Matches), len(res.Packages))
	}
}

func checkPackages(t *testing.T, res *scan.Result, typ, purlPrefix string) {
	t.Helper()
	var names []string
	for _, p := range res.Packages {
		names = append(names, p.Name)
		if p.Type != typ {
			t.Errorf("package %s: Type = %q, want %q", p.Name, p.Type, typ)
		}
		if !slices.Contains(p.Licenses, "MIT") {
			t.Errorf("package %s: Licenses = %q, want MIT", p.Name, p.Licenses)
		}
		if p.Name == "libfoo" && !strings.HasPrefix(p.PURL, purlPrefix) {
			t.Errorf("package libfoo: PURL = %q, want prefix %q", p.PURL, purlPrefix)
		}
	}
	slices.Sort(names)
	if want := []string{"libbar", "libfoo", "libok"}; !slices.Equal(names, want) {
		t.Errorf("packages = %q, want %q", names, want)
	}
}

func checkSPDX(t *testing.T, res *scan.Result, names ...string) {
	t.Helper()
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Name        string `json:"name"`
		Packages    []struct {
			Name        string `json:"name"`
			VersionInfo string `json:"versionInfo"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(res.SPDX, &doc); err != nil {
		t.Fatalf("SPDX does not parse: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion = %q, want SPDX-2.3", doc.SPDXVersion)
	}
	var got []string
	for _, p := range doc.Packages {
		got = append(got, p.Name)
	}
	for _, n := range names {
		if !slices.Contains(got, n) {
			t.Errorf("SPDX packages %q lack %q", got, n)
		}
	}
}

func TestNoDB(t *testing.T) {
	s, _ := newScanner(t, nil)
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)
	if _, err := s.Scan(context.Background(), img, "alpine"); !errors.Is(err, scan.ErrNoDB) {
		t.Errorf("Scan error = %v, want ErrNoDB", err)
	}
	if _, err := s.Status(); !errors.Is(err, scan.ErrNoDB) {
		t.Errorf("Status error = %v, want ErrNoDB", err)
	}
	if !strings.Contains(scan.ErrNoDB.Error(), "airlock db import") {
		t.Errorf("ErrNoDB = %q, want it to mention `airlock db import`", scan.ErrNoDB)
	}
	if err := s.Reload(); !errors.Is(err, scan.ErrNoDB) {
		t.Errorf("Reload error = %v, want ErrNoDB", err)
	}
}

// TestBrokenDB: an installed DB that cannot be opened does not stop New;
// Scan and Status report it, and an Import repairs it.
func TestBrokenDB(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "6"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "6", "vulnerability.db"), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := scan.New(root)
	if err != nil {
		t.Fatalf("New with a broken DB: %v", err)
	}
	defer s.Close()
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)
	_, err = s.Scan(context.Background(), img, "alpine")
	if err == nil || errors.Is(err, scan.ErrNoDB) {
		t.Fatalf("Scan with a broken DB: %v, want a load error", err)
	}
	t.Logf("broken DB: %v", err)
	if _, err := s.Status(); err == nil {
		t.Error("Status with a broken DB succeeded")
	}
	if _, err := s.Import(vulndbtest.Archive(t, alpineCritical)); err != nil {
		t.Fatalf("Import over a broken DB: %v", err)
	}
	if res := scanImage(t, s, "alpine", img); len(res.Matches) != 1 {
		t.Errorf("after repair: %q", brief(res.Matches))
	}
}

func TestStaleDB(t *testing.T) {
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)

	t.Run("max age 1ns", func(t *testing.T) {
		s, _ := newScanner(t, []scan.Option{scan.WithMaxAge(time.Nanosecond)}, alpineCritical)
		// Build times have one-second resolution: wait until this one is
		// unambiguously in the past.
		for {
			st, err := s.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Age > time.Millisecond {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := s.Scan(context.Background(), img, "alpine"); !errors.Is(err, scan.ErrDBStale) {
			t.Errorf("Scan error = %v, want ErrDBStale", err)
		}
	})

	t.Run("built two days ago", func(t *testing.T) {
		root := t.TempDir()
		built := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
		vulndbtest.BuildAt(t, root, built, alpineCritical)

		stale, err := scan.New(root, scan.WithMaxAge(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		defer stale.Close()
		_, err = stale.Scan(context.Background(), img, "alpine")
		if !errors.Is(err, scan.ErrDBStale) {
			t.Fatalf("Scan error = %v, want ErrDBStale", err)
		}
		t.Logf("stale error: %v", err)
		st, err := stale.Status()
		if err != nil {
			t.Fatalf("Status of a stale DB: %v", err)
		}
		if !st.Built.Equal(built) || st.Age < 48*time.Hour {
			t.Errorf("Status = built %s age %s, want built %s age >= 48h", st.Built, st.Age, built)
		}

		// Without the age check the same DB scans fine.
		fresh, err := scan.New(root)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		if _, err := fresh.Scan(context.Background(), img, "alpine"); err != nil {
			t.Errorf("Scan without max age: %v", err)
		}
	})
}

// TestImport runs a scanner through a DB's life: none, imported, replaced
// by an import with more CVEs while scans run, a garbage import that must
// change nothing, and an out-of-process install picked up by Reload.
func TestImport(t *testing.T) {
	s, root := newScanner(t, nil)
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)
	ref := refOf(t, "docker.io/library/alpine", img)
	ids := func() []string {
		t.Helper()
		res, err := s.Scan(context.Background(), img, ref)
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		var out []string
		for _, m := range res.Matches {
			out = append(out, m.VulnID)
		}
		slices.Sort(out)
		return out
	}

	if _, err := s.Scan(context.Background(), img, ref); !errors.Is(err, scan.ErrNoDB) {
		t.Fatalf("Scan before import: %v, want ErrNoDB", err)
	}

	// 1. Import into the empty root.
	st1, err := s.Import(vulndbtest.Archive(t, alpineCritical))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if st1.Path != filepath.Join(root, "6", "vulnerability.db") || !strings.HasPrefix(st1.Checksum, "xxh64:") ||
		st1.SchemaVersion == "" || time.Since(st1.Built) > time.Hour {
		t.Errorf("Import status = %+v", st1)
	}
	if got := ids(); !slices.Equal(got, []string{alpineCritical.ID}) {
		t.Fatalf("after first import: %q", got)
	}

	// 2. Import a DB with an extra CVE while scans are running: every scan
	// succeeds, on one DB or the other, and scans after the import see it.
	arch2 := vulndbtest.Archive(t, alpineCritical, alpineMedium)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := s.Scan(context.Background(), img, ref)
				if err != nil {
					errc <- err
					return
				}
				if n := len(res.Matches); n != 1 && n != 2 {
					errc <- fmt.Errorf("in-flight scan found %d matches", n)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	st2, err := s.Import(arch2)
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent scan: %v", err)
	}
	if err != nil {
		t.Fatalf("second Import: %v", err)
	}
	if st2.Checksum == st1.Checksum {
		t.Errorf("second import has the first one's checksum %s", st2.Checksum)
	}
	if got := ids(); !slices.Equal(got, []string{alpineCritical.ID, alpineMedium.ID}) {
		t.Fatalf("after second import: %q", got)
	}

	// 3. Garbage imports fail and leave the installed DB in place and in use.
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage.tar.gz": "this is not a tarball",
		"garbage.db":     "this is not a sqlite database",
		"empty.tar.gz":   "",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Import(p); err == nil {
			t.Errorf("Import(%s) succeeded", name)
		} else {
			t.Logf("Import(%s): %v", name, err)
		}
	}
	if _, err := s.Import(filepath.Join(dir, "missing.tar.gz")); err == nil {
		t.Error("Import of a missing file succeeded")
	}
	if _, err := s.Import("https://example.com/db.tar.gz"); err == nil {
		t.Error("Import of a URL succeeded")
	}
	if st, err := s.Status(); err != nil || st.Checksum != st2.Checksum {
		t.Errorf("after garbage imports: Status = %+v, %v; want checksum %s", st, err, st2.Checksum)
	}
	if got := ids(); !slices.Equal(got, []string{alpineCritical.ID, alpineMedium.ID}) {
		t.Errorf("after garbage imports: %q", got)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "tmp-") {
			t.Errorf("import left %s behind in the DB root", e.Name())
		}
	}

	// 4. Another process installs a DB; Reload picks it up.
	vulndbtest.Build(t, root, alpineCritical, alpineMedium, alpineLowFixed,
		vulndbtest.Vuln{ID: "CVE-2099-1004", Severity: "High", Distro: "alpine:3.20", Package: "libok", Ecosystem: "apk", Constraint: "< 2.0.1-r0", Fix: "2.0.1-r0"})
	if got := ids(); !slices.Equal(got, []string{alpineCritical.ID, alpineMedium.ID}) {
		t.Errorf("before Reload: %q (the loaded DB must not change under the scanner)", got)
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := ids(); !slices.Equal(got, []string{alpineCritical.ID, alpineMedium.ID, "CVE-2099-1004"}) {
		t.Errorf("after Reload: %q", got)
	}
}

// TestImportFormats imports the other inputs `grype db import` accepts: a
// bare vulnerability.db file and a .tar.zst archive (grype's default).
func TestImportFormats(t *testing.T) {
	src := t.TempDir()
	vulndbtest.Build(t, src, alpineCritical)
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)
	for name, path := range map[string]string{
		".db":      filepath.Join(src, "6", "vulnerability.db"),
		".tar.zst": vulndbtest.ArchiveZst(t, alpineCritical),
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := newScanner(t, nil)
			if _, err := s.Import(path); err != nil {
				t.Fatalf("Import(%s): %v", name, err)
			}
			res := scanImage(t, s, "docker.io/library/alpine", img)
			if len(res.Matches) != 1 || res.Matches[0].VulnID != alpineCritical.ID {
				t.Errorf("matches = %q", brief(res.Matches))
			}
		})
	}
}

func TestConcurrentScans(t *testing.T) {
	s, _ := newScanner(t, nil, allVulns...)
	imgs := []v1.Image{
		registrytest.AlpineImage(t, "3.20.3", alpinePkgs...),
		registrytest.DebianImage(t, "12", debianPkgs...),
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img := imgs[i%len(imgs)]
			res, err := s.Scan(context.Background(), img, refOf(t, "example.com/img", img))
			if err != nil {
				t.Errorf("Scan %d: %v", i, err)
				return
			}
			if len(res.Matches) != 2 {
				t.Errorf("Scan %d: %q", i, brief(res.Matches))
			}
		}()
	}
	wg.Wait()
}

func TestScanCancelled(t *testing.T) {
	s, _ := newScanner(t, nil, allVulns...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)
	if _, err := s.Scan(ctx, img, "alpine"); !errors.Is(err, context.Canceled) {
		t.Errorf("Scan with cancelled context: %v, want context.Canceled", err)
	}
}

func TestClose(t *testing.T) {
	s, _ := newScanner(t, nil, allVulns...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(context.Background(), registrytest.AlpineImage(t, "3.20.3"), "alpine"); err == nil {
		t.Error("Scan after Close succeeded")
	}
}

func BenchmarkScan(b *testing.B) {
	s, _ := newScanner(b, nil, allVulns...)
	small := registrytest.AlpineImage(b, "3.20.3", alpinePkgs...)
	cases := []struct {
		name string
		img  v1.Image
	}{{"small", small}}
	if os.Getenv("AIRLOCK_BENCH_LARGE") != "" {
		cases = append(cases, struct {
			name string
			img  v1.Image
		}{"padded-100MB", registrytest.PaddedImage(b, small, 100<<20)})
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ref := refOf(b, "docker.io/library/alpine", c.img)
			var sbomD, matchD time.Duration
			for b.Loop() {
				res, err := s.Scan(context.Background(), c.img, ref)
				if err != nil {
					b.Fatal(err)
				}
				sbomD += res.SBOMDuration
				matchD += res.MatchDuration
			}
			b.ReportMetric(float64(sbomD)/float64(time.Millisecond)/float64(b.N), "sbom-ms/op")
			b.ReportMetric(float64(matchD)/float64(time.Millisecond)/float64(b.N), "match-ms/op")
		})
	}
}

// TestUpdate installs databases from a local grype-style update server:
// first install, no-op when current, newer DB picked up, and a tampered
// archive rejected with the installed DB kept.
func TestUpdate(t *testing.T) {
	srv := vulndbtest.NewUpdateServer(t)
	s, _ := newScanner(t, nil)
	ctx := context.Background()
	img := registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)

	if _, err := s.Update(ctx, srv.URL()); err == nil {
		t.Error("Update from an empty server succeeded")
	}
	if _, err := s.Update(ctx, "ftp://example.com/latest.json"); err == nil {
		t.Error("Update from a non-HTTP URL succeeded")
	}

	built := srv.Publish(t, alpineCritical)
	if ok, err := s.Update(ctx, srv.BaseURL()); err != nil || !ok {
		t.Fatalf("first Update = %v, %v; want true", ok, err)
	}
	st, err := s.Status()
	if err != nil || !st.Built.Equal(built) {
		t.Fatalf("Status after update = %+v, %v; want built %s", st, err, built)
	}
	if res := scanImage(t, s, "alpine", img); len(res.Matches) != 1 {
		t.Errorf("after first update: %q", brief(res.Matches))
	}

	if ok, err := s.Update(ctx, srv.URL()); err != nil || ok {
		t.Errorf("Update when current = %v, %v; want false, nil", ok, err)
	}
	if n := srv.Downloads(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}

	srv.Publish(t, alpineCritical, alpineMedium)
	if ok, err := s.Update(ctx, srv.URL()); err != nil || !ok {
		t.Fatalf("second Update = %v, %v; want true", ok, err)
	}
	if res := scanImage(t, s, "alpine", img); len(res.Matches) != 2 {
		t.Errorf("after second update: %q", brief(res.Matches))
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	srv.Publish(t, alpineCritical)
	if _, err := s.Update(cancelled, srv.URL()); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with cancelled context: %v, want context.Canceled", err)
	}
	if res := scanImage(t, s, "alpine", img); len(res.Matches) != 2 {
		t.Errorf("after failed update: %q", brief(res.Matches))
	}

	// An archive that does not match the listing's checksum is refused.
	file := vulndbtest.ArchiveAt(t, time.Now().Add(time.Hour))
	a, err := v6dist.NewArchive(file, time.Now().Add(time.Hour), 6, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	a.Checksum = "sha256:" + strings.Repeat("0", 64)
	var listing bytes.Buffer
	if err := v6dist.NewLatestDocument(*a).Write(&listing); err != nil {
		t.Fatal(err)
	}
	tampered := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".json") {
			w.Write(listing.Bytes())
			return
		}
		http.ServeFile(w, r, file)
	}))
	defer tampered.Close()
	if ok, err := s.Update(ctx, tampered.URL+"/v6/latest.json"); err == nil || ok {
		t.Errorf("Update with a bad checksum = %v, %v; want an error", ok, err)
	} else {
		t.Logf("tampered archive: %v", err)
	}
	if res := scanImage(t, s, "alpine", img); len(res.Matches) != 2 {
		t.Errorf("after tampered update: %q", brief(res.Matches))
	}
}
