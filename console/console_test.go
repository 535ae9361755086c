package console

import (
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestSignIn: the bootstrap token and an API token of each role sign in
// (the page names the identity and role); an unknown, expired or revoked
// token does not; a session ends when its token is revoked; sign-out
// ends it too.
func TestSignIn(t *testing.T) {
	e := newEnv(t, envOptions{})
	tokens := map[string]string{
		"admin": bootstrapToken,
		"vera":  e.token(t, "vera", admin.RoleViewer),
		"arno":  e.token(t, "arno", admin.RoleApprover),
		"adele": e.token(t, "adele", admin.RoleAdmin),
	}
	roles := map[string]string{"admin": "admin", "vera": "viewer", "arno": "approver", "adele": "admin"}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			b := e.browser(t).signIn(t, tok)
			p := b.get(t, "/ui/")
			if got := p.text("strong#me"); got != name {
				t.Errorf("signed in as %q, want %q", got, name)
			}
			if got := p.attr(t, "strong#me", "data-role"); got != roles[name] {
				t.Errorf("role %q, want %q", got, roles[name])
			}
		})
	}

	expired := "alk_expired-token-secret"
	if _, err := e.store.CreateToken(state.Token{Name: "olga", Role: "approver", Expires: time.Now().Add(-time.Minute)}, sha256.Sum256([]byte(expired)), "admin"); err != nil {
		t.Fatal(err)
	}
	revoked := e.token(t, "rita", admin.RoleApprover)
	e.asAdmin(t, http.MethodDelete, "/api/v1/tokens/rita", nil, nil)
	for name, tok := range map[string]string{"unknown": "alk_no-such-token", "expired": expired, "revoked": revoked, "empty": ""} {
		t.Run("refused/"+name, func(t *testing.T) {
			b := e.browser(t)
			p := b.post(t, "/ui/login", url.Values{"token": {tok}}, nil)
			if p.status != http.StatusUnauthorized || len(p.cookie) != 0 {
				t.Fatalf("sign-in with %s token: %d, cookies %v; want 401 and no cookie", name, p.status, p.cookie)
			}
			if len(p.find("p.error")) == 0 {
				t.Error("no error shown")
			}
			if q := b.get(t, "/ui/"); q.status != http.StatusSeeOther || q.header.Get("Location") != "/ui/login" {
				t.Errorf("queue without a session: %d %s, want 303 to /ui/login", q.status, q.header.Get("Location"))
			}
		})
	}

	t.Run("session ends with its token", func(t *testing.T) {
		tok := e.token(t, "tom", admin.RoleApprover)
		b := e.browser(t).signIn(t, tok)
		e.asAdmin(t, http.MethodDelete, "/api/v1/tokens/tom", nil, nil)
		if p := b.get(t, "/ui/"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/login" {
			t.Fatalf("after the token's revocation: %d %s, want 303 to /ui/login", p.status, p.header.Get("Location"))
		}
		// A POST of the old session is refused too, CSRF token or not.
		if p := b.post(t, "/ui/logout", url.Values{"csrf": {b.csrf}}, nil); p.status != http.StatusUnauthorized {
			t.Errorf("POST after revocation: %d, want 401", p.status)
		}
	})

	t.Run("sign-out", func(t *testing.T) {
		b := e.browser(t).signIn(t, tokens["arno"])
		if p := b.post(t, "/ui/logout", url.Values{"csrf": {b.csrf}}, nil); p.status != http.StatusSeeOther {
			t.Fatalf("sign-out: %d", p.status)
		}
		if p := b.get(t, "/ui/"); p.status != http.StatusSeeOther {
			t.Errorf("after sign-out: %d, want 303 to the sign-in page", p.status)
		}
	})
}

// TestSecurityHeaders: every answer has the CSP (no inline script or
// style, no foreign origin), nosniff and no framing; the session cookie is
// HttpOnly, Secure, SameSite=Strict and scoped to /ui/.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	login := b.post(t, "/ui/login", url.Values{"token": {bootstrapToken}}, nil)
	var ck *http.Cookie
	for _, c := range login.cookie {
		if c.Name == sessionCookie {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("no session cookie: %v", login.cookie)
	}
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" {
		t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/ui/", ck)
	}
	e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "held"})
	for _, path := range []string{"/ui/login", "/ui/", "/ui/images/docker.io/library/alpine@" + string(digest.FromString("docker.io/library/alpine")) + "/approve", "/ui/no-such-page", "/ui/static/console.js"} {
		p := b.get(t, path)
		h := p.header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline script or eval", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: nosniff %q, frame options %q", path, h.Get("X-Content-Type-Options"), h.Get("X-Frame-Options"))
		}
		// No page may carry inline script or style: the CSP would block it.
		for _, s := range p.find("script") {
			if attrOf(s, "src") == "" {
				t.Errorf("%s: inline <script>", path)
			}
		}
		if len(p.find("style")) > 0 || len(p.find("[style]")) > 0 {
			t.Errorf("%s: inline style", path)
		}
	}
}
