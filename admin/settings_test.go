package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
)

// TestSettings: GET /api/v1/settings shows an admin the running
// configuration as YAML without its secrets; a viewer or approver gets 403.
func TestSettings(t *testing.T) {
	a := newTestAPI(t)
	cfg := config.Default()
	cfg.Admin.Token = "admin-token-hunter2"
	cfg.State = config.State{Driver: "postgres", DSN: "postgres://airlock:db-hunter2@db/airlock"}
	cfg.Gate.ApprovalsRequired = 2
	WithSettings(*cfg)(a.api)

	code, body := a.call(t, bootstrap, http.MethodGet, "/api/v1/settings", "")
	if code != http.StatusOK {
		t.Fatalf("settings: %d %s", code, body)
	}
	for _, want := range []string{"approvals_required: 2", "driver: postgres", "postgres://airlock:REDACTED@db/airlock", "token: REDACTED"} {
		if !strings.Contains(body, want) {
			t.Errorf("settings lack %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "hunter2") {
		t.Errorf("settings show a secret:\n%s", body)
	}
	for _, role := range []Role{RoleViewer, RoleApprover} {
		tok := a.token(t, "s-"+string(role), role)
		if code, body := a.call(t, tok, http.MethodGet, "/api/v1/settings", ""); code != http.StatusForbidden {
			t.Errorf("settings as %s: %d %s, want 403", role, code, body)
		}
	}
}
