// Package vulndbtest builds tiny grype v6 vulnerability databases in code,
// for tests that need real vulnerability matching without network access.
//
// The databases are written with grype's own v6 writer, so they have exactly
// the schema, indexes and import metadata that grype itself produces: Build
// lays out an installed DB the way `grype db import` leaves it, and Archive
// packages one the way grype distributes it.
package vulndbtest

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/klauspost/compress/zstd"
	"github.com/spf13/afero"
)

// Vuln is one vulnerability record affecting one OS package.
//
// Several Vulns may share an ID (one CVE affecting several packages); the
// vulnerability is then stored once with one affected-package entry each.
type Vuln struct {
	// ID is the vulnerability identifier, e.g. "CVE-2024-0001".
	ID string
	// Severity is "Critical", "High", "Medium", "Low", "Negligible" or
	// "Unknown" (case-insensitive).
	Severity string
	// Distro is "<name>:<version>", e.g. "alpine:3.20" or "debian:12".
	Distro string
	// Package is the affected package name as the distro spells it.
	Package string
	// Ecosystem is the package type: "apk" or "deb" (also "rpm").
	Ecosystem string
	// Constraint is the affected version range, e.g. "< 1.2.3-r1". Empty
	// means "< Fix" when Fix is set, and every version otherwise.
	Constraint string
	// Fix is the fixed version, or "" when no fix exists ("not-fixed").
	Fix string
	// Description is optional prose stored with the vulnerability.
	Description string
}

// OSEOL is the end-of-life data of one OS release, as grype's database
// records it since schema v6.1.4 (operating_systems.eol_date and
// eoas_date, which grype's builder fills from endoflife.date).
type OSEOL struct {
	// Distro is "<name>:<version>" as in Vuln.Distro, e.g. "alpine:3.17".
	// Like grype's builder, the data only lands on OS rows the
	// vulnerability data created: some Vuln must name the same release.
	Distro string
	// EOL is the end of life; EOAS the end of active support. Either may
	// be zero (stored as NULL).
	EOL, EOAS time.Time
}

// DB describes a database to build.
type DB struct {
	// Built is the build timestamp; the zero time means now.
	Built time.Time
	Vulns []Vuln
	// EOL sets end-of-life dates on OS releases of Vulns.
	EOL []OSEOL
}

// BuildDB is Build for a database described by db.
func BuildDB(t testing.TB, root string, db DB) {
	t.Helper()
	install(t, root, db)
}

// ArchiveDB is Archive for a database described by db.
func ArchiveDB(t testing.TB, db DB) string {
	t.Helper()
	return archive(t, "tar.gz", db)
}

// Build writes an installed v6 database holding vulns under root, so that
// <root>/6/vulnerability.db and <root>/6/import.json exist exactly as after
// `grype db import`. Its build time is now.
func Build(t testing.TB, root string, vulns ...Vuln) {
	t.Helper()
	BuildAt(t, root, time.Time{}, vulns...)
}

// BuildAt is Build with the database's build timestamp set to built (the zero
// time means now). Use it to exercise age checks.
func BuildAt(t testing.TB, root string, built time.Time, vulns ...Vuln) {
	t.Helper()
	install(t, root, DB{Built: built, Vulns: vulns})
}

func install(t testing.TB, root string, db DB) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(v6.ModelVersion))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("vulndbtest: create db dir: %v", err)
	}
	if err := write(dir, db); err != nil {
		t.Fatalf("vulndbtest: %v", err)
	}
	// An archive as distributed has no indexes; hydration recreates them
	// and the import metadata records the digest, as `grype db import` does.
	if err := v6.Hydrater()(dir); err != nil {
		t.Fatalf("vulndbtest: hydrate db: %v", err)
	}
	if _, err := v6.WriteImportMetadata(afero.NewOsFs(), dir, "vulndbtest"); err != nil {
		t.Fatalf("vulndbtest: write import metadata: %v", err)
	}
}

// Archive builds a database holding vulns and returns the path of a .tar.gz
// archive of it, laid out as grype distributes databases (vulnerability.db
// and import.json at the top level). `grype db import` and the curator's
// Import accept it. The file lives in a per-test temp dir.
func Archive(t testing.TB, vulns ...Vuln) string {
	t.Helper()
	return archive(t, "tar.gz", DB{Vulns: vulns})
}

// ArchiveAt is Archive with the database's build timestamp set to built (the
// zero time means now).
func ArchiveAt(t testing.TB, built time.Time, vulns ...Vuln) string {
	t.Helper()
	return archive(t, "tar.gz", DB{Built: built, Vulns: vulns})
}

