package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/console"
	"github.com/airlockproxy/airlock/internal/oidctest"
	"github.com/airlockproxy/airlock/storage/state"
)

// ssoSessionTTL is admin.oidc.session_ttl in ssoConsole.
const ssoSessionTTL = 10 * time.Minute

// ssoConsole serves the console with single sign-on through consoleSSO to
// the OpenID provider idp, as serve wires it (session_ttl ssoSessionTTL),
// on an https test server; it returns the state store holding the
// sessions too.
func ssoConsole(t *testing.T, idp *oidctest.Provider) (*httptest.Server, *state.Store) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	adm, st := testAdmin(t, "bootstrap-token")
	var h http.Handler
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	callback := srv.URL + "/ui/login/oidc/callback"
	idp.AllowRedirectURI(callback)
	t.Setenv("AIRLOCK_TEST_OIDC_SECRET", idp.ClientSecret)
	cfg := config.OIDC{
		Issuer: idp.Issuer, ClientID: idp.ClientID, ClientSecretEnv: "AIRLOCK_TEST_OIDC_SECRET",
		RedirectURL: callback, Roles: map[string]string{"reviewers": "approver"}, SessionTTL: ssoSessionTTL,
	}
	s, err := newConsoleSSO(context.Background(), cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := console.New(adm, st, console.WithLogger(quiet), console.WithSSO(s, cfg.SessionLifetime()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cons.Close)
	h = cons.Handler()
	return srv, st
}

// TestConsoleSSO signs people in to the console through a real OpenID
// provider: a person whose group maps to a role gets a session as
// "oidc:<name>" with that role, lasting admin.oidc.session_ttl; one
// without a mapped group is refused.
func TestConsoleSSO(t *testing.T) {
	idp := oidctest.Start(t,
		oidctest.User{Username: "alice", Password: "alice-pw", Groups: []string{"reviewers"}},
		oidctest.User{Username: "mallory", Password: "mallory-pw", Groups: []string{"interns"}})
	srv, st := ssoConsole(t, idp)
	browser := func() *http.Client {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: srv.Client().Transport, Jar: jar}
	}

	alice := browser()
	resp, err := idp.SignIn(alice, srv.URL+"/ui/login/oidc", "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" ||
		!strings.Contains(string(body), `<strong id="me" data-role="approver">oidc:alice</strong>`) {
		t.Fatalf("after single sign-on: %d at %s:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	u, _ := url.Parse(srv.URL + "/ui/")
	var sess state.Session
	for _, c := range alice.Jar.Cookies(u) {
		sum := sha256.Sum256([]byte(c.Value))
		if s, err := st.Session(hex.EncodeToString(sum[:])); err == nil {
			sess = s
		}
	}
	if sess.Identity != "oidc:alice" || sess.Expires.Sub(sess.Created) != ssoSessionTTL {
		t.Errorf("alice's session: %s from %s to %s, want oidc:alice for session_ttl %v", sess.Identity, sess.Created, sess.Expires, ssoSessionTTL)
	}

	resp, err = idp.SignIn(browser(), srv.URL+"/ui/login/oidc", "mallory", "mallory-pw")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), `id="me"`) {
		t.Errorf("a person without a mapped group: %d, want 403 and no session:\n%s", resp.StatusCode, body)
	}
}

// TestConsoleSSOUnreachable: an identity provider that cannot be reached
// at start does not stop Airlock; single sign-on answers 503 meanwhile.
func TestConsoleSSOUnreachable(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := newConsoleSSO(context.Background(), config.OIDC{
		Issuer: "http://127.0.0.1:1", ClientID: "airlock",
		RedirectURL: "https://airlock.example/ui/login/oidc/callback", Roles: map[string]string{"g": "viewer"},
	}, quiet)
	if err != nil {
		t.Fatalf("an unreachable provider failed the start: %v", err)
	}
	rec := httptest.NewRecorder()
	s.Start(rec, httptest.NewRequest(http.MethodGet, "/ui/login/oidc", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("sign-on start with the provider unreachable: %d, want 503", rec.Code)
	}
	if _, _, err := s.Finish(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/ui/login/oidc/callback", nil)); err == nil {
		t.Error("a callback with the provider unreachable succeeded")
	}
}

// TestConsoleSSOConfig: what retrying cannot fix fails the start: an
// unset client secret variable. (Callback paths the console cannot serve
// are configuration errors: config's TestOIDC.)
func TestConsoleSSOConfig(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := config.OIDC{Issuer: "http://127.0.0.1:1", ClientID: "airlock", Roles: map[string]string{"g": "viewer"}}
	for _, c := range []struct {
		name, redirect, secretEnv, want string
	}{
		{"secret unset", "https://a.example/ui/login/oidc/callback", "AIRLOCK_TEST_UNSET_SECRET", "AIRLOCK_TEST_UNSET_SECRET"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			cfg.RedirectURL, cfg.ClientSecretEnv = c.redirect, c.secretEnv
			_, err := newConsoleSSO(context.Background(), cfg, quiet)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}
