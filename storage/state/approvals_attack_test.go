package state

import (
	"crypto/sha256"
	"strings"
	"testing"
)

// TestRevokedTokenApprovalsWithdrawn: revoking a token is what an admin
// does when it is lost or stolen, or its holder leaves. A pending
// approval it gave must not count any more: otherwise one more approver,
// trusting it, completes an approval nobody trustworthy gave. Revoking
// withdraws the token's pending approvals (the image lists them no more,
// the token-revoke audit entry says how many), and leaves everybody
// else's.
func TestRevokedTokenApprovalsWithdrawn(t *testing.T) {
	s, _ := openStore(t)
	for _, name := range []string{"alice", "bob", "carol"} {
		if _, err := s.CreateToken(Token{Name: name, Role: "approver"}, sha256.Sum256([]byte("secret-"+name)), "admin"); err != nil {
			t.Fatal(err)
		}
	}
	r, other := ref("app", "stolen"), ref("app", "other")
	setState(t, s, r, StateAwaitingApproval)
	setState(t, s, other, StateAwaitingApproval)
	approveAs(t, s, r, 2, "alice")
	approveAs(t, s, other, 2, "bob")

	if _, err := s.RevokeToken("alice", "admin"); err != nil {
		t.Fatal(err)
	}
	if got := approvalsOf(mustImage(t, s, r)); len(got) != 0 {
		t.Errorf("pending approvals after alice's token was revoked: %v", got)
	}
	if got := approvalsOf(mustImage(t, s, other)); len(got) != 1 || got[0] != "bob" {
		t.Errorf("bob's approval of another image: %v", got)
	}
	if _, q := approveAs(t, s, r, 2, "bob"); q.Approved || q.Count != 1 {
		t.Fatalf("bob after alice's revocation: %+v, want approval 1 of 2", q)
	}
	if _, q := approveAs(t, s, r, 2, "carol"); !q.Approved {
		t.Fatalf("carol: %+v, want approved", q)
	}
	var found bool
	for _, e := range mustAudit(t, s, "") {
		if e.Action == "token-revoke" {
			found = true
			if !strings.Contains(e.Reason, "1 pending approval withdrawn") {
				t.Errorf("token-revoke entry %q does not say what it withdrew", e.Reason)
			}
		}
	}
	if !found {
		t.Error("no token-revoke audit entry")
	}
}