// ArchiveZst is Archive in grype's default distribution format, a
// zstd-compressed tar (.tar.zst).
func ArchiveZst(t testing.TB, vulns ...Vuln) string {
	t.Helper()
	return archive(t, "tar.zst", DB{Vulns: vulns})
}

func archive(t testing.TB, ext string, db DB) string {
	t.Helper()
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "build")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("vulndbtest: create build dir: %v", err)
	}
	if err := write(dir, db); err != nil {
		t.Fatalf("vulndbtest: %v", err)
	}
	if _, err := v6.WriteImportMetadata(afero.NewOsFs(), dir, "vulndbtest"); err != nil {
		t.Fatalf("vulndbtest: write import metadata: %v", err)
	}

	stamp := db.Built
	if stamp.IsZero() {
		stamp = time.Now()
	}
	name := fmt.Sprintf("vulnerability-db_v%d.%d.%d_%d.%s", v6.ModelVersion, v6.Revision, v6.Addition, stamp.Unix(), ext)
	out := filepath.Join(tmp, name)
	if err := writeTar(out, ext, dir, v6.VulnerabilityDBFileName, v6.ImportMetadataFileName); err != nil {
		t.Fatalf("vulndbtest: %v", err)
	}
	return out
}

// write creates a fresh v6 database in dir as db describes. The writer's
// Close drops indexes and vacuums, leaving the file as it is distributed.
func write(dir string, db DB) (err error) {
	built, vulns := db.Built, db.Vulns
	w, err := v6.NewWriter(v6.Config{DBDirPath: dir, CacheSizeKiB: 8 * 1024})
	if err != nil {
		return fmt.Errorf("open db writer in %s: %w", dir, err)
	}
	closed := false
	defer func() {
		if !closed {
			if cerr := w.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("close db writer: %w", cerr)
			}
		}
	}()

	captured := time.Now().UTC().Round(time.Second)
	handles := map[string]*v6.VulnerabilityHandle{}
	for i, v := range vulns {
		if err := v.validate(); err != nil {
			return fmt.Errorf("vuln %d (%s): %w", i, v.ID, err)
		}
		osName, osVersion, _ := strings.Cut(v.Distro, ":")
		osName = strings.ToLower(osName)

		vh, ok := handles[v.ID]
		if !ok {
			vh = &v6.VulnerabilityHandle{
				Name:       v.ID,
				ProviderID: osName,
				Provider: &v6.Provider{
					ID:           osName,
					Version:      "1",
					Processor:    "vulndbtest",
					DateCaptured: &captured,
				},
				Status: v6.VulnerabilityActive,
				BlobValue: &v6.VulnerabilityBlob{
					ID:          v.ID,
					Description: v.Description,
					Severities:  severities(v.Severity),
				},
			}
			if err := w.AddVulnerabilities(vh); err != nil {
				return fmt.Errorf("add vulnerability %s: %w", v.ID, err)
			}
			handles[v.ID] = vh
		}

		aph := &v6.AffectedPackageHandle{
			VulnerabilityID: vh.ID,
			OperatingSystem: operatingSystem(osName, osVersion),
			Package:         &v6.Package{Ecosystem: strings.ToLower(v.Ecosystem), Name: v.Package},
			BlobValue: &v6.PackageBlob{
				CVEs:   []string{v.ID},
				Ranges: []v6.Range{v.versionRange()},
			},
		}
		if err := w.AddAffectedPackages(aph); err != nil {
			return fmt.Errorf("add affected package %s for %s: %w", v.Package, v.ID, err)
		}
	}

	for i, e := range db.EOL {
		if err := setEOL(w, e); err != nil {
			return fmt.Errorf("eol %d (%s): %w", i, e.Distro, err)
		}
	}

	closed = true
	if err := w.Close(); err != nil {
		return fmt.Errorf("close db writer: %w", err)
	}
	if !built.IsZero() {
		if err := setBuilt(dir, built); err != nil {
			return err
		}
	}
	return nil
}

