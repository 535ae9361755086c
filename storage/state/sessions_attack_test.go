package state

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestSessionsOneIdentityCannotEvictOthers: sessions are created only
// after a sign-in, but any identity may sign in over and over (a viewer
// token in a loop). At the bound the oldest session ends; that must be
// one of the signing-in identity's own once it has
// MaxSessionsPerIdentity, never everybody else's.
func TestSessionsOneIdentityCannotEvictOthers(t *testing.T) {
	defer func(n, m int) { maxSessions, maxSessionsPerIdentity = n, m }(maxSessions, maxSessionsPerIdentity)
	maxSessions, maxSessionsPerIdentity = 50, 5
	clk := newClock()
	s, _ := openStore(t, WithClock(clk.now))
	create := func(id, secret string) {
		t.Helper()
		clk.advance(time.Millisecond)
		if err := s.CreateSession(Session{Hash: sessionHash(secret), Identity: id, Created: clk.now(), Expires: clk.now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	create("bob", "bob-1")
	create("carol", "carol-1")
	for i := range 3 * maxSessions {
		create("eve", fmt.Sprint("eve-", i))
	}
	for _, who := range []string{"bob-1", "carol-1"} {
		if _, err := s.Session(sessionHash(who)); err != nil {
			t.Errorf("%s ended by another identity's sign-ins: %v", who, err)
		}
	}
	live := 0
	for i := range 3 * maxSessions {
		if _, err := s.Session(sessionHash(fmt.Sprint("eve-", i))); err == nil {
			live++
		} else if !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if live != maxSessionsPerIdentity {
		t.Errorf("eve has %d sessions, want the newest %d", live, maxSessionsPerIdentity)
	}
	if _, err := s.Session(sessionHash(fmt.Sprint("eve-", 3*maxSessions-1))); err != nil {
		t.Errorf("eve's newest session ended: %v", err)
	}
}
