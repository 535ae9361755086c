package scan_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/scan"
)

// TestOSEndOfLife: the end of life grype's database records for the
// distro a scan detected, read from the database scans use, swapped with
// it on import; a release or a database without dates gives none.
func TestOSEndOfLife(t *testing.T) {
	if _, err := (func() (scan.OSEndOfLife, error) {
		s, _ := newScanner(t, nil)
		return s.OSEndOfLife("alpine 3.20.3")
	})(); !errors.Is(err, scan.ErrNoDB) {
		t.Fatalf("without a DB: %v, want ErrNoDB", err)
	}

	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	root := t.TempDir()
	vulndbtest.BuildDB(t, root, vulndbtest.DB{
		Vulns: allVulns,
		EOL: []vulndbtest.OSEOL{
			{Distro: "alpine:3.20", EOL: day(2026, 4, 1), EOAS: day(2025, 11, 1)},
			{Distro: "debian:12", EOL: day(2026, 6, 10)},
		},
	})
	s, err := scan.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// The distro names the scan itself reports.
	alpine := scanImage(t, s, "docker.io/library/alpine", registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)).Distro
	debian := scanImage(t, s, "docker.io/library/debian", registrytest.DebianImage(t, "12", debianPkgs...)).Distro
	cases := []struct {
		distro, release, eol, eoas string
	}{
		{alpine, "3.20", "2026-04-01", "2025-11-01"},
		{debian, "12", "2026-06-10", ""},
		{"ALPINE 3.20.0", "3.20", "2026-04-01", "2025-11-01"},
		{"alpine 3.2", "3.2", "", ""},     // not 3.20
		{"alpine 3.21.1", "3.21", "", ""}, // no fallback to another 3.x
		{"centos 7", "7", "", ""},
		{"", "", "", ""},
		{"alpine", "", "", ""},
		{"   ", "", "", ""},
		{"alpine 3.20.3 extra words", "3.20", "2026-04-01", "2025-11-01"}, // as grype reads it
		{strings.Repeat("a", 10000) + " 1.2", "1.2", "", ""},
		{"alpine \x00\xff", "", "", ""},
	}
	for _, c := range cases {
		got, err := s.OSEndOfLife(c.distro)
		if err != nil {
			t.Errorf("OSEndOfLife(%.30q): %v", c.distro, err)
			continue
		}
		if got.Release != c.release || ymd(got.EOL) != c.eol || ymd(got.EOAS) != c.eoas || got.DB.Built.IsZero() {
			t.Errorf("OSEndOfLife(%.30q) = %+v, want release %q eol %q eoas %q", c.distro, got, c.release, c.eol, c.eoas)
		}
	}

	// A database without OS end-of-life data (as before schema v6.1.4).
	if _, err := s.Import(vulndbtest.Archive(t, allVulns...)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OSEndOfLife(alpine); err != nil || !got.EOL.IsZero() {
		t.Errorf("after importing a DB without dates: %+v, %v", got, err)
	}
	// A newer one with a corrected date.
	if _, err := s.Import(vulndbtest.ArchiveDB(t, vulndbtest.DB{Vulns: allVulns, EOL: []vulndbtest.OSEOL{{Distro: "alpine:3.20", EOL: day(2026, 5, 1)}}})); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OSEndOfLife(alpine); err != nil || ymd(got.EOL) != "2026-05-01" {
		t.Errorf("after importing a corrected DB: %+v, %v", got, err)
	}
}

func ymd(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}
