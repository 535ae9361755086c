package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/oidctest"
)

const (
	startPath    = "/ui/login/oidc"
	callbackPath = "/ui/login/oidc/callback"
	secretEnv    = "SSO_TEST_CLIENT_SECRET"
)

// The people at the test provider.
var (
	alice = oidctest.User{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Groups: []string{"platform", "everyone"}}
	bob   = oidctest.User{Username: "bob", Password: "bob-pw", Groups: []string{"qa", "everyone", "security"}}
	carol = oidctest.User{Username: "carol", Password: "carol-pw", Groups: []string{"everyone"}}
	dave  = oidctest.User{Username: "dave", Password: "dave-pw", Groups: []string{"interns"}}
	erin  = oidctest.User{Username: "erin", Password: "erin-pw"}
)

// roles is the admin.oidc.roles of the tests.
var roles = map[string]string{"everyone": "viewer", "qa": "viewer", "security": "approver", "platform": "admin"}

// rig is a test provider and a console stand-in (an https server doing
// what the console does with Start and Callback) signed in through it.
type rig struct {
	idp *oidctest.Provider
	rp  *httptest.Server
	cfg config.OIDC

	mu      sync.Mutex
	start   *Provider // serves Start
	finish  *Provider // serves Callback (another replica, or the same)
	lastErr error
	clock   time.Time // zero: the real time
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{idp: oidctest.Start(t, alice, bob, carol, dave, erin)}
	mux := http.NewServeMux()
	r.rp = httptest.NewTLSServer(mux)
	t.Cleanup(r.rp.Close)
	r.idp.AllowRedirectURI(r.rp.URL + callbackPath)
	t.Setenv(secretEnv, r.idp.ClientSecret)
	r.cfg = config.OIDC{
		Issuer:          r.idp.Issuer,
		ClientID:        r.idp.ClientID,
		ClientSecretEnv: secretEnv,
		RedirectURL:     r.rp.URL + callbackPath,
		Roles:           roles,
	}
	p := r.provider(t, r.cfg)
	r.start, r.finish = p, p
	mux.HandleFunc("GET "+startPath, func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		p := r.start
		r.mu.Unlock()
		p.Start(w, req)
	})
	mux.HandleFunc("GET "+callbackPath, func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		p := r.finish
		r.mu.Unlock()
		l, err := p.Callback(w, req)
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		switch {
		case errors.Is(err, ErrNoRole):
			http.Error(w, err.Error(), http.StatusForbidden)
		case err != nil:
			http.Error(w, err.Error(), http.StatusUnauthorized)
		default:
			_ = json.NewEncoder(w).Encode(l)
		}
	})
	return r
}

// provider builds an sso.Provider for cfg on the rig's clock.
func (r *rig) provider(t *testing.T, cfg config.OIDC, opts ...Option) *Provider {
	t.Helper()
	opts = append([]Option{WithClock(r.now)}, opts...)
	p, err := New(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if p.CallbackPath() != callbackPath {
		t.Fatalf("CallbackPath = %q, want %q", p.CallbackPath(), callbackPath)
	}
	return p
}

func (r *rig) now() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clock.IsZero() {
		return time.Now()
	}
	return r.clock
}

func (r *rig) setClock(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clock = t
}

func (r *rig) setReplicas(start, finish *Provider) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.start, r.finish = start, finish
}

func (r *rig) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// browser is a fresh browser: a cookie jar, trusting the console's TLS
// certificate.
func (r *rig) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	base := r.rp.Client()
	return &http.Client{Transport: base.Transport, Jar: jar, Timeout: 30 * time.Second}
}

