package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"reviewed, ticket SEC-42", "reviewed, ticket SEC-42"},
		{"Überprüft ✓", "Überprüft ✓"},
		{"two\nlines", `"two\nlines"`},
		{"tab\tcell", `"tab\tcell"`},
		{"\x1b[2Jwiped", `"\x1b[2Jwiped"`},
		{"c1 \u009b", `"c1 \u009b"`},
		{"bidi \u202e", `"bidi \u202e"`},
		{"bad \xff", `"bad \xff"`},
		// A value that starts with a quote is quoted too: a quoted cell
		// always means an escaped one.
		{`"two\nlines"`, `"\"two\\nlines\""`},
	} {
		if got := safe(tc.in); got != tc.want {
			t.Errorf("safe(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestTablesCannotBeForged: a reason with a newline and a fake row prints
// as one escaped row, with as many lines as rows.
func TestTablesCannotBeForged(t *testing.T) {
	var out bytes.Buffer
	rows := [][]string{
		{"2026-01-01T00:00:00Z", "admin:eve", "approve", "docker.io/x@sha256:1", "ok\n2026-01-01T00:00:01Z  admin:alice  revoke  docker.io/x@sha256:1"},
		{"2026-01-01T00:00:02Z", "admin:\x1b]0;pwned\x07bob", "revoke", "docker.io/y@sha256:2", "tab\there"},
	}
	if err := printTable(&out, []string{"TIME", "ACTOR", "ACTION", "IMAGE", "REASON"}, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines for 2 rows:\n%s", len(lines), out.String())
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\t") || !strings.Contains(lines[1], `"ok\n2026`) {
		t.Errorf("control characters printed raw:\n%q", out.String())
	}
}

func TestJSONSafe(t *testing.T) {
	v := map[string]string{"reason": "a\u009b[2Jb \u202e del\x7f", "plain": "x\ny"}
	var out bytes.Buffer
	if err := printJSON(&out, v); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\u009b\u202e\x7f") {
		t.Errorf("printJSON left terminal controls raw: %q", out.String())
	}
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["reason"] != v["reason"] || back["plain"] != v["plain"] {
		t.Errorf("printJSON changed the document: %v %q", err, back)
	}
	// Outside the BMP: a surrogate pair that decodes to the same rune.
	emoji := "\U000e0041" // TAG LATIN CAPITAL LETTER A, a format character
	b := jsonSafe([]byte(`{"x":"` + emoji + `"}`))
	if err := json.Unmarshal(b, &back); err != nil || back["x"] != emoji || bytes.Contains(b, []byte(emoji)) {
		t.Errorf("jsonSafe(%q) = %s (%v)", emoji, b, err)
	}
}

// TestHelpExitsZero: --help prints the usage to stdout and succeeds, for
// serve and the other commands; a bad flag still fails with status 2 and
// no "exit status 2" noise.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--help"}, {"serve", "-h"}, {"serve", "--config", "x.yaml", "--help"},
		{"audit", "--help"}, {"approve", "docker.io/x:1", "--help"}, {"keys", "generate", "-h"}, {"--help"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(args, &stdout, &stderr); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		if !strings.Contains(stdout.String(), "Usage") && !strings.Contains(stdout.String(), "-admin-url") && !strings.Contains(stdout.String(), "-dir") {
			t.Errorf("%q printed no usage on stdout:\n%s", args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	err := run([]string{"serve", "--bogus"}, &stdout, &stderr)
	if ee, ok := err.(exitError); !ok || ee != 2 {
		t.Errorf("serve --bogus: %v, want exit status 2", err)
	}
	if !strings.Contains(stderr.String(), "bogus") {
		t.Errorf("serve --bogus: stderr %q does not name the flag", stderr.String())
	}
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	tok, path, created, err := adminToken(dir)
	if err != nil || !created || path != filepath.Join(dir, "admin.token") {
		t.Fatalf("adminToken = %q, %s, %v, %v", tok, path, created, err)
	}
	if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
		t.Errorf("token %q is not 32 bytes of hex", tok)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v", err, fi.Mode())
	}
	again, _, created, err := adminToken(dir)
	if err != nil || created || again != tok {
		t.Errorf("second call = %q, %v, %v; want the same token, reused", again, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := adminToken(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable token file: %v, want a refusal", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if fresh, _, created, err := adminToken(dir); err != nil || !created || fresh == tok {
		t.Errorf("empty token file: %q, %v, %v; want a new token", fresh, created, err)
	}
}
