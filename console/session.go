package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// sessionCookie names the console's session cookie.
const sessionCookie = "airlock_session"

// maxTokenBytes bounds the token field of the sign-in form.
const maxTokenBytes = 1024

// session is the signed-in person behind a request.
type session struct {
	state.Session
	id admin.Identity
}

// identity is who the session acts as in the admin API.
func (s *session) identity() admin.Identity { return s.id }

// newSecret returns 32 random bytes, base64url: a cookie or CSRF secret.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("console: no randomness: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// startSession signs id in: a new session in the state store and its
// cookie. tokenHash is the hex SHA-256 of the API token used, "" for SSO.
func (c *Console) startSession(w http.ResponseWriter, id admin.Identity, tokenHash string) error {
	secret := newSecret()
	now := time.Now()
	ttl := SessionTTL
	if tokenHash == "" && c.ssoTTL > 0 {
		ttl = c.ssoTTL
	}
	err := c.store.CreateSession(state.Session{
		Hash: hashHex(secret), Identity: id.Name, Role: string(id.Role), TokenHash: tokenHash,
		CSRF: newSecret(), Created: now, Expires: now.Add(ttl),
	})
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: secret, Path: "/ui/", MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	c.log.Info("console: signed in", "identity", id.Name, "role", string(id.Role))
	return nil
}

// lookup returns the request's live session, or nil (none, or it cannot
// be checked now). A token's session answers to the token's current
// standing: revoked or expired ends it.
func (c *Console) lookup(r *http.Request) *session {
	s, _ := c.checkSession(r)
	return s
}

// errNoSession is checkSession's answer for a request without a live
// session: no cookie, an unknown or expired session, or a session whose
// token no longer works.
var errNoSession = errors.New("no live session")

// checkSession returns the request's live session. It fails with
// errNoSession when there is none, and with another error when the state
// database cannot tell now; only a token the database says is revoked,
// expired or gone ends its session (a failed read ends nothing).
func (c *Console) checkSession(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil, errNoSession
	}
	rec, err := c.store.Session(hashHex(ck.Value))
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return nil, errNoSession
		}
		c.log.Warn("console: session lookup failed", "error", err)
		return nil, fmt.Errorf("look up the session: %w", err)
	}
	s := &session{Session: rec, id: admin.Identity{Name: rec.Identity, Role: admin.Role(rec.Role)}}
	if rec.TokenHash != "" {
		raw, err := hex.DecodeString(rec.TokenHash)
		if err != nil || len(raw) != sha256.Size {
			return nil, errNoSession
		}
		id, status, err := c.api.AuthenticateHash([sha256.Size]byte(raw))
		if status == http.StatusServiceUnavailable {
			c.log.Warn("console: cannot check a session's token", "identity", rec.Identity, "error", err)
			return nil, fmt.Errorf("check the session's token: %w", err)
		}
		if err != nil {
			c.log.Info("console: session ended with its token", "identity", rec.Identity, "reason", err)
			_ = c.store.DeleteSession(rec.Hash)
			return nil, errNoSession
		}
		s.id = id
	}
	if !s.id.Role.AtLeast(admin.RoleViewer) {
		return nil, errNoSession
	}
	return s, nil
}

// authed serves h to signed-in requests. Others are sent to the sign-in
// page (GET) or refused (401). Every POST must carry the session's CSRF
// token in the form field "csrf".
func (c *Console) authed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.lookup(r)
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			c.fail(w, r, http.StatusUnauthorized, "sign in first")
			return
		}
		r = r.WithContext(withSession(r.Context(), s))
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if !c.csrfOK(w, r, []byte(r.PostFormValue("csrf"))) {
				return
			}
		}
		h(w, r)
	})
}

// csrfOK reports whether got is the request's session's CSRF token;
// otherwise it has refused the request (403) and logged who tried.
func (c *Console) csrfOK(w http.ResponseWriter, r *http.Request, got []byte) bool {
	s := sessionOf(r)
	if len(got) > 0 && s.CSRF != "" && subtle.ConstantTimeCompare(got, []byte(s.CSRF)) == 1 {
		return true
	}
	c.log.Warn("console: request refused: bad CSRF token", "identity", s.id.Name, "path", r.URL.Path, "remote", r.RemoteAddr)
	c.fail(w, r, http.StatusForbidden, "this form has expired or was not sent by the console; reload the page and try again")
	return false
}

// maxFormBytes bounds a console form (DB uploads excepted, see their handler).
const maxFormBytes = 64 << 10

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.lookup(r) != nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", "Sign in", loginData{SSO: c.sso != nil})
}

type loginData struct {
	SSO   bool
	Error string
}

// login signs in with an API token (form field "token"). Cross-origin
// posts are refused by secure (login CSRF); the session's own CSRF token
// guards everything after.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if tok == "" || len(tok) > maxTokenBytes {
		c.render(w, r, http.StatusUnauthorized, "login", "Sign in", loginData{SSO: c.sso != nil, Error: "enter an API token"})
		return
	}
	sum := sha256.Sum256([]byte(tok))
	id, _, err := c.api.AuthenticateHash(sum)
	if err == nil && !id.Role.AtLeast(admin.RoleViewer) {
		// A puller token opens the registry, not the console.
		err = fmt.Errorf("role %q cannot use the console", id.Role)
	}
	if err != nil {
		c.log.Warn("console: sign-in refused", "identity", orAnonymous(id.Name), "remote", r.RemoteAddr, "error", err)
		c.render(w, r, http.StatusUnauthorized, "login", "Sign in", loginData{SSO: c.sso != nil, Error: "this token is not valid (unknown, expired or revoked)"})
		return
	}
	if err := c.startSession(w, id, hex.EncodeToString(sum[:])); err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "cannot start a session: "+err.Error())
		return
	}
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// ssoCallback completes an OIDC sign-in.
func (c *Console) ssoCallback(w http.ResponseWriter, r *http.Request) {
	name, role, err := c.sso.Finish(w, r)
	if err == nil && !role.AtLeast(admin.RoleViewer) {
		err = errors.New("no console role")
	}
	if err != nil {
		c.log.Warn("console: single sign-on refused", "identity", orAnonymous(name), "remote", r.RemoteAddr, "error", err)
		c.render(w, r, http.StatusForbidden, "login", "Sign in", loginData{SSO: true, Error: "single sign-on failed: " + err.Error()})
		return
	}
	if err := c.startSession(w, admin.Identity{Name: name, Role: role}, ""); err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "cannot start a session: "+err.Error())
		return
	}
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	c.authed(func(w http.ResponseWriter, r *http.Request) {
		_ = c.store.DeleteSession(sessionOf(r).Hash)
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	}).ServeHTTP(w, r)
}

func orAnonymous(name string) string {
	if name == "" {
		return "anonymous"
	}
	return name
}
