package scan

import (
	"fmt"
	"strings"
	"time"

	"github.com/anchore/grype/grype/distro"
	"github.com/anchore/grype/grype/vulnerability"
)

// OSEndOfLife is what the vulnerability database records of an OS
// release's end of life. grype's v6 schema has it since v6.1.4 (columns
// eol_date and eoas_date of operating_systems, filled from
// endoflife.date); older databases have no dates.
type OSEndOfLife struct {
	// Release is the release the dates are for, major[.minor] of the
	// distro's version ("3.17" for "alpine 3.17.2"): grype's lookup
	// matches the release exactly, never another of the same major.
	Release string
	// EOL is the end of life, zero when the database has no date.
	EOL time.Time
	// EOAS is the end of active support, zero when unknown.
	EOAS time.Time
	// DB is the database that answered.
	DB DBStatus
}

// OSEndOfLife looks up the end of life of a distro, named as
// Result.Distro names it ("alpine 3.20.3", "debian 12", "ubuntu 22.04"),
// in the database scans currently use, as grype does for its own EOL
// check: the exact name (no aliasing, CentOS is not RHEL) and release (no
// fallback to the major version). A distro the database has no date for
// gives zero dates and no error; ErrNoDB when no database is installed.
func (s *Scanner) OSEndOfLife(name string) (OSEndOfLife, error) {
	d, err := s.acquire()
	if err != nil {
		return OSEndOfLife{}, err
	}
	defer d.release()
	out := OSEndOfLife{DB: withAge(d.status)}
	id, version, _ := strings.Cut(strings.TrimSpace(name), " ")
	if id == "" || version == "" {
		return out, nil
	}
	dist := distro.NewFromNameVersion(strings.ToLower(id), version)
	out.Release = dist.MajorVersion()
	if m := dist.MinorVersion(); m != "" {
		out.Release += "." + m
	}
	checker, ok := d.provider.(vulnerability.EOLChecker)
	if !ok {
		return out, nil
	}
	eol, eoas, err := checker.GetOperatingSystemEOL(dist)
	if err != nil {
		return out, fmt.Errorf("scan: end of life of %s: %w", name, err)
	}
	if eol != nil {
		out.EOL = eol.UTC()
	}
	if eoas != nil {
		out.EOAS = eoas.UTC()
	}
	return out, nil
}
