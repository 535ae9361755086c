package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/storage/state"
)

// TestInvoke: an in-process call is authorized by the route table for the
// identity it names, exactly like a bearer token of that role, and its
// decisions are audited under that identity.
func TestInvoke(t *testing.T) {
	a := newTestAPI(t)
	ref := a.decidable(t, state.StateAwaitingApproval, "")
	body, _ := json.Marshal(ActionRequest{Image: ref.String(), Reason: "looked at it"})
	ctx := context.Background()

	for _, tc := range []struct {
		id     Identity
		method string
		path   string
		want   int
	}{
		{Identity{Name: "vic", Role: RoleViewer}, http.MethodGet, "/api/v1/images", http.StatusOK},
		{Identity{Name: "vic", Role: RoleViewer}, http.MethodPost, "/api/v1/approve", http.StatusForbidden},
		{Identity{Name: "vic", Role: RoleViewer}, http.MethodGet, "/api/v1/tokens", http.StatusForbidden},
		{Identity{}, http.MethodGet, "/api/v1/images", http.StatusForbidden},
		{Identity{Name: "alice", Role: RoleApprover}, http.MethodPost, "/api/v1/approve", http.StatusOK},
	} {
		var rd *strings.Reader
		if tc.method == http.MethodPost {
			rd = strings.NewReader(string(body))
		} else {
			rd = strings.NewReader("")
		}
		resp := a.api.Invoke(ctx, tc.id, tc.method, tc.path, rd, "application/json")
		if resp.Status != tc.want {
			t.Errorf("%s as %+v: %d %s, want %d", tc.method+" "+tc.path, tc.id, resp.Status, resp.Body, tc.want)
		}
		if tc.want != http.StatusOK {
			var ae *APIError
			if err := resp.Err(); err == nil || !errors.As(err, &ae) || ae.Status != tc.want || ae.Message == "" {
				t.Errorf("%s as %+v: Err() = %v", tc.path, tc.id, err)
			}
		}
	}
	img, err := a.store.Image(ref)
	if err != nil || img.State != state.StateApproved || img.ApprovedBy != "alice" {
		t.Errorf("after alice's invoked approve: %s by %q, %v", img.State, img.ApprovedBy, err)
	}
	entries, _ := a.store.Audit(ref.String(), 0)
	for _, e := range entries {
		if e.Action == "approve" && e.Actor != "alice" {
			t.Errorf("approve audited as %q", e.Actor)
		}
	}
}
