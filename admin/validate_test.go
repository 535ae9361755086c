package admin

import (
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
)

func TestCheckText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" means accepted, else part of the error
	}{
		{"", ""},
		{"reviewed, ticket SEC-42", ""},
		{"Überprüft — 検証済み ✓", ""},
		{`quotes " and \ backslashes`, ""},
		{"two\nlines", "U+000A"},
		{"carriage\rreturn", "U+000D"},
		{"tab\tseparated", "U+0009"},
		{"nul\x00", "U+0000"},
		{"escape \x1b[2J", "U+001B"},
		{"delete\x7f", "U+007F"},
		{"c1 \u009b csi", "U+009B"},
		{"line\u2028separator", "U+2028"},
		{"bidi \u202e override", "U+202E"},
		{"isolate \u2066", "U+2066"},
		{"bad \xff utf-8", "not valid UTF-8"},
	} {
		err := checkText("reason", tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkText(%q) = %v, want nil", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "reason: ")):
			t.Errorf("checkText(%q) = %v, want an error naming the field and %q", tc.in, err, tc.want)
		}
	}
}

func TestCheckUpstream(t *testing.T) {
	s := &Server{}
	WithUpstreams([]config.Upstream{{Name: "docker.io"}, {Name: "ghcr.io", Alias: "ghcr"}})(s)
	for _, tc := range []struct {
		image string
		want  []string // nil means accepted
	}{
		{"docker.io/library/alpine:3.20", nil},
		{"ghcr.io/team/app@sha256:" + strings.Repeat("a", 64), nil},
		{"library/alpine:3.20", []string{`unknown upstream "library"`, "docker.io, ghcr.io"}},
		{"quay.io/x/y:1", []string{`unknown upstream "quay.io"`}},
		{"ghcr/team/app:1", []string{"alias", "ghcr.io/team/app:1"}},
		{"alpine", nil}, // no upstream at all: ParseImage explains the format
	} {
		err := s.checkUpstream(tc.image)
		if tc.want == nil {
			if err != nil {
				t.Errorf("checkUpstream(%q) = %v", tc.image, err)
			}
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("checkUpstream(%q) = %v, want it to say %q", tc.image, err, w)
			}
		}
	}
	if err := (&Server{}).checkUpstream("anything/x:1"); err != nil {
		t.Errorf("without WithUpstreams: %v", err)
	}
}
