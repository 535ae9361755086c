package lifecycle_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/lifecycle"
)

func TestLookup(t *testing.T) {
	tab := lifecycle.Default()
	cases := []struct{ distro, release, eol string }{
		{"alpine 3.20.3", "3.20", "2026-04-01"},
		{"alpine 3.2", "", ""}, // not 3.20
		{"debian 12", "12", "2028-06-30"},
		{"debian 12.7", "12", "2028-06-30"},
		{"ubuntu 22.04", "22.04", "2027-06-01"},
		{"fedora 40", "", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		o := tab.Lookup(c.distro)
		got := ""
		if o.Known() {
			got = o.EOL.Format(time.DateOnly)
		}
		if o.Release != c.release || got != c.eol {
			t.Errorf("Lookup(%q) = %+v, want release %q eol %q", c.distro, o, c.release, c.eol)
		}
	}
}

func TestLoadExtends(t *testing.T) {
	p := filepath.Join(t.TempDir(), "eol.json")
	os.WriteFile(p, []byte(`{"alpine":{"3.20":"2030-01-01"},"fedora":{"40":"2025-05-13"}}`), 0o644)
	tab, err := lifecycle.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if o := tab.Lookup("alpine 3.20.3"); o.EOL.Format(time.DateOnly) != "2030-01-01" {
		t.Errorf("override not applied: %+v", o)
	}
	if o := tab.Lookup("fedora 40"); !o.Known() {
		t.Errorf("added OS unknown: %+v", o)
	}
	if o := tab.Lookup("alpine 3.19.1"); o.EOL.Format(time.DateOnly) != "2025-11-01" {
		t.Errorf("shipped entry lost: %+v", o)
	}
	os.WriteFile(p, []byte(`{"alpine":{"3.20":"April 2026"}}`), 0o644)
	if _, err := lifecycle.Load(p); err == nil {
		t.Error("a bad date loaded")
	}
}

// TestResolve: the operator's table wins over the vulnerability DB, which
// wins over the shipped table; each date says where it came from.
func TestResolve(t *testing.T) {
	p := filepath.Join(t.TempDir(), "eol.json")
	os.WriteFile(p, []byte(`{"debian":{"11":"2029-01-01"}}`), 0o644)
	tab, err := lifecycle.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	db := time.Date(2024, 8, 14, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, distro, dbRelease string
		db                      time.Time
		release, eol, source    string
	}{
		{"db preferred to the shipped table", "alpine 3.20.3", "3.20", db, "3.20", "2024-08-14", lifecycle.SourceGrypeDB},
		{"shipped table without a db date", "alpine 3.20.3", "", time.Time{}, "3.20", "2026-04-01", lifecycle.SourceTable},
		{"operator's table beats the db", "debian 11", "11", db, "11", "2029-01-01", lifecycle.SourceEOLTable},
		{"db knows what no table does", "fedora 40", "40", db, "40", "2024-08-14", lifecycle.SourceGrypeDB},
		{"db release defaults to the table's", "alpine 3.19.4", "", db, "3.19", "2024-08-14", lifecycle.SourceGrypeDB},
		{"nobody knows", "fedora 40", "", time.Time{}, "", "", ""},
	}
	for _, c := range cases {
		o := tab.Resolve(c.distro, c.dbRelease, c.db)
		got := ""
		if o.Known() {
			got = o.EOL.Format(time.DateOnly)
		}
		if o.Release != c.release || got != c.eol || o.Source != c.source {
			t.Errorf("%s: Resolve(%q) = %+v, want release %q eol %q source %q", c.name, c.distro, o, c.release, c.eol, c.source)
		}
	}
	if o := lifecycle.Default().Lookup("alpine 3.20.3"); o.Source != lifecycle.SourceTable {
		t.Errorf("shipped entry source %q", o.Source)
	}
}

func TestParseDate(t *testing.T) {
	cases := []struct {
		in, want string // want "" means an error
	}{
		{"2025-05-14", "2025-05-14T00:00:00Z"},
		{"2025-05-14T00:00:00Z", "2025-05-14T00:00:00Z"},
		{"2025-05-14T12:30:00+02:00", "2025-05-14T10:30:00Z"},
		{"2025-05-14T00:00:00.123456789Z", "2025-05-14T00:00:00.123456789Z"},
		{"05/14/2025", ""},          // .NET's invariant short date: not RFC 3339
		{"14.05.2025", ""},          // a locale's date
		{"2025-5-14", ""},           // not zero-padded
		{"2025-05-14 00:00:00", ""}, // space, not T
		{"2025-13-01", ""},
		{"2025-02-30", ""},
		{" 2025-05-14", ""},
		{"2025-05-14\n", ""},
		{"", ""},
		{"never", ""},
		{"0001-01-01", ""}, // would read as "unknown"
		{"1969-12-31", ""},
		{strings.Repeat("9", 10000), ""},
		{"2025-05-14T00:00:00Z" + strings.Repeat(" ", 100), ""},
	}
	for _, c := range cases {
		got, err := lifecycle.ParseDate(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("ParseDate(%.40q) = %s, want an error", c.in, got)
			} else if len(err.Error()) > 300 {
				t.Errorf("ParseDate(%.40q): error of %d bytes echoes the input", c.in, len(err.Error()))
			}
			continue
		}
		if err != nil || got.Format(time.RFC3339Nano) != c.want || got.Location() != time.UTC {
			t.Errorf("ParseDate(%q) = %s, %v; want %s", c.in, got.Format(time.RFC3339Nano), err, c.want)
		}
	}
}

