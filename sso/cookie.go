package sso

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// CookieName is the login cookie's name. The __Host- prefix makes
// browsers accept it only when it is Secure, has Path=/ and no Domain, and
// was set over https: no sibling domain and no plain-http attacker can
// plant a login cookie of their own (login CSRF through cookie tossing).
const CookieName = "__Host-airlock-oidc"

// cookieLifetime is how long a started sign-in may take: long enough to
// type a password and pass a second factor, short enough that a leaked
// cookie is soon worthless.
const cookieLifetime = 10 * time.Minute

// attempt is one sign-in in flight, as the login cookie carries it.
type attempt struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"` // Unix seconds
}

// cookieCodec seals attempts into the login cookie with AES-256-GCM: the
// browser holds the state, the nonce and the PKCE verifier, encrypted (the
// verifier must stay secret until the token request) and authenticated
// (neither the browser nor anyone else can change them), so the server
// keeps nothing per attempt.
type cookieCodec struct {
	aead cipher.AEAD
	// aad binds a cookie to one provider and client.
	aad []byte
}

// newCookieCodec derives the cookie key from secret with HKDF-SHA256, or
// draws a random one when secret is empty (then only this process can
// open its cookies: a login must finish on the replica that started it).
// The derivation's label keeps the key apart from any other use of the
// secret (the provider knows the client secret, but a cookie tells it
// nothing it did not issue itself).
func newCookieCodec(secret []byte, bind string) (*cookieCodec, error) {
	var key []byte
	if len(secret) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("login cookie key: %w", err)
		}
	} else {
		var err error
		key, err = hkdf.Key(sha256.New, secret, nil, "airlock sso login cookie v1", 32)
		if err != nil {
			return nil, fmt.Errorf("derive the login cookie key: %w", err)
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("login cookie cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("login cookie cipher: %w", err)
	}
	return &cookieCodec{aead: aead, aad: []byte(CookieName + "\x00" + bind)}, nil
}

// seal makes the login cookie for a.
//
// SameSite=Lax, not Strict: the provider sends the browser back to the
// callback with a top-level navigation from its own site, and browsers
// withhold Strict cookies from every cross-site navigation, so the
// callback would never see the cookie. Lax sends it on exactly such
// top-level GET navigations and still withholds it from cross-site
// subrequests and POSTs.
func (c *cookieCodec) seal(a attempt) (*http.Cookie, error) {
	plain, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sealed := c.aead.Seal(nonce, nonce, plain, c.aad)
	return &http.Cookie{
		Name:     CookieName,
		Value:    base64.RawURLEncoding.EncodeToString(sealed),
		Path:     "/",
		MaxAge:   int(cookieLifetime / time.Second),
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteLaxMode,
	}, nil
}

// clear is the cookie that deletes the login cookie.
func (c *cookieCodec) clear() *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
}

// maxCookieLen bounds what open decodes; a sealed attempt is ~250 bytes.
const maxCookieLen = 1024

// open reads and checks the login cookie of r.
func (c *cookieCodec) open(r *http.Request, now time.Time) (attempt, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return attempt{}, errors.New("no sign-in in progress in this browser (the login cookie is missing: start again)")
	}
	if len(ck.Value) > maxCookieLen {
		return attempt{}, errors.New("the login cookie is too long")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(sealed) < c.aead.NonceSize() {
		return attempt{}, errors.New("the login cookie is malformed")
	}
	ns := c.aead.NonceSize()
	plain, err := c.aead.Open(nil, sealed[:ns], sealed[ns:], c.aad)
	if err != nil {
		return attempt{}, errors.New("the login cookie does not verify (altered, or made by another server or configuration)")
	}
	var a attempt
	if err := json.Unmarshal(plain, &a); err != nil {
		return attempt{}, fmt.Errorf("the login cookie's content: %w", err)
	}
	if a.State == "" || a.Nonce == "" || a.Verifier == "" {
		return attempt{}, errors.New("the login cookie lacks state, nonce or code verifier")
	}
	if !now.Before(time.Unix(a.Expires, 0)) {
		return attempt{}, fmt.Errorf("the sign-in expired (it must finish within %s of starting)", cookieLifetime)
	}
	return a, nil
}

// randomToken is a fresh 128-bit random string for state and nonce.
func randomToken() string { return rand.Text() }
