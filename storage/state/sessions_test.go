package state

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

func sessionHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestSessions(t *testing.T) {
	clk := newClock()
	s, where := openStore(t, WithClock(clk.now))
	h := sessionHash("cookie-1")
	if err := s.CreateSession(Session{Hash: h, Identity: "alice", Role: "approver", CSRF: "c1", Created: clk.now(), Expires: clk.now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(Session{Hash: "short"}); err == nil {
		t.Error("a session keyed by something else than a SHA-256 was stored")
	}
	// Another replica knows the session.
	s2, err := reopen(t, where, WithClock(clk.now))
	if err == nil {
		defer s2.Close()
	} else {
		s2 = s // bbolt: one process per file
	}
	got, err := s2.Session(h)
	if err != nil || got.Identity != "alice" || got.Role != "approver" || got.CSRF != "c1" || got.Hash != h {
		t.Fatalf("Session = %+v, %v", got, err)
	}
	if _, err := s.Session(sessionHash("cookie-2")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown session: %v, want ErrNotFound", err)
	}
	clk.advance(time.Hour)
	if _, err := s.Session(h); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired session: %v, want ErrNotFound", err)
	}
	// Sign-out.
	h3 := sessionHash("cookie-3")
	if err := s.CreateSession(Session{Hash: h3, Identity: "bob", Created: clk.now(), Expires: clk.now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(h3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(h3); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted session: %v, want ErrNotFound", err)
	}
}

// TestSessionsBounded: creating sessions drops expired ones and, at the
// bound, the oldest live one, so the bucket never exceeds MaxSessions.
func TestSessionsBounded(t *testing.T) {
	defer func(n int) { maxSessions = n }(maxSessions)
	maxSessions = 50
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	first := sessionHash("s0")
	for i := 0; i < maxSessions+5; i++ {
		clk.advance(time.Millisecond)
		if err := s.CreateSession(Session{Hash: sessionHash(fmt.Sprint("s", i)), Identity: "x", Created: clk.now(), Expires: clk.now().Add(time.Hour)}); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, err := s.Session(first); !errors.Is(err, ErrNotFound) {
		t.Errorf("oldest session kept past the bound: %v", err)
	}
	var n int
	if err := s.db.View(func(tx kv.Tx) error { n = tx.Bucket(bucketSessions).KeyN(); return nil }); err != nil {
		t.Fatal(err)
	}
	if n != maxSessions {
		t.Errorf("%d sessions stored, want %d", n, maxSessions)
	}
	if _, err := s.Session(sessionHash(fmt.Sprint("s", maxSessions+4))); err != nil {
		t.Errorf("newest session: %v", err)
	}
}
