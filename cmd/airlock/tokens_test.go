package main

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/admin"
)

// TestTokensCommand: create prints the secret once, list shows the token
// without it, the new token works, revoke stops it.
func TestTokensCommand(t *testing.T) {
	s, _ := testAdmin(t, "boot")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	t.Setenv("AIRLOCK_ADMIN_URL", srv.URL)
	t.Setenv("AIRLOCK_ADMIN_TOKEN", "boot")

	var out bytes.Buffer
	if err := run([]string{"tokens", "create", "--name", "ci-bot", "--role", "viewer", "--expires", "30d"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "token ci-bot (role viewer, expires ") || !strings.HasPrefix(lines[1], admin.TokenPrefix) {
		t.Fatalf("create printed %q", out.String())
	}
	secret := lines[1]

	out.Reset()
	if err := run([]string{"tokens", "list"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ci-bot") || !strings.Contains(out.String(), "active") || strings.Contains(out.String(), secret) {
		t.Errorf("list printed %q", out.String())
	}

	// The new token reads, but may not manage tokens.
	t.Setenv("AIRLOCK_ADMIN_TOKEN", secret)
	if err := run([]string{"jobs"}, io.Discard, io.Discard); err != nil {
		t.Errorf("jobs as viewer: %v", err)
	}
	if err := run([]string{"tokens", "list"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "role viewer may not") {
		t.Errorf("tokens list as viewer: %v", err)
	}

	t.Setenv("AIRLOCK_ADMIN_TOKEN", "boot")
	out.Reset()
	if err := run([]string{"tokens", "revoke", "ci-bot"}, &out, io.Discard); err != nil || out.String() != "token ci-bot revoked\n" {
		t.Fatalf("revoke: %q, %v", out.String(), err)
	}
	t.Setenv("AIRLOCK_ADMIN_TOKEN", secret)
	if err := run([]string{"jobs"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("jobs with a revoked token: %v", err)
	}
}