// setEOL records e's dates on its OS release the way grype's builder
// does (writeOperatingSystemEOL: UpdateOperatingSystemEOL by name, major
// and minor version), failing where grype's would silently skip: a
// release no vulnerability created.
func setEOL(w v6.ReadWriter, e OSEOL) error {
	name, version, ok := strings.Cut(e.Distro, ":")
	if !ok || name == "" || version == "" {
		return fmt.Errorf("distro %q is not <name>:<version>", e.Distro)
	}
	row := operatingSystem(strings.ToLower(name), version)
	spec := v6.OSSpecifier{Name: row.Name, MajorVersion: row.MajorVersion, MinorVersion: row.MinorVersion}
	n, err := w.UpdateOperatingSystemEOL(spec, timePtr(e.EOL), timePtr(e.EOAS))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no OS release %s in the database: add a Vuln for it", e.Distro)
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// setBuilt rewrites the build timestamp that the writer stamped as "now".
func setBuilt(dir string, built time.Time) error {
	db, err := v6.NewLowLevelDB(filepath.Join(dir, v6.VulnerabilityDBFileName), false, true, false)
	if err != nil {
		return fmt.Errorf("open db to set build time: %w", err)
	}
	ts := built.UTC().Round(time.Second)
	res := db.Model(&v6.DBMetadata{}).Where("true").Update("build_timestamp", ts)
	if sqlDB, derr := db.DB(); derr == nil {
		defer sqlDB.Close()
	}
	if res.Error != nil {
		return fmt.Errorf("set build time: %w", res.Error)
	}
	return nil
}

func (v Vuln) validate() error {
	switch {
	case v.ID == "":
		return fmt.Errorf("missing ID")
	case v.Package == "":
		return fmt.Errorf("missing Package")
	case v.Ecosystem == "":
		return fmt.Errorf("missing Ecosystem")
	}
	name, version, ok := strings.Cut(v.Distro, ":")
	if !ok || name == "" || version == "" {
		return fmt.Errorf("distro %q is not <name>:<version>", v.Distro)
	}
	if versionFormat(v.Ecosystem) == "" {
		return fmt.Errorf("unsupported ecosystem %q", v.Ecosystem)
	}
	return nil
}

// versionRange is the single affected range of v, with its fix state.
func (v Vuln) versionRange() v6.Range {
	constraint := v.Constraint
	if constraint == "" && v.Fix != "" {
		constraint = "< " + v.Fix
	}
	fix := &v6.Fix{State: v6.NotFixedStatus}
	if v.Fix != "" {
		fix = &v6.Fix{Version: v.Fix, State: v6.FixedStatus}
	}
	return v6.Range{
		Version: v6.Version{Type: versionFormat(v.Ecosystem), Constraint: constraint},
		Fix:     fix,
	}
}

// versionFormat maps a package ecosystem to the version format grype's OS
// feeds record for it.
func versionFormat(ecosystem string) string {
	switch strings.ToLower(ecosystem) {
	case "apk":
		return "apk"
	case "deb":
		return "dpkg"
	case "rpm":
		return "rpm"
	}
	return ""
}

func severities(s string) []v6.Severity {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || s == "unknown" {
		return nil
	}
	return []v6.Severity{{Scheme: v6.SeveritySchemeCHMLN, Value: s, Rank: 1}}
}

// operatingSystem builds the OS row the way grype's OS feed transformer does:
// "3.20" is major 3 minor 20, and Debian/Ubuntu rows carry their codename,
// which grype matches against VERSION_CODENAME from /etc/os-release.
func operatingSystem(name, version string) *v6.OperatingSystem {
	major, minor, _ := strings.Cut(version, ".")
	if i := strings.IndexByte(minor, '.'); i >= 0 {
		minor = minor[:i]
	}
	return &v6.OperatingSystem{
		Name:         name,
		ReleaseID:    name,
		MajorVersion: major,
		MinorVersion: minor,
		Codename:     Codename(name, version),
	}
}

// Codename returns the release codename grype's database records for a
// Debian or Ubuntu version ("debian", "12" → "bookworm"), or "" when there
// is none (Alpine, unknown versions).
func Codename(distro, version string) string {
	switch strings.ToLower(distro) {
	case "debian":
		major, _, _ := strings.Cut(version, ".")
		return map[string]string{
			"8": "jessie", "9": "stretch", "10": "buster", "11": "bullseye",
			"12": "bookworm", "13": "trixie",
		}[major]
	case "ubuntu":
		return map[string]string{
			"18.04": "bionic", "20.04": "focal", "22.04": "jammy", "24.04": "noble",
		}[version]
	}
	return ""
}

// writeTar writes the named files of dir into a tar at out, each at the
// top level of the archive, compressed as ext says ("tar.gz" or "tar.zst").
func writeTar(out, ext, dir string, names ...string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close archive: %w", cerr)
		}
	}()
	var zw io.WriteCloser
	switch ext {
	case "tar.gz":
		zw = gzip.NewWriter(f)
	case "tar.zst":
		if zw, err = zstd.NewWriter(f); err != nil {
			return fmt.Errorf("zstd writer: %w", err)
		}
	default:
		return fmt.Errorf("unsupported archive type %q", ext)
	}
	tw := tar.NewWriter(zw)
	for _, name := range names {
		if err := addFile(tw, filepath.Join(dir, name), name); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("finish compression: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, path, name string) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return fmt.Errorf("tar header for %s: %w", name, err)
	}
	hdr.Name = name
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write tar header for %s: %w", name, err)
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("write %s to tar: %w", name, err)
	}
	return nil
}
