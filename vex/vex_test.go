package vex_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/vex"
)

const img = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
const other = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

func doc(statements string) string {
	return `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1","author":"sec team","statements":[` + statements + `]}`
}

func TestSuppresses(t *testing.T) {
	set := &vex.Set{}
	err := set.Add("a.json", []byte(doc(`
	 {"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:oci/app@sha256%3A1111111111111111111111111111111111111111111111111111111111111111?repository_url=docker.io/library/app"}],"status":"not_affected","justification":"vulnerable_code_not_present"},
	 {"vulnerability":{"name":"CVE-2","aliases":["GHSA-x"]},"products":[{"@id":"docker.io/library/app@`+img+`","subcomponents":[{"@id":"pkg:apk/alpine/openssl@3.0.1-r0"}]}],"status":"fixed"},
	 {"vulnerability":{"name":"CVE-3"},"products":[{"@id":"pkg:oci/app@`+other+`"}],"status":"not_affected"},
	 {"vulnerability":{"name":"CVE-4"},"products":[{"@id":"pkg:oci/app@`+img+`"}],"status":"not_affected"},
	 {"vulnerability":{"name":"CVE-4"},"products":[{"@id":"pkg:oci/app@`+img+`"}],"status":"affected"},
	 {"vulnerability":{"name":"CVE-5"},"products":[{"@id":"pkg:oci/app@`+img[:20]+`"}],"status":"not_affected"}`)))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                 string
		digest, id, pkg, ver string
		want                 bool
	}{
		{"purl with an escaped digest", img, "CVE-1", "busybox", "1.36", true},
		{"another image", other, "CVE-1", "busybox", "1.36", false},
		{"subcomponent and version", img, "CVE-2", "openssl", "3.0.1-r0", true},
		{"alias", img, "GHSA-x", "openssl", "3.0.1-r0", true},
		{"another package", img, "CVE-2", "zlib", "1.3", false},
		{"another version", img, "CVE-2", "openssl", "3.0.2-r0", false},
		{"a statement for another product", img, "CVE-3", "busybox", "1", false},
		{"a later affected takes it back", img, "CVE-4", "busybox", "1", false},
		{"a digest prefix is no digest", img, "CVE-5", "busybox", "1", false},
		{"no statement", img, "CVE-9", "busybox", "1", false},
	}
	for _, c := range cases {
		m, ok := set.Suppresses(c.digest, c.id, c.pkg, c.ver)
		if ok != c.want {
			t.Errorf("%s: suppressed = %v (%+v), want %v", c.name, ok, m, c.want)
		}
		if ok && !strings.Contains(m.String(), "a.json") {
			t.Errorf("%s: %q does not name its source", c.name, m)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	for name, body := range map[string]string{
		"notjson.json":   "{",
		"cyclonedx.json": `{"bomFormat":"CycloneDX"}`,
		"status.json":    doc(`{"vulnerability":{"name":"CVE-1"},"products":[],"status":"ignore_me"}`),
		"noname.json":    doc(`{"vulnerability":{},"products":[],"status":"fixed"}`),
	} {
		if _, err := vex.Load([]string{write(name, body)}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: Load = %v, want an error naming the file", name, err)
		}
	}
	if _, err := vex.Load([]string{filepath.Join(dir, "missing.json")}); err == nil {
		t.Error("a missing file loaded")
	}
	s, err := vex.Load([]string{write("ok.json", doc(`{"vulnerability":{"name":"CVE-1"},"products":[],"status":"fixed"}`))})
	if err != nil || s.Len() != 1 {
		t.Errorf("Load = %v, %v", s, err)
	}
}

// TestAddAllOrNothing: a document with one bad statement adds none of its
// statements (an upstream document is ignored whole, never half), and a
// document over the size bound is refused.
func TestAddAllOrNothing(t *testing.T) {
	set := &vex.Set{}
	err := set.Add("half.json", []byte(doc(`
	 {"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:oci/app@`+img+`"}],"status":"not_affected"},
	 {"vulnerability":{"name":"CVE-2"},"products":[{"@id":"pkg:oci/app@`+img+`"}],"status":"whatever"}`)))
	if err == nil || set.Len() != 0 {
		t.Fatalf("Add = %v, %d statements kept", err, set.Len())
	}
	if _, ok := set.Suppresses(img, "CVE-1", "busybox", "1"); ok {
		t.Error("a statement of a refused document suppresses")
	}
	huge := doc(`{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:oci/app@` + img + `"}],"status":"not_affected","impact_statement":"` + strings.Repeat("x", 4<<20) + `"}`)
	if err := set.Add("huge.json", []byte(huge)); err == nil || set.Len() != 0 {
		t.Errorf("a document over 4 MiB: Add = %v, %d statements", err, set.Len())
	}
}

// TestMergeOrder: merged statements come after, so they have the last word.
func TestMergeOrder(t *testing.T) {
	first, last := &vex.Set{}, &vex.Set{}
	if err := first.Add("upstream", []byte(doc(`{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:oci/app@`+img+`"}],"status":"not_affected"}`))); err != nil {
		t.Fatal(err)
	}
	if err := last.Add("operator", []byte(doc(`{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:oci/app@`+img+`"}],"status":"affected"}`))); err != nil {
		t.Fatal(err)
	}
	first.Merge(last)
	first.Merge(nil)
	if _, ok := first.Suppresses(img, "CVE-1", "busybox", "1"); ok || first.Len() != 2 {
		t.Errorf("the merged (later) affected statement does not win: %d statements", first.Len())
	}
}
