package state

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	clk := newClock()
	s, where := openStore(t, WithClock(clk.now))
	alice := sha256.Sum256([]byte("alk_alice"))
	got, err := s.CreateToken(Token{Name: "alice", Role: "approver", Expires: clk.now().Add(time.Hour)}, alice, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedBy != "admin" || got.Created.IsZero() {
		t.Errorf("created %+v", got)
	}
	// Duplicate name refused while active; so is a secret already in use.
	if _, err := s.CreateToken(Token{Name: "alice", Role: "admin"}, sha256.Sum256([]byte("other")), "admin"); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate name: %v, want ErrConflict", err)
	}
	if _, err := s.CreateToken(Token{Name: "bob", Role: "viewer"}, alice, "admin"); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate secret: %v, want ErrConflict", err)
	}

	// Lookup by hash, from another replica too.
	s2, err := reopen(t, where)
	if err == nil {
		defer s2.Close()
	} else {
		s2 = s // bbolt: one process per file
	}
	tok, err := s2.TokenByHash(alice)
	if err != nil || tok.Name != "alice" || tok.Role != "approver" || !tok.Active(clk.now()) {
		t.Fatalf("TokenByHash = %+v, %v", tok, err)
	}
	if _, err := s.TokenByHash(sha256.Sum256([]byte("nope"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown hash: %v, want ErrNotFound", err)
	}

	// Expiry.
	clk.advance(2 * time.Hour)
	if tok, _ := s.TokenByHash(alice); tok.Active(clk.now()) {
		t.Errorf("token active after its expiry: %+v", tok)
	}
	// An expired name may be created again, replacing the record.
	alice2 := sha256.Sum256([]byte("alk_alice2"))
	if _, err := s.CreateToken(Token{Name: "alice", Role: "approver"}, alice2, "root"); err != nil {
		t.Fatalf("recreate expired: %v", err)
	}
	if _, err := s.TokenByHash(alice); !errors.Is(err, ErrNotFound) {
		t.Errorf("old secret after replacement: %v, want ErrNotFound", err)
	}

	// Revoke.
	rev, err := s.RevokeToken("alice", "root")
	if err != nil || rev.Revoked.IsZero() || rev.RevokedBy != "root" {
		t.Fatalf("revoke = %+v, %v", rev, err)
	}
	if tok, err := s.TokenByHash(alice2); err != nil || tok.Active(clk.now()) || tok.Revoked.IsZero() {
		t.Errorf("revoked token = %+v, %v", tok, err)
	}
	if _, err := s.RevokeToken("alice", "root"); !errors.Is(err, ErrConflict) {
		t.Errorf("second revoke: %v, want ErrConflict", err)
	}
	if _, err := s.RevokeToken("nobody", "root"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v, want ErrNotFound", err)
	}

	list, err := s.Tokens()
	if err != nil || len(list) != 1 || list[0].Name != "alice" || list[0].Hash != "" {
		t.Errorf("Tokens = %+v, %v", list, err)
	}
	entries, err := s.Audit("", 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Actor+":"+e.Action)
	}
	if want := "[root:token-revoke root:token-create admin:token-create]"; fmt.Sprint(actions) != want {
		t.Errorf("audit = %v, want %s", actions, want)
	}
}

func TestTokensBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("creates MaxTokens tokens")
	}
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	for i := 0; i < MaxTokens; i++ {
		if _, err := s.CreateToken(Token{Name: fmt.Sprintf("t%d", i), Role: "viewer"}, sha256.Sum256(fmt.Appendf(nil, "s%d", i)), "admin"); err != nil {
			t.Fatal(err)
		}
	}
	extra := sha256.Sum256([]byte("extra"))
	if _, err := s.CreateToken(Token{Name: "extra", Role: "viewer"}, extra, "admin"); !errors.Is(err, ErrConflict) {
		t.Fatalf("token over the bound: %v, want ErrConflict", err)
	}
	if _, err := s.RevokeToken("t7", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateToken(Token{Name: "extra", Role: "viewer"}, extra, "admin"); err != nil {
		t.Fatalf("after a revoke: %v", err)
	}
	list, _ := s.Tokens()
	if len(list) != MaxTokens {
		t.Errorf("%d records, want %d", len(list), MaxTokens)
	}
	for _, tok := range list {
		if tok.Name == "t7" {
			t.Error("the revoked record was not the one dropped")
		}
	}
}
