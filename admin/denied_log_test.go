package admin

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the JSON log records written so far.
func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.b.String()), "\n") {
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
	logs := &lockedBuffer{}
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
		before := len(logs.records(t))
		code, body := a.call(t, tc.token, http.MethodPost, "/api/v1/approve", approve)
		if code != tc.status {
			t.Fatalf("%s: %d %s, want %d", tc.name, code, body, tc.status)
		}
		var found bool
		for _, rec := range logs.records(t)[before:] {
			if rec["msg"] == tc.event && rec["identity"] == tc.identity && rec["path"] == "/api/v1/approve" {
				found = true
			}
		}
		if tc.event != "" && !found {
			t.Errorf("%s: no %q log record with identity %q; logged: %v", tc.name, tc.event, tc.identity, logs.records(t)[before:])
		}
	}
}