const subj = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func lifecycleManifest(artifactType, configType, subject string, ann map[string]string) []byte {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": configType, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
		"layers":        []any{},
	}
	if artifactType != "" {
		m["artifactType"] = artifactType
	}
	if subject != "" {
		m["subject"] = map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 100}
	}
	if ann != nil {
		m["annotations"] = ann
	}
	b, _ := json.Marshal(m)
	return b
}

// TestParseReferrer: only a lifecycle artifact about this very image with
// a readable date counts; every other shape is a clear error.
func TestParseReferrer(t *testing.T) {
	good := map[string]string{lifecycle.EOLAnnotation: "2025-05-14"}
	cases := []struct {
		name string
		raw  []byte
		want string // a date, or a part of the error
	}{
		{"oras attach", lifecycleManifest(lifecycle.ArtifactType, "application/vnd.oci.empty.v1+json", subj, good), "2025-05-14"},
		{"older client: type in config", lifecycleManifest("", lifecycle.ArtifactType, subj, good), "2025-05-14"},
		{"timestamp", lifecycleManifest(lifecycle.ArtifactType, "application/vnd.oci.empty.v1+json", subj, map[string]string{lifecycle.EOLAnnotation: "2025-05-14T00:00:00Z"}), "2025-05-14"},
		{"wrong subject", lifecycleManifest(lifecycle.ArtifactType, "application/vnd.oci.empty.v1+json", "sha256:"+strings.Repeat("f", 64), good), "is about"},
		{"no subject", lifecycleManifest(lifecycle.ArtifactType, "application/vnd.oci.empty.v1+json", "", good), "no subject"},
		{"another artifact type", lifecycleManifest("application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.oci.empty.v1+json", subj, good), "artifact type"},
		{"no annotation", lifecycleManifest(lifecycle.ArtifactType, "application/vnd.oci.empty.v1+json", subj, nil), "lacks"},
		{"garbage date", lifecycleManifest(lifecycle.ArtifactType, "application/vnd.oci.empty.v1+json", subj, map[string]string{lifecycle.EOLAnnotation: "soon™"}), "not an RFC 3339 date"},
		{"not JSON", []byte("\x00\xff garbage"), "lifecycle manifest"},
		{"JSON of the wrong shape", []byte(`{"annotations":["a","b"]}`), "lifecycle manifest"},
		{"subject of the wrong shape", []byte(`{"artifactType":"` + lifecycle.ArtifactType + `","subject":"sha256:x"}`), "lifecycle manifest"},
		{"empty", nil, "lifecycle manifest"},
	}
	for _, c := range cases {
		got, err := lifecycle.ParseReferrer(c.raw, subj)
		if err != nil {
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %q, want it to say %q", c.name, err, c.want)
			}
			continue
		}
		if got.Format(time.DateOnly) != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestFromManifest(t *testing.T) {
	if _, err := lifecycle.FromManifest([]byte(`{"schemaVersion":2,"annotations":{"org.opencontainers.image.created":"2025-01-01"}}`)); !errors.Is(err, lifecycle.ErrNoDeclaration) {
		t.Errorf("no annotation: %v, want ErrNoDeclaration", err)
	}
	if d, err := lifecycle.FromManifest([]byte(`{"schemaVersion":2,"annotations":{"` + lifecycle.EOLAnnotation + `":"2026-01-31"}}`)); err != nil || d.Format(time.DateOnly) != "2026-01-31" {
		t.Errorf("annotated manifest: %s, %v", d, err)
	}
	if _, err := lifecycle.FromManifest([]byte(`{"annotations":{"` + lifecycle.EOLAnnotation + `":"tomorrow"}}`)); err == nil || errors.Is(err, lifecycle.ErrNoDeclaration) {
		t.Errorf("garbage annotation: %v, want a parse error", err)
	}
	if _, err := lifecycle.FromManifest([]byte(`[1,2`)); err == nil {
		t.Error("broken JSON read")
	}
}
