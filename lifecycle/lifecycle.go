// Package lifecycle knows when base OS releases reach their end of life,
// and reads the end of life an image's publisher declares for it.
//
// Base OS dates come from three sources, looked up by the distribution a
// scan detected ("alpine 3.20.3" → alpine 3.20):
//
//   - policy.eol_table, the operator's table (SourceEOLTable): it extends
//     or corrects the others and always wins;
//   - the grype vulnerability database (SourceGrypeDB): grype's v6 schema
//     has carried OS end-of-life dates since v6.1.4 (columns eol_date and
//     eoas_date of the operating_systems table, from endoflife.date; the
//     module links grype v0.121.2, schema v6.1.10). Package scan reads them
//     from the database scans use (scan.Scanner.OSEndOfLife), and Resolve
//     prefers them to the shipped table. They are endoflife.date's "end of
//     life", which for Debian is the end of regular security support, not
//     of LTS as in the shipped table;
//   - the table shipped with Airlock (eol.json, SourceTable), used when the
//     database has no date for the release (an older database, a release
//     it does not know).
//
// The publisher's own declaration is Microsoft's lifecycle metadata (see
// ArtifactType and ParseReferrer), read by the gate from the upstream.
package lifecycle

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Where an end-of-life date came from (OS.Source).
const (
	// SourceTable is the table shipped with Airlock (eol.json).
	SourceTable = "airlock-table"
	// SourceEOLTable is the operator's table, policy.eol_table.
	SourceEOLTable = "policy.eol_table"
	// SourceGrypeDB is the OS end-of-life data of the grype vulnerability
	// database the image was scanned with.
	SourceGrypeDB = "grype-db"
)

//go:embed eol.json
var shipped []byte

// Table maps an OS name to its releases and their end-of-life dates, each
// with where it came from. The zero Table knows nothing.
type Table struct {
	rels map[string]map[string]entry
}

type entry struct {
	eol    time.Time
	source string
}

// parsedShipped is the shipped table, parsed once and never modified.
var parsedShipped = sync.OnceValue(func() map[string]map[string]entry {
	t, err := parse(shipped, SourceTable)
	if err != nil {
		panic("lifecycle: shipped eol.json: " + err.Error())
	}
	return t
})

// Default returns the shipped table.
func Default() Table { return Table{rels: parsedShipped()} }

// Load returns the shipped table with the entries of file (same format:
// {"<os>": {"<release>": "2006-01-02"}}) added or replacing shipped ones.
func Load(file string) (Table, error) {
	if file == "" {
		return Default(), nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return Table{}, fmt.Errorf("eol table: %w", err)
	}
	extra, err := parse(raw, SourceEOLTable)
	if err != nil {
		return Table{}, fmt.Errorf("eol table %s: %w", file, err)
	}
	t := map[string]map[string]entry{}
	for osName, rels := range parsedShipped() {
		t[osName] = map[string]entry{}
		for r, e := range rels {
			t[osName][r] = e
		}
	}
	for osName, rels := range extra {
		if t[osName] == nil {
			t[osName] = map[string]entry{}
		}
		for r, e := range rels {
			t[osName][r] = e
		}
	}
	return Table{rels: t}, nil
}

func parse(raw []byte, source string) (map[string]map[string]entry, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	t := map[string]map[string]entry{}
	for k, v := range m {
		if strings.HasPrefix(k, "_") {
			continue
		}
		var rels map[string]string
		if err := json.Unmarshal(v, &rels); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out := map[string]entry{}
		for r, d := range rels {
			day, err := time.Parse(time.DateOnly, d)
			if err != nil {
				return nil, fmt.Errorf("%s %s: date %q: want 2006-01-02", k, r, d)
			}
			out[r] = entry{eol: day, source: source}
		}
		t[strings.ToLower(k)] = out
	}
	return t, nil
}

// OS is a detected base OS and what is known of its end of life.
type OS struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Release string    `json:"release,omitempty"` // the release the date is for
	EOL     time.Time `json:"eol,omitzero"`      // zero when unknown
	// Source says where EOL came from: SourceEOLTable, SourceGrypeDB or
	// SourceTable ("" when unknown).
	Source string `json:"source,omitempty"`
}

// Known reports whether an end-of-life date is known for it.
func (o OS) Known() bool { return !o.EOL.IsZero() }

// Lookup reads a distro as a scan reports it ("alpine 3.20.3", "debian
// 12", "ubuntu 22.04") and finds its release in the table: the most
// specific key that prefixes the version at a dot boundary ("3.20.3",
// then "3.20", "3").
func (t Table) Lookup(distro string) OS {
	name, version, _ := strings.Cut(strings.TrimSpace(distro), " ")
	o := OS{Name: strings.ToLower(name), Version: version}
	rels := t.rels[o.Name]
	for v := version; v != ""; {
		if e, ok := rels[v]; ok {
			o.Release, o.EOL, o.Source = v, e.eol, e.source
			return o
		}
		i := strings.LastIndex(v, ".")
		if i < 0 {
			break
		}
		v = v[:i]
	}
	return o
}

// Resolve is Lookup given what the vulnerability database records for
// the distro: its end of life db (zero when the database has none) for
// release dbRelease. An entry of policy.eol_table wins, being the
// operator's word; otherwise the database's date is preferred to the
// shipped table's.
func (t Table) Resolve(distro, dbRelease string, db time.Time) OS {
	o := t.Lookup(distro)
	if db.IsZero() || o.Source == SourceEOLTable {
		return o
	}
	if dbRelease == "" {
		dbRelease = o.Release
	}
	o.Release, o.EOL, o.Source = dbRelease, db.UTC(), SourceGrypeDB
	return o
}