// signIn logs user in through the provider's login page and returns the
// console's status and body.
func (r *rig) signIn(t *testing.T, c *http.Client, u oidctest.User) (int, string) {
	t.Helper()
	resp, err := r.idp.SignIn(c, r.rp.URL+startPath, u.Username, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Request.URL.Path != callbackPath {
		t.Fatalf("the sign-in ended at %s, not the callback", resp.Request.URL)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// callbackURL runs a sign-in up to the provider's redirect back to the
// console and returns that URL (with code and state) without visiting it.
func (r *rig) callbackURL(t *testing.T, c *http.Client, u oidctest.User) *url.URL {
	t.Helper()
	stop := *c
	stop.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == callbackPath {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := r.idp.SignIn(&stop, r.rp.URL+startPath, u.Username, u.Password)
	loc := redirected(t, "the provider", resp, err)
	if loc.Path != callbackPath || loc.Query().Get("code") == "" || loc.Query().Get("state") == "" {
		t.Fatalf("provider redirected to %v, want the callback with code and state", loc)
	}
	return loc
}

// redirected checks that a request (what) was answered, resp or err, with
// a 302 and a Location, closes the body and returns the Location.
func redirected(t *testing.T, what string, resp *http.Response, err error) *url.URL {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("%s answered %s, want a 302 redirect", what, resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return loc
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func loginCookie(c *http.Client, u string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == CookieName {
			return ck
		}
	}
	return nil
}

// TestSignIn signs people in through the real provider: each gets the
// highest role their groups map to, their name with the oidc: prefix, and
// only their mapped groups; the login cookie is gone afterwards.
func TestSignIn(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		user oidctest.User
		want Login
	}{
		{alice, Login{Name: "oidc:alice", Role: "admin", Groups: []string{"everyone", "platform"}}},
		{bob, Login{Name: "oidc:bob", Role: "approver", Groups: []string{"everyone", "qa", "security"}}},
		{carol, Login{Name: "oidc:carol", Role: "viewer", Groups: []string{"everyone"}}},
	} {
		t.Run(tc.user.Username, func(t *testing.T) {
			c := r.browser(t)
			status, body := r.signIn(t, c, tc.user)
			if status != http.StatusOK {
				t.Fatalf("callback: %d %s", status, body)
			}
			var got Login
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Login = %+v, want %+v", got, tc.want)
			}
			if ck := loginCookie(c, r.rp.URL); ck != nil {
				t.Errorf("login cookie still set after the callback: %v", ck)
			}
		})
	}
	t.Run("concurrently", func(t *testing.T) {
		// Several browsers at once, each ending with its own person.
		var wg sync.WaitGroup
		errs := make(chan error, 9)
		for i := range 9 {
			u := []oidctest.User{alice, bob, carol}[i%3]
			wg.Go(func() {
				resp, err := r.idp.SignIn(r.browser(t), r.rp.URL+startPath, u.Username, u.Password)
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				var l Login
				if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || l.Name != "oidc:"+u.Username {
					errs <- fmt.Errorf("%s: %s, %+v, %v", u.Username, resp.Status, l, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestStart checks the redirect to the provider (PKCE S256 challenge,
// nonce, state, the configured client and redirect URI) and the login
// cookie's attributes; the cookie does not show the state it carries.
func TestStart(t *testing.T) {
	r := newRig(t)
	c := r.browser(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(r.rp.URL + startPath)
	loc := redirected(t, "Start", resp, err)
	q := loc.Query()
	if !strings.HasPrefix(loc.String(), r.idp.Issuer+"/") {
		t.Errorf("Start redirected to %s, not the provider", loc)
	}
	for k, want := range map[string]string{
		"client_id":             r.idp.ClientID,
		"redirect_uri":          r.rp.URL + callbackPath,
		"response_type":         "code",
		"code_challenge_method": "S256",
		"scope":                 "openid profile email",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 20 {
			t.Errorf("%s = %q, want a random value", k, q.Get(k))
		}
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("no %s cookie in %v", CookieName, resp.Header["Set-Cookie"])
	}
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" || ck.MaxAge != 600 {
		t.Errorf("cookie attributes: %s", resp.Header.Get("Set-Cookie"))
	}
	for _, k := range []string{"state", "nonce"} {
		if strings.Contains(ck.Value, q.Get(k)) {
			t.Errorf("the cookie shows the %s in clear", k)
		}
	}
	// Two starts give two different attempts.
	resp2, err := c.Get(r.rp.URL + startPath)
	loc2 := redirected(t, "the second Start", resp2, err)
	if loc2.Query().Get("state") == q.Get("state") || loc2.Query().Get("nonce") == q.Get("nonce") || loc2.Query().Get("code_challenge") == q.Get("code_challenge") {
		t.Error("a second Start reused state, nonce or code challenge")
	}
}

// TestNoRole refuses, with ErrNoRole (403 at the console), a person the
// provider signed in but whose groups map to no role, and one with no
// groups at all.
func TestNoRole(t *testing.T) {
	r := newRig(t)
	for _, u := range []oidctest.User{dave, erin} {
		t.Run(u.Username, func(t *testing.T) {
			status, body := r.signIn(t, r.browser(t), u)
			if status != http.StatusForbidden || !errors.Is(r.err(), ErrNoRole) {
				t.Fatalf("callback: %d %s (err %v), want 403 with ErrNoRole", status, body, r.err())
			}
			if !strings.Contains(body, "oidc:"+u.Username) {
				t.Errorf("the refusal does not say who: %s", body)
			}
		})
	}
}

// TestGroupsFromUserinfo signs in with a provider that lists groups only
// at the userinfo endpoint.
func TestGroupsFromUserinfo(t *testing.T) {
	r := newRig(t)
	r.idp.SetMode(oidctest.GroupsOnlyInUserinfo)
	status, body := r.signIn(t, r.browser(t), bob)
	if status != http.StatusOK || !strings.Contains(body, `"Role":"approver"`) {
		t.Fatalf("callback: %d %s", status, body)
	}
	// Without userinfo's groups, dave still has no role.
	status, _ = r.signIn(t, r.browser(t), dave)
	if status != http.StatusForbidden {
		t.Fatalf("dave: %d, want 403", status)
	}
}

// TestForgedCallbacks refuses callbacks that do not come from this
// browser's own sign-in: altered state, no cookie, an altered cookie, a
// replayed code, a code from another sign-in (PKCE), an expired sign-in,
// an error from the provider, no code.
func TestForgedCallbacks(t *testing.T) {
	r := newRig(t)

	t.Run("altered state", func(t *testing.T) {
		c := r.browser(t)
		loc := r.callbackURL(t, c, alice)
		q := loc.Query()
		q.Set("state", q.Get("state")+"x")
		loc.RawQuery = q.Encode()
		refused(t, c, loc.String(), "state parameter does not match")
	})
	t.Run("no cookie", func(t *testing.T) {
		loc := r.callbackURL(t, r.browser(t), alice)
		refused(t, r.browser(t), loc.String(), "login cookie is missing")
	})
	t.Run("altered cookie", func(t *testing.T) {
		c := r.browser(t)
		loc := r.callbackURL(t, c, alice)
		ck := loginCookie(c, r.rp.URL)
		b := []byte(ck.Value)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		setCookie(t, c, r.rp.URL, string(b))
		refused(t, c, loc.String(), "login cookie does not verify")
	})
	t.Run("replayed code", func(t *testing.T) {
		c := r.browser(t)
		loc := r.callbackURL(t, c, alice)
		ck := loginCookie(c, r.rp.URL)
		if status, body := get(t, c, loc.String()); status != http.StatusOK {
			t.Fatalf("first callback: %d %s", status, body)
		}
		// The browser no longer has the cookie ...
		refused(t, c, loc.String(), "login cookie is missing")
		// ... and whoever kept it finds the code spent at the provider.
		setCookie(t, c, r.rp.URL, ck.Value)
		refused(t, c, loc.String(), "exchange the authorization code", "invalid_grant")
	})
	t.Run("code from another sign-in", func(t *testing.T) {
		// The attacker's code (their own login) pasted into the victim's
		// callback with the victim's own state: the state matches, but
		// the code was issued for the attacker's PKCE challenge.
		attacker := r.callbackURL(t, r.browser(t), carol)
		victim := r.browser(t)
		loc := r.callbackURL(t, victim, alice)
		q := loc.Query()
		q.Set("code", attacker.Query().Get("code"))
		loc.RawQuery = q.Encode()
		body := refused(t, victim, loc.String(), "exchange the authorization code")
		if !strings.Contains(body, "invalid code_verifier") {
			t.Errorf("the provider did not refuse the code verifier: %s", body)
		}
	})
	t.Run("expired sign-in", func(t *testing.T) {
		start := time.Now()
		r.setClock(start)
		t.Cleanup(func() { r.setClock(time.Time{}) })
		c := r.browser(t)
		loc := r.callbackURL(t, c, alice)
		r.setClock(start.Add(10*time.Minute + time.Second))
		refused(t, c, loc.String(), "sign-in expired")
	})
	t.Run("provider error", func(t *testing.T) {
		c := r.browser(t)
		loc := r.callbackURL(t, c, alice)
		q := url.Values{"error": {"access_denied"}, "error_description": {"no\x1b[31m " + strings.Repeat("x", 200)}, "state": {loc.Query().Get("state")}}
		body := refused(t, c, r.rp.URL+callbackPath+"?"+q.Encode(), `refused the sign-in: "access_denied"`)
		if strings.Contains(body, "\x1b") || strings.Contains(body, strings.Repeat("x", 100)) {
			t.Errorf("the provider's description is not quoted and cut: %q", body)
		}
	})
	t.Run("no code", func(t *testing.T) {
		c := r.browser(t)
		loc := r.callbackURL(t, c, alice)
		q := loc.Query()
		q.Del("code")
		loc.RawQuery = q.Encode()
		refused(t, c, loc.String(), "no authorization code")
	})
}

// refused GETs the callback URL u with c and fails unless it is refused
// (401) with a page that says each of want; it returns the page.
func refused(t *testing.T, c *http.Client, u string, want ...string) string {
	t.Helper()
	status, body := get(t, c, u)
	if status != http.StatusUnauthorized {
		t.Fatalf("callback: %d %s, want 401", status, body)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Fatalf("callback refused without saying %q: %s", w, body)
		}
	}
	return body
}

func setCookie(t *testing.T, c *http.Client, u, value string) {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	c.Jar.SetCookies(pu, []*http.Cookie{{Name: CookieName, Value: value, Path: "/", Secure: true, HttpOnly: true}})
}

// TestBadIDTokens has the provider misbehave: an ID token for another
// audience, with another nonce, already expired, or signed with a key it
// did not publish is refused by the verification, naming why.
func TestBadIDTokens(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		mode oidctest.Mode
		want error
	}{
		{oidctest.WrongAudience, oidc.ErrAudience},
		{oidctest.WrongNonce, oidc.ErrNonceInvalid},
		{oidctest.ExpiredIDToken, oidc.ErrExpired},
		{oidctest.ForeignKey, oidc.ErrSignatureInvalid},
	} {
		t.Run(fmt.Sprint(tc.want), func(t *testing.T) {
			c := r.browser(t)
			loc := r.callbackURL(t, c, alice)
			r.idp.SetMode(tc.mode)
			t.Cleanup(func() { r.idp.SetMode(oidctest.Honest) })
			status, body := get(t, c, loc.String())
			if status != http.StatusUnauthorized || !errors.Is(r.err(), tc.want) {
				t.Fatalf("callback: %d %s (err %v), want 401 with %v", status, body, r.err(), tc.want)
			}
		})
	}
	// Honest again: the same person gets in.
	if status, body := r.signIn(t, r.browser(t), alice); status != http.StatusOK {
		t.Fatalf("honest provider: %d %s", status, body)
	}
}

// TestWrongIssuerOrClient: a provider whose discovery document names
// another issuer is refused by New; a wrong client secret is refused by
// the provider at the token request.
func TestWrongIssuerOrClient(t *testing.T) {
	r := newRig(t)
	cfg := r.cfg
	cfg.Issuer = strings.Replace(r.idp.Issuer, "127.0.0.1", "localhost", 1)
	if _, err := New(context.Background(), cfg); !errors.Is(err, oidc.ErrIssuerInvalid) {
		t.Errorf("New with issuer %s (the provider says %s) = %v, want ErrIssuerInvalid", cfg.Issuer, r.idp.Issuer, err)
	}

	cfg = r.cfg
	cfg.ClientSecretEnv = "SSO_TEST_WRONG_SECRET"
	t.Setenv(cfg.ClientSecretEnv, "not-the-secret")
	wrong := r.provider(t, cfg)
	r.setReplicas(wrong, wrong)
	status, body := r.signIn(t, r.browser(t), alice)
	if status != http.StatusUnauthorized || !strings.Contains(body, "exchange the authorization code") {
		t.Fatalf("wrong client secret: %d %s", status, body)
	}

	cfg.ClientSecretEnv = "SSO_TEST_UNSET_SECRET"
	t.Setenv(cfg.ClientSecretEnv, "")
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "SSO_TEST_UNSET_SECRET is empty or unset") {
		t.Errorf("New with an unset secret variable = %v", err)
	}
	if _, err := New(context.Background(), config.OIDC{}); err == nil {
		t.Error("New without an issuer succeeded")
	}
}

// TestReplicas: a sign-in started on one replica finishes on another that
// has the same client secret (the cookie key is derived from it), or the
// same WithCookieSecret; not on one with another cookie secret, nor
// between two replicas of a public client without WithCookieSecret.
func TestReplicas(t *testing.T) {
	r := newRig(t)
	a, b := r.provider(t, r.cfg), r.provider(t, r.cfg)
	r.setReplicas(a, b)
	if status, body := r.signIn(t, r.browser(t), alice); status != http.StatusOK {
		t.Fatalf("same client secret: %d %s", status, body)
	}

	a = r.provider(t, r.cfg, WithCookieSecret([]byte("shared by the replicas")))
	b = r.provider(t, r.cfg, WithCookieSecret([]byte("shared by the replicas")))
	r.setReplicas(a, b)
	if status, body := r.signIn(t, r.browser(t), alice); status != http.StatusOK {
		t.Fatalf("same cookie secret: %d %s", status, body)
	}

	b = r.provider(t, r.cfg, WithCookieSecret([]byte("another secret")))
	r.setReplicas(a, b)
	if status, body := r.signIn(t, r.browser(t), alice); status != http.StatusUnauthorized || !strings.Contains(body, "does not verify") {
		t.Fatalf("other cookie secret: %d %s", status, body)
	}

	// A public client: no secret, a key per process.
	pub := r.cfg
	pub.ClientSecretEnv = ""
	a, b = r.provider(t, pub), r.provider(t, pub)
	r.setReplicas(a, b)
	c := r.browser(t)
	loc := r.callbackURL(t, c, alice)
	if status, body := get(t, c, loc.String()); status != http.StatusUnauthorized || !strings.Contains(body, "does not verify") {
		t.Fatalf("public client, other replica: %d %s", status, body)
	}
}

// TestGroupList covers the groups claim's shapes.
func TestGroupList(t *testing.T) {
	for _, tc := range []struct {
		in      any
		want    []string
		wantErr string
	}{
		{nil, nil, ""},
		{"ops", []string{"ops"}, ""},
		{[]any{"ops", "dev"}, []string{"ops", "dev"}, ""},
		{[]any{}, []string{}, ""},
		{[]any{"ops", 7.0}, nil, "element 1 is a float64"},
		{map[string]any{"ops": true}, nil, "not a string or a list of strings"},
		{true, nil, "not a string or a list of strings"},
	} {
		got, err := groupList(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("groupList(%v) = %v, want error %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("groupList(%v) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestPersonName covers which claim names the person and what a name may
// hold.
func TestPersonName(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	for _, tc := range []struct {
		name    string
		claims  []map[string]any
		want    string
		wantErr string
	}{
		{"preferred_username", []map[string]any{{"preferred_username": "alice", "email": "a@example.com"}}, "alice", ""},
		{"from userinfo", []map[string]any{{}, {"preferred_username": "alice"}}, "alice", ""},
		{"id token first", []map[string]any{{"preferred_username": "alice"}, {"preferred_username": "mallory"}}, "alice", ""},
		{"email", []map[string]any{{"email": "a@example.com", "email_verified": true}}, "a@example.com", ""},
		{"email without email_verified", []map[string]any{{}, {"email": "a@example.com"}}, "a@example.com", ""},
		{"unverified email", []map[string]any{{"email": "boss@example.com", "email_verified": false}}, "sub-1", ""},
		{"empty username", []map[string]any{{"preferred_username": ""}}, "sub-1", ""},
		{"sub", []map[string]any{{}}, "sub-1", ""},
		{"unicode", []map[string]any{{"preferred_username": "José.Müller-Ñ"}}, "José.Müller-Ñ", ""},
		{"ascii punctuation", []map[string]any{{"preferred_username": `CORP\j.doe+x@y`}}, `CORP\j.doe+x@y`, ""},
		{"128 bytes", []map[string]any{{"preferred_username": long}}, long, ""},
		{"129 bytes", []map[string]any{{"preferred_username": long + "a"}}, "", "longer than 128 bytes"},
		{"newline", []map[string]any{{"preferred_username": "alice\nadmin approved"}}, "", "contains U+000A"},
		{"escape", []map[string]any{{"preferred_username": "alice\x1b[2J"}}, "", "contains U+001B"},
		{"bidi override", []map[string]any{{"preferred_username": "alice\u202egnp.exe"}}, "", "contains U+202E"},
		{"zero width", []map[string]any{{"preferred_username": "ad\u200bmin"}}, "", "contains U+200B"},
		{"surrounding space", []map[string]any{{"preferred_username": " alice"}}, "", "surrounding spaces"},
		{"invalid utf-8", []map[string]any{{"preferred_username": "al\xffice"}}, "", "not valid UTF-8"},
		{"bad username is not skipped", []map[string]any{{"preferred_username": "a\tb", "email": "a@example.com"}}, "", "claim preferred_username"},
		{"not a string", []map[string]any{{"preferred_username": 42.0}}, "", "not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := personName(tc.claims, "sub-1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("personName = %q, %v, want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("personName = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}
