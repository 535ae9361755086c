// Package lifecycle knows when base OS releases reach their end of life:
// a table shipped with Airlock (eol.json), which policy.eol_table extends
// or corrects, looked up by the distribution a scan detected ("alpine
// 3.20.3" → alpine 3.20, end of life 2026-04-01).
package lifecycle

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"time"
)

//go:embed eol.json
var shipped []byte

// Table maps an OS name to its releases and their end-of-life dates
// (2006-01-02).
type Table map[string]map[string]string

// parsedShipped is the shipped table, parsed once.
var parsedShipped = sync.OnceValue(func() Table {
	t, err := parse(shipped)
	if err != nil {
		panic("lifecycle: shipped eol.json: " + err.Error())
	}
	return t
})

// Default returns a copy of the shipped table (the caller may add to it).
func Default() Table {
	t := Table{}
	for osName, rels := range parsedShipped() {
		t[osName] = maps.Clone(rels)
	}
	return t
}

// Load returns the shipped table with the entries of file (same format)
// added or replacing shipped ones.
func Load(file string) (Table, error) {
	t := Default()
	if file == "" {
		return t, nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("eol table: %w", err)
	}
	extra, err := parse(raw)
	if err != nil {
		return nil, fmt.Errorf("eol table %s: %w", file, err)
	}
	for osName, rels := range extra {
		if t[osName] == nil {
			t[osName] = map[string]string{}
		}
		for r, d := range rels {
			t[osName][r] = d
		}
	}
	return t, nil
}

func parse(raw []byte) (Table, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	t := Table{}
	for k, v := range m {
		if strings.HasPrefix(k, "_") {
			continue
		}
		var rels map[string]string
		if err := json.Unmarshal(v, &rels); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		for r, d := range rels {
			if _, err := time.Parse(time.DateOnly, d); err != nil {
				return nil, fmt.Errorf("%s %s: date %q: want 2006-01-02", k, r, d)
			}
		}
		t[strings.ToLower(k)] = rels
	}
	return t, nil
}

// OS is a detected base OS and what the table knows of it.
type OS struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Release string    `json:"release,omitempty"` // the table's key that matched
	EOL     time.Time `json:"eol,omitzero"`      // zero when unknown
}

// Known reports whether the table has an end-of-life date for it.
func (o OS) Known() bool { return !o.EOL.IsZero() }

// Lookup reads a distro as a scan reports it ("alpine 3.20.3", "debian
// 12", "ubuntu 22.04") and finds its release: the most specific key that
// prefixes the version at a dot boundary ("3.20.3", then "3.20", "3").
func (t Table) Lookup(distro string) OS {
	name, version, _ := strings.Cut(strings.TrimSpace(distro), " ")
	o := OS{Name: strings.ToLower(name), Version: version}
	rels := t[o.Name]
	for v := version; v != ""; {
		if d, ok := rels[v]; ok {
			o.Release = v
			o.EOL, _ = time.Parse(time.DateOnly, d)
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
