package vulndbtest_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/anchore/grype/grype"
	v6 "github.com/anchore/grype/grype/db/v6"
	v6dist "github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/distro"
	"github.com/anchore/grype/grype/search"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/spf13/afero"

	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

var vulns = []vulndbtest.Vuln{
	{ID: "CVE-2099-0001", Severity: "Critical", Distro: "alpine:3.20", Package: "libfoo", Ecosystem: "apk", Constraint: "< 1.2.3-r1", Fix: "1.2.3-r1", Description: "bad"},
	{ID: "CVE-2099-0002", Severity: "medium", Distro: "debian:12", Package: "libbar", Ecosystem: "deb"},
	// The same CVE in a second distro: one vulnerability, two packages.
	{ID: "CVE-2099-0001", Severity: "Critical", Distro: "debian:12", Package: "libfoo", Ecosystem: "deb", Fix: "1.2.3-1"},
}

// load opens an installed DB the way grype does, offline.
func load(t *testing.T, root string) (vulnerability.Provider, *vulnerability.ProviderStatus) {
	t.Helper()
	p, st, err := grype.LoadVulnerabilityDB(v6dist.Config{}, installation.Config{DBRootDir: root, ValidateChecksum: true}, false)
	if err != nil {
		t.Fatalf("LoadVulnerabilityDB: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, st
}

func find(t *testing.T, p vulnerability.Provider, d *distro.Distro, pkg string) []vulnerability.Vulnerability {
	t.Helper()
	vs, err := p.FindVulnerabilities(search.ByDistro(*d), search.ByPackageName(pkg))
	if err != nil {
		t.Fatalf("FindVulnerabilities(%s, %s): %v", d, pkg, err)
	}
	return vs
}

func checkContent(t *testing.T, p vulnerability.Provider) {
	t.Helper()
	alpine := distro.NewFromNameVersion("alpine", "3.20.3")
	debian := distro.New(distro.Debian, "12", "bookworm")

	vs := find(t, p, alpine, "libfoo")
	if len(vs) != 1 {
		t.Fatalf("alpine libfoo: %d vulnerabilities, want 1", len(vs))
	}
	v := vs[0]
	if v.ID != "CVE-2099-0001" || v.Fix.State != vulnerability.FixStateFixed || !slices.Equal(v.Fix.Versions, []string{"1.2.3-r1"}) {
		t.Errorf("alpine libfoo: %s fix %+v", v.ID, v.Fix)
	}
	if v.Metadata == nil || v.Metadata.Severity != "Critical" || v.Metadata.Description != "bad" {
		t.Errorf("alpine libfoo metadata: %+v", v.Metadata)
	}
	if v.Constraint == nil || v.Constraint.String() != "< 1.2.3-r1 (apk)" {
		t.Errorf("alpine libfoo constraint: %v", v.Constraint)
	}

	vs = find(t, p, debian, "libbar")
	if len(vs) != 1 || vs[0].Fix.State != vulnerability.FixStateNotFixed || vs[0].Metadata.Severity != "Medium" {
		t.Errorf("debian libbar: %+v", vs)
	}
	if vs := find(t, p, debian, "libfoo"); len(vs) != 1 || !slices.Equal(vs[0].Fix.Versions, []string{"1.2.3-1"}) {
		t.Errorf("debian libfoo: %+v", vs)
	}
	if vs := find(t, p, alpine, "libbar"); len(vs) != 0 {
		t.Errorf("alpine libbar: %d vulnerabilities, want none (debian record leaked)", len(vs))
	}
}

func TestBuild(t *testing.T) {
	root := t.TempDir()
	vulndbtest.Build(t, root, vulns...)
	p, st := load(t, root)
	if st.Error != nil || time.Since(st.Built) > time.Minute || st.SchemaVersion == "" {
		t.Errorf("status = %+v", st)
	}
	im, err := v6.ReadImportMetadata(afero.NewOsFs(), filepath.Join(root, "6"))
	if err != nil {
		t.Fatalf("import metadata: %v", err)
	}
	if im.Source != "vulndbtest" {
		t.Errorf("import source = %q", im.Source)
	}
	checkContent(t, p)
}

func TestBuildAt(t *testing.T) {
	root := t.TempDir()
	built := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	vulndbtest.BuildAt(t, root, built, vulns...)
	d, err := v6.ReadDescription(filepath.Join(root, "6", v6.VulnerabilityDBFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Built.Equal(built) {
		t.Errorf("built = %s, want %s", d.Built, built)
	}
	// The checksum in import.json still matches after the rewrite.
	p, _ := load(t, root)
	checkContent(t, p)
}

// TestArchive imports the archive with grype's curator, as
// `grype db import` does, into an empty root.
func TestArchive(t *testing.T) {
	t.Run("tar.gz", func(t *testing.T) { testArchive(t, vulndbtest.Archive(t, vulns...)) })
	t.Run("tar.zst", func(t *testing.T) { testArchive(t, vulndbtest.ArchiveZst(t, vulns...)) })
}

func testArchive(t *testing.T, archive string) {
	if fi, err := os.Stat(archive); err != nil || fi.Size() == 0 {
		t.Fatalf("archive %s: %v", archive, err)
	}
	root := filepath.Join(t.TempDir(), "db")
	client, err := v6dist.NewClient(v6dist.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := installation.NewCurator(installation.Config{DBRootDir: root}, client)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Import(archive); err != nil {
		t.Fatalf("curator Import: %v", err)
	}
	p, _ := load(t, root)
	checkContent(t, p)
}

func TestCodename(t *testing.T) {
	for _, c := range []struct{ distro, version, want string }{
		{"debian", "12", "bookworm"}, {"debian", "11.9", "bullseye"}, {"ubuntu", "24.04", "noble"}, {"alpine", "3.20", ""},
	} {
		if got := vulndbtest.Codename(c.distro, c.version); got != c.want {
			t.Errorf("Codename(%s, %s) = %q, want %q", c.distro, c.version, got, c.want)
		}
	}
}

// TestBuildEOL: end-of-life dates land on the OS rows where grype's own
// EOL lookup (exact release, no fallback) finds them, in an installed DB
// and through an archive; a release without vulnerability data is an
// error, not a silently missing date.
func TestBuildEOL(t *testing.T) {
	eol := time.Date(2024, 11, 22, 0, 0, 0, 0, time.UTC)
	eoas := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	db := vulndbtest.DB{
		Vulns: append(slices.Clone(vulns), vulndbtest.Vuln{ID: "CVE-2099-0003", Severity: "Low", Distro: "alpine:3.17", Package: "libbaz", Ecosystem: "apk"}),
		EOL: []vulndbtest.OSEOL{
			{Distro: "alpine:3.17", EOL: eol, EOAS: eoas},
			{Distro: "debian:12", EOL: time.Date(2026, 6, 10, 0, 0, 0, 0, time.UTC)},
		},
	}
	check := func(t *testing.T, p vulnerability.Provider) {
		checkContent(t, p)
		c, ok := p.(vulnerability.EOLChecker)
		if !ok {
			t.Fatal("the provider has no EOL lookup")
		}
		for _, tc := range []struct {
			d         *distro.Distro
			eol, eoas string
		}{
			{distro.NewFromNameVersion("alpine", "3.17.2"), "2024-11-22", "2024-05-01"},
			{distro.New(distro.Debian, "12", "bookworm"), "2026-06-10", ""},
			{distro.NewFromNameVersion("alpine", "3.20.3"), "", ""}, // in the DB, without dates
			{distro.NewFromNameVersion("alpine", "3.1"), "", ""},    // no fallback to another 3.x
		} {
			e, a, err := c.GetOperatingSystemEOL(tc.d)
			if err != nil {
				t.Fatalf("%s: %v", tc.d, err)
			}
			if day(e) != tc.eol || day(a) != tc.eoas {
				t.Errorf("%s: eol %q eoas %q, want %q %q", tc.d, day(e), day(a), tc.eol, tc.eoas)
			}
		}
	}
	t.Run("installed", func(t *testing.T) {
		root := t.TempDir()
		vulndbtest.BuildDB(t, root, db)
		p, _ := load(t, root)
		check(t, p)
	})
	t.Run("archive", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "db")
		client, err := v6dist.NewClient(v6dist.Config{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := installation.NewCurator(installation.Config{DBRootDir: root}, client)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Import(vulndbtest.ArchiveDB(t, db)); err != nil {
			t.Fatal(err)
		}
		p, _ := load(t, root)
		check(t, p)
	})
	t.Run("unknown release", func(t *testing.T) {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { recover() }()
			vulndbtest.BuildDB(ft, t.TempDir(), vulndbtest.DB{Vulns: vulns, EOL: []vulndbtest.OSEOL{{Distro: "alpine:3.9", EOL: eol}}})
		}()
		if !ft.failed {
			t.Error("EOL data for a release without vulnerability data was accepted")
		}
	})
}

func day(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.DateOnly)
}

// fatalRecorder records Fatalf instead of failing the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}
