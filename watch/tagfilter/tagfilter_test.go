package tagfilter

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"latest", []string{"latest"}, []string{"latest2", "Latest", "v1"}},
		{"1.27.*", []string{"1.27.0", "1.27.3", "1.27.3-alpine"}, []string{"1.28.0", "1.27"}},
		{"glob:*-alpine", []string{"1.27-alpine", "x-alpine"}, []string{"1.27-alpine3", "alpine"}},
		{"v?", []string{"v1", "v2"}, []string{"v10", "v"}},
		{"[0-9]*", []string{"1", "2.0-rc"}, []string{"latest", "v1"}},
		{"regex:1\\.2[0-9]", []string{"1.20", "1.29"}, []string{"11.21", "1.21-alpine", "1.2"}},
		{"regex:v[0-9]+|stable", []string{"v12", "stable"}, []string{"v12-rc", "unstable"}},
		{"semver:>=1.27 <2", []string{"1.27", "1.27.3", "v1.27.0", "1.99.99", "v1.28"}, []string{"1.26.9", "2.0.0", "2", "1.27-alpine", "1.28.0-rc.1", "latest", "1.27.3.4"}},
		{"semver:>=1.27, <2", []string{"1.27.1"}, []string{"2.1.0"}},
		{"semver:~1.27 || ^3", []string{"1.27.9", "3.4.5"}, []string{"1.28.0", "2.0.0"}},
		{"semver:>=1.27.0-0 <2", []string{"1.28.0-rc.1", "1.27.0"}, []string{"1.26.0-rc.1"}},
		{"semver:1.x", []string{"1.0.0", "1.5"}, []string{"2.0.0"}},
	} {
		p, err := Parse(tc.pattern)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.pattern, err)
		}
		for _, tag := range tc.match {
			if !p.Match(tag) {
				t.Errorf("%q does not match %q", tc.pattern, tag)
			}
		}
		for _, tag := range tc.nomatch {
			if p.Match(tag) {
				t.Errorf("%q matches %q", tc.pattern, tag)
			}
		}
	}
}

// TestHostileTags: an upstream lists whatever it wants; tags outside the
// spec's grammar never match, whatever the pattern, and nothing is slow.
func TestHostileTags(t *testing.T) {
	hostile := []string{
		"", ".hidden", "-x", "a/b", "a:b", "a@sha256:00", "../../etc", "tag with space", "tag\nnewline",
		"\x1b[31mred", "ünïcode", strings.Repeat("a", 129), strings.Repeat("9", 200),
		"1.27.0\x00", "1.27.0 ",
	}
	for _, pat := range []string{"*", "regex:.*", "semver:*", "semver:>=0.0.0-0", "glob:*"} {
		p, err := Parse(pat)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range hostile {
			if p.Match(tag) {
				t.Errorf("%q matches hostile tag %q", pat, tag)
			}
		}
	}
	// Linear-time regexp: a pattern that backtracks exponentially in
	// other engines is instant here.
	p, err := Parse("regex:(a+)+b")
	if err != nil {
		t.Fatal(err)
	}
	if p.Match(strings.Repeat("a", 127) + "c") {
		t.Error("matched")
	}
	if p, _ := Parse("semver:*"); p.Match("99999999999999999999999.0.0") {
		t.Error("an overflowing version matches")
	}
	if _, ok := Version(strings.Repeat("1", 129)); ok {
		t.Error("an over-long tag is a version")
	}
}

func TestParseErrors(t *testing.T) {
	for _, pat := range []string{"", "  ", "regex:(", "semver:>>1", "semver:", "glob:", "[", strings.Repeat("a", MaxPatternLength+1)} {
		if _, err := Parse(pat); err == nil {
			t.Errorf("Parse(%q) succeeded", pat)
		}
	}
	if _, err := ParseSet(nil); err == nil {
		t.Error("an empty set parsed")
	}
	if _, err := ParseSet([]string{"ok", "regex:("}); err == nil || !strings.Contains(err.Error(), "[1]") {
		t.Errorf("error %v does not name the pattern index", err)
	}
}
