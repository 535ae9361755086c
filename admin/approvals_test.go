package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestApproveStatuses: with gate.approvals_required 2, POST
// /api/v1/approve answers 202 with the record and what was recorded,
// 409 when the same approver tries again, and 200 once a second one
// approves; the image's detail shows the pending approvals.
func TestApproveStatuses(t *testing.T) {
	a := newTestAPI(t, config.Gate{ApprovalsRequired: 2})
	alice, bob := a.token(t, "alice", RoleApprover), a.token(t, "bob", RoleApprover)
	ref := a.decidable(t, state.StateRejected, "critical CVE")
	body := `{"image": "` + ref.String() + `", "reason": "accepted risk"}`
	type answer struct {
		ActionResult
		Error string `json:"error"`
	}
	post := func(token string) (int, answer) {
		t.Helper()
		code, out := a.call(t, token, http.MethodPost, "/api/v1/approve", body)
		var got answer
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("approve: %d %s", code, out)
		}
		return code, got
	}

	code, got := post(alice)
	if code != http.StatusAccepted || got.State != state.StateRejected || got.ApprovalsRequired != 2 ||
		got.Message != "approval 1 of 2 recorded (alice); pending a second approver" ||
		len(got.Approvals) != 1 || got.Approvals[0].Actor != "alice" || got.Approvals[0].Reason != "accepted risk" {
		t.Fatalf("alice: %d %+v", code, got)
	}
	code, out := a.call(t, bob, http.MethodGet, "/api/v1/images/"+ref.String(), "")
	var det ImageDetail
	if code != http.StatusOK || json.Unmarshal([]byte(out), &det) != nil || det.ApprovalsRequired != 2 ||
		len(det.Image.Approvals) != 1 || det.Image.Approvals[0].Actor != "alice" {
		t.Fatalf("image detail: %d %s", code, out)
	}
	if !strings.Contains(out, `"approvals": [`) || !strings.Contains(out, `"actor": "alice"`) {
		t.Errorf("image detail JSON lacks the approvals field:\n%s", out)
	}

	code, got = post(alice)
	if code != http.StatusConflict || !strings.HasSuffix(got.Error, "approval 1 of 2 by alice already recorded; a different approver must approve") {
		t.Fatalf("alice again: %d %+v", code, got)
	}

	code, got = post(bob)
	if code != http.StatusOK || got.State != state.StateApproved || got.ApprovedBy != "bob" || len(got.Approvals) != 0 || got.Message != "" {
		t.Fatalf("bob: %d %+v", code, got)
	}
	code, got = post(alice)
	if code != http.StatusConflict || !strings.Contains(got.Error, "already approved") {
		t.Fatalf("alice after approval: %d %+v", code, got)
	}
}
