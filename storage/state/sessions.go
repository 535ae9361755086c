package state

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// bucketSessions holds the web console's sessions, keyed by the hex
// SHA-256 of the session cookie's secret (the secret itself is never
// stored, so a copy of the database opens no session).
var bucketSessions = []byte("sessions")

// MaxSessions bounds the console sessions kept. Sessions are created only
// after a successful sign-in, and expired ones are dropped whenever one is
// created; at the bound the oldest session ends to make room.
const MaxSessions = 10000

// maxSessions is MaxSessions; tests lower it.
var maxSessions = MaxSessions

// MaxSessionsPerIdentity bounds one identity's sessions: at the bound a
// new sign-in ends that identity's oldest session. Anyone who can sign in
// can do so in a loop; this keeps them from ending everybody else's
// sessions by filling MaxSessions.
const MaxSessionsPerIdentity = 64

// maxSessionsPerIdentity is MaxSessionsPerIdentity; tests lower it.
var maxSessionsPerIdentity = MaxSessionsPerIdentity

// Session is a signed-in person's console session. It lives in the state
// store so that every replica behind a load balancer knows it.
type Session struct {
	// Hash is the hex SHA-256 of the cookie's secret: the record's key.
	Hash string `json:"-"`
	// Identity is who signed in: an API token's name, "admin" (the
	// bootstrap token) or an OIDC login ("oidc:…"); the audit actor.
	Identity string `json:"identity"`
	// Role is the identity's role at sign-in (see package admin).
	Role string `json:"role"`
	// TokenHash is the hex SHA-256 of the API token signed in with; the
	// console checks at every request that the token still works, so a
	// revoked or expired token ends its sessions. Empty for OIDC logins.
	TokenHash string `json:"token_hash,omitempty"`
	// CSRF is the session's anti-forgery token, required on every form.
	CSRF string `json:"csrf"`
	// Created and Expires bound the session's life.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// CreateSession stores sess under its Hash. Expired sessions are dropped;
// at MaxSessionsPerIdentity sessions of sess.Identity its oldest one
// ends, else at MaxSessions the oldest one of all. Sessions change no image state:
// Changed waiters are not woken.
func (s *Store) CreateSession(sess Session) error {
	if len(sess.Hash) != 64 {
		return errors.New("session: hash must be a hex SHA-256")
	}
	if _, err := hex.DecodeString(sess.Hash); err != nil {
		return fmt.Errorf("session: hash: %w", err)
	}
	return s.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketSessions)
		now := s.now()
		var oldestKey, oldestMine []byte
		var oldest, oldestMineAt time.Time
		var stale [][]byte
		n, mine := 0, 0
		err := b.ForEach(func(k, v []byte) error {
			var old Session
			if err := json.Unmarshal(v, &old); err != nil || !now.Before(old.Expires) {
				stale = append(stale, append([]byte(nil), k...))
				return nil
			}
			n++
			if oldestKey == nil || old.Created.Before(oldest) {
				oldestKey, oldest = append([]byte(nil), k...), old.Created
			}
			if old.Identity == sess.Identity {
				mine++
				if oldestMine == nil || old.Created.Before(oldestMineAt) {
					oldestMine, oldestMineAt = append([]byte(nil), k...), old.Created
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sessions: %w", err)
		}
		switch {
		case mine >= maxSessionsPerIdentity && oldestMine != nil:
			// The identity's own oldest session makes room, so that
			// signing in again and again ends no one else's.
			stale = append(stale, oldestMine)
		case n >= maxSessions && oldestKey != nil:
			stale = append(stale, oldestKey)
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("sessions: drop %x: %w", k, err)
			}
		}
		return putJSON(b, []byte(sess.Hash), &sess)
	})
}

// Session returns the live session whose cookie secret hashes to hash;
// ErrNotFound when there is none or it has expired.
func (s *Store) Session(hash string) (Session, error) {
	var sess Session
	err := s.db.View(func(tx kv.Tx) error {
		return getJSON(tx.Bucket(bucketSessions), []byte(hash), &sess)
	})
	if err != nil {
		return Session{}, fmt.Errorf("session: %w", err)
	}
	if !s.now().Before(sess.Expires) {
		return Session{}, fmt.Errorf("session expired at %s: %w", sess.Expires.Format(time.RFC3339), ErrNotFound)
	}
	sess.Hash = hash
	return sess, nil
}

// DeleteSession ends the session hash (sign-out); a missing one is no error.
func (s *Store) DeleteSession(hash string) error {
	return s.db.Update(func(tx kv.Tx) error {
		if err := tx.Bucket(bucketSessions).Delete([]byte(hash)); err != nil {
			return fmt.Errorf("session: delete: %w", err)
		}
		return nil
	})
}
