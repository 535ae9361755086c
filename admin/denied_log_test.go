package admin

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/logtest"
	"github.com/airlockproxy/airlock/storage/state"
)

// records returns the JSON log records written to logs so far.
func records(t *testing.T, logs *logtest.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// TestDeniedActionsLogged: every refusal names who tried, in the
// process log: no or a wrong token (anonymous), an expired or revoked
// token (its name), a role too low (the identity and its role), and a
// decision the state refuses (the same approver again under four eyes).
func TestDeniedActionsLogged(t *testing.T) {
	a := newTestAPI(t, config.Gate{ApprovalsRequired: 2})
	logs := &logtest.Buffer{}
	a.api.log = slog.New(slog.NewJSONHandler(logs, nil))
	vera := a.token(t, "vera", RoleViewer)
	alice := a.token(t, "alice", RoleApprover)
	gone := a.token(t, "gone", RoleApprover)
	if code, body := a.call(t, bootstrap, http.MethodDelete, "/api/v1/tokens/gone", ""); code != http.StatusOK {
		t.Fatalf("revoke gone: %d %s", code, body)
	}
	ref := a.decidable(t, state.StateRejected, "critical CVE")
	approve := `{"image": "` + ref.String() + `", "reason": "looked"}`

	for _, tc := range []struct {
		name, token     string
		status          int
		identity, event string
	}{
		{"no token", "", http.StatusUnauthorized, "anonymous", "admin API: request denied"},
		{"wrong token", "alk_nope", http.StatusUnauthorized, "anonymous", "admin API: request denied"},
		{"revoked token", gone, http.StatusUnauthorized, "gone", "admin API: request denied"},
		{"viewer approves", vera, http.StatusForbidden, "vera", "admin API: request denied"},
		{"first approval", alice, http.StatusAccepted, "", ""},
		{"same approver again", alice, http.StatusConflict, "alice", "admin API: action refused"},
	} {
		before := len(records(t, logs))
		code, body := a.call(t, tc.token, http.MethodPost, "/api/v1/approve", approve)
		if code != tc.status {
			t.Fatalf("%s: %d %s, want %d", tc.name, code, body, tc.status)
		}
		var found bool
		for _, rec := range records(t, logs)[before:] {
			if rec["msg"] == tc.event && rec["identity"] == tc.identity && rec["path"] == "/api/v1/approve" {
				found = true
			}
		}
		if tc.event != "" && !found {
			t.Errorf("%s: no %q log record with identity %q; logged: %v", tc.name, tc.event, tc.identity, records(t, logs)[before:])
		}
	}
}
