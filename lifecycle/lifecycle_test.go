package lifecycle_test

import (
	"os"
	"path/filepath"
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
