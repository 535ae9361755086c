package state

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/airlockproxy/airlock/storage/kv"
)

// bucketTokens holds the admin API tokens: "name\x00<name>" maps to a
// Token, "hash\x00<hex sha256 of the secret>" to the token's name. The
// secret itself is never stored.
var bucketTokens = []byte("tokens")

var (
	tokenNamePrefix = []byte("name\x00")
	tokenHashPrefix = []byte("hash\x00")
)

// MaxTokens bounds the token records kept, revoked and expired ones
// included. Creating one more drops the oldest revoked or expired record;
// when every record is active, creation is refused.
const MaxTokens = 1000

// Token is an admin API token of a person or robot. Its secret is shown
// once, at creation; the store keeps only its SHA-256.
type Token struct {
	// Name identifies the token; it is the audit actor of its actions.
	Name string `json:"name"`
	// Role is "viewer", "approver" or "admin" (see package admin).
	Role string `json:"role"`
	// Hash is the hex SHA-256 of the secret. Tokens clears it.
	Hash string `json:"sha256,omitempty"`
	// Created is when it was created, by CreatedBy.
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// Expires is when it stops working; zero means never.
	Expires time.Time `json:"expires,omitzero"`
	// Revoked is when it was revoked, by RevokedBy; zero while it is not.
	Revoked   time.Time `json:"revoked,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
}

// Active reports whether the token works at now: neither revoked nor expired.
func (t Token) Active(now time.Time) bool {
	return t.Revoked.IsZero() && (t.Expires.IsZero() || now.Before(t.Expires))
}

func tokenKey(prefix []byte, s string) []byte {
	return append(append([]byte(nil), prefix...), s...)
}

// CreateToken stores t with the SHA-256 of its secret, audited as actor's
// "token-create". A name held by an active token, or a hash already
// stored, is ErrConflict; a revoked or expired token of the same name is
// replaced. Created and CreatedBy are set here.
func (s *Store) CreateToken(t Token, hash [32]byte, actor string) (Token, error) {
	if t.Name == "" || bytes.IndexByte([]byte(t.Name), 0) >= 0 {
		return t, errors.New("token: name must not be empty")
	}
	t.Hash = hex.EncodeToString(hash[:])
	err := s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketTokens)
		now := s.now().UTC()
		if b.Get(tokenKey(tokenHashPrefix, t.Hash)) != nil {
			return fmt.Errorf("token %s: secret already in use: %w", t.Name, ErrConflict)
		}
		all, err := readTokens(b)
		if err != nil {
			return err
		}
		for _, old := range all {
			if old.Name != t.Name {
				continue
			}
			if old.Active(now) {
				return fmt.Errorf("token %s: already exists (revoke it first): %w", t.Name, ErrConflict)
			}
			if err := deleteToken(b, old); err != nil {
				return err
			}
			all = slices.DeleteFunc(all, func(x Token) bool { return x.Name == t.Name })
			break
		}
		if len(all) >= MaxTokens {
			// Make room by dropping the oldest inactive record.
			var oldest *Token
			for i := range all {
				if !all[i].Active(now) && (oldest == nil || all[i].Created.Before(oldest.Created)) {
					oldest = &all[i]
				}
			}
			if oldest == nil {
				return fmt.Errorf("token %s: at most %d active tokens; revoke one first: %w", t.Name, MaxTokens, ErrConflict)
			}
			if err := deleteToken(b, *oldest); err != nil {
				return err
			}
		}
		t.Created, t.CreatedBy, t.Revoked, t.RevokedBy = now, actor, time.Time{}, ""
		if err := putJSON(b, tokenKey(tokenNamePrefix, t.Name), &t); err != nil {
			return err
		}
		if err := b.Put(tokenKey(tokenHashPrefix, t.Hash), []byte(t.Name)); err != nil {
			return fmt.Errorf("token %s: %w", t.Name, err)
		}
		expires := "never"
		if !t.Expires.IsZero() {
			expires = t.Expires.Format(time.RFC3339)
		}
		return appendAudit(tx, Entry{Time: now, Actor: actor, Action: "token-create",
			Reason: fmt.Sprintf("token %s, role %s, expires %s", t.Name, t.Role, expires)})
	})
	return t, err
}

// deleteToken removes t's record and hash key.
func deleteToken(b kv.Bucket, t Token) error {
	if err := b.Delete(tokenKey(tokenNamePrefix, t.Name)); err != nil {
		return fmt.Errorf("delete token %s: %w", t.Name, err)
	}
	if err := b.Delete(tokenKey(tokenHashPrefix, t.Hash)); err != nil {
		return fmt.Errorf("delete token %s: %w", t.Name, err)
	}
	return nil
}

// TokenByHash returns the token whose secret has the SHA-256 hash,
// revoked and expired ones included (the caller decides what they may
// do); ErrNotFound when there is none.
func (s *Store) TokenByHash(hash [32]byte) (Token, error) {
	var t Token
	err := s.db.View(func(tx kv.Tx) error {
		b := tx.Bucket(bucketTokens)
		name := b.Get(tokenKey(tokenHashPrefix, hex.EncodeToString(hash[:])))
		if name == nil {
			return ErrNotFound
		}
		return getJSON(b, tokenKey(tokenNamePrefix, string(name)), &t)
	})
	if err != nil {
		return Token{}, fmt.Errorf("token lookup: %w", err)
	}
	return t, nil
}

// RevokeToken revokes the token name, audited as actor's "token-revoke".
// ErrNotFound when there is no such token, ErrConflict when it is already
// revoked. The record stays, so a use of the token is refused as revoked.
// The token's pending approvals are withdrawn in the same transaction
// (withdrawApprovals), and the audit entry says how many.
func (s *Store) RevokeToken(name, actor string) (Token, error) {
	var t Token
	err := s.update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketTokens)
		if err := getJSON(b, tokenKey(tokenNamePrefix, name), &t); err != nil {
			return fmt.Errorf("token %s: %w", name, err)
		}
		if !t.Revoked.IsZero() {
			return fmt.Errorf("token %s: already revoked: %w", name, ErrConflict)
		}
		now := s.now().UTC()
		t.Revoked, t.RevokedBy = now, actor
		if err := putJSON(b, tokenKey(tokenNamePrefix, name), &t); err != nil {
			return err
		}
		reason := fmt.Sprintf("token %s, role %s", t.Name, t.Role)
		n, err := withdrawApprovals(tx, name)
		if err != nil {
			return err
		}
		if n > 0 {
			reason += fmt.Sprintf("; %d pending approval%s withdrawn", n, map[bool]string{true: "s"}[n > 1])
		}
		return appendAudit(tx, Entry{Time: now, Actor: actor, Action: "token-revoke", Reason: reason})
	})
	t.Hash = ""
	return t, err
}

// Tokens lists every token record, sorted by name, without hashes.
func (s *Store) Tokens() ([]Token, error) {
	var out []Token
	err := s.db.View(func(tx kv.Tx) error {
		var err error
		out, err = readTokens(tx.Bucket(bucketTokens))
		return err
	})
	for i := range out {
		out[i].Hash = ""
	}
	return out, err
}

// readTokens reads every token record of b, sorted by name.
func readTokens(b kv.Bucket) ([]Token, error) {
	var out []Token
	c := b.Cursor()
	for k, v := c.Seek(tokenNamePrefix); k != nil && bytes.HasPrefix(k, tokenNamePrefix); k, v = c.Next() {
		var t Token
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, fmt.Errorf("decode token %q: %w", k[len(tokenNamePrefix):], err)
		}
		out = append(out, t)
	}
	return out, nil
}
