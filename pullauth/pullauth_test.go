package pullauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// fixture is an authenticator over a real (bbolt) state store and an
// htpasswd file with alice (password "alice-pw") and bob ("bob-pw").
type fixture struct {
	a     *Authenticator
	store *state.Store
	file  string
	clk   *fakeClock
}

func newFixture(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st, file: filepath.Join(dir, "htpasswd"), clk: &fakeClock{t: time.Now()}}
	f.writeUsers(t, map[string]string{"alice": "alice-pw", "bob": "bob-pw"})
	f.a = f.open(t, st, opts...)
	return f
}

// open makes another authenticator on store (another replica when the
// store is shared) with f's file and clock.
func (f *fixture) open(t *testing.T, store Store, opts ...Option) *Authenticator {
	t.Helper()
	a, err := New(config.RegistryAuth{Htpasswd: f.file}, store,
		append([]Option{WithLogger(quietLog()), WithClock(f.clk.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// writeUsers writes the htpasswd file (cost 4) with a fresh mtime and
// moves the clock past the file's re-read interval.
func (f *fixture) writeUsers(t *testing.T, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, pw := range users {
		b.WriteString(u + ":" + hashOf(t, pw, bcrypt.MinCost, "2y") + "\n")
	}
	if err := os.WriteFile(f.file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(time.Duration(len(b.String())) * time.Millisecond)
	if fi, err := os.Stat(f.file); err == nil && !fi.ModTime().Before(mt) {
		mt = fi.ModTime().Add(time.Second)
	}
	if err := os.Chtimes(f.file, mt, mt); err != nil {
		t.Fatal(err)
	}
	f.clk.advance(statEvery)
}

// apiToken stores an API token and returns its secret.
func (f *fixture) apiToken(t *testing.T, name, role string, expires time.Time) string {
	t.Helper()
	secret := admin.TokenPrefix + "secret-of-" + name
	if _, err := f.store.CreateToken(state.Token{Name: name, Role: role, Expires: expires}, sha256.Sum256([]byte(secret)), "admin"); err != nil {
		t.Fatal(err)
	}
	return secret
}

// tokenReq asks /token with the query and credentials.
func (f *fixture) tokenReq(t *testing.T, a *Authenticator, query, user, pass string) (*httptest.ResponseRecorder, TokenResponse) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://airlock.test/token?"+query, nil)
	if user != "" || pass != "" {
		r.SetBasicAuth(user, pass)
	}
	w := httptest.NewRecorder()
	a.ServeToken(w, r)
	var tr TokenResponse
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
			t.Fatalf("token answer: %v %s", err, w.Body)
		}
	}
	return w, tr
}

// bearer asks /token and fails unless it answers a token.
func (f *fixture) bearer(t *testing.T, a *Authenticator, user, pass string, repos ...string) string {
	t.Helper()
	q := "service=airlock"
	for _, r := range repos {
		q += "&scope=repository:" + r + ":pull"
	}
	w, tr := f.tokenReq(t, a, q, user, pass)
	if w.Code != http.StatusOK {
		t.Fatalf("token for %s: %d %s", user, w.Code, w.Body)
	}
	return tr.Token
}

// check calls Authenticate with the Authorization header.
func check(a *Authenticator, authz, repo string) (string, error) {
	r := httptest.NewRequest(http.MethodGet, "http://airlock.test/v2/", nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	return a.Authenticate(r, repo)
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	now := f.clk.now()
	puller := f.apiToken(t, "node1", string(admin.RolePuller), now.Add(time.Hour))
	expired := f.apiToken(t, "old", string(admin.RolePuller), now.Add(-time.Minute))
	revoked := f.apiToken(t, "gone", string(admin.RolePuller), time.Time{})
	if _, err := f.store.RevokeToken("gone", "admin"); err != nil {
		t.Fatal(err)
	}
	oddRole := f.apiToken(t, "odd", "root", time.Time{})
	for _, tc := range []struct {
		name, user, pass, who string
		want                  error
	}{
		{"htpasswd user", "alice", "alice-pw", "htpasswd:alice", nil},
		{"wrong password", "alice", "bob-pw", "", ErrUnauthorized},
		{"unknown user", "mallory", "alice-pw", "", ErrUnauthorized},
		{"empty password", "alice", "", "", ErrUnauthorized},
		{"puller token", "node1", puller, "token:node1", nil},
		{"token under another name", "alice", puller, "", ErrUnauthorized},
		{"expired token", "old", expired, "", ErrUnauthorized},
		{"revoked token", "gone", revoked, "", ErrUnauthorized},
		{"role that may not pull", "odd", oddRole, "", ErrUnauthorized},
		{"unknown token", "node1", admin.TokenPrefix + "nope", "", ErrUnauthorized},
		{"over-long password", "alice", strings.Repeat("p", maxPasswordLen+1), "", ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			who, err := check(f.a, basic(tc.user, tc.pass), "library/x")
			if !errors.Is(err, tc.want) || who != tc.who {
				t.Fatalf("got %q, %v; want %q, %v", who, err, tc.who, tc.want)
			}
			if err != nil && Status(err) != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", Status(err))
			}
		})
	}
	if _, err := check(f.a, basic("gone", revoked), ""); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a revoked token's refusal does not say so: %v", err)
	}
}

// TestEveryRoleMayPull: the roles of package admin all pull (the rule in
// the package doc), and the API token prefix is admin's.
func TestEveryRoleMayPull(t *testing.T) {
	if tokenPrefix != admin.TokenPrefix {
		t.Fatalf("tokenPrefix %q, admin.TokenPrefix %q", tokenPrefix, admin.TokenPrefix)
	}
	f := newFixture(t)
	for _, role := range []admin.Role{admin.RolePuller, admin.RoleViewer, admin.RoleApprover, admin.RoleAdmin} {
		if !role.Valid() {
			t.Fatalf("%s is no role of package admin", role)
		}
		name := "r-" + string(role)
		secret := f.apiToken(t, name, string(role), time.Time{})
		if who, err := check(f.a, basic(name, secret), ""); err != nil || who != "token:"+name {
			t.Errorf("role %s: %q, %v", role, who, err)
		}
	}
}

func TestTokenEndpoint(t *testing.T) {
	f := newFixture(t)
	w, tr := f.tokenReq(t, f.a, "service=airlock&scope=repository:library/alpine:pull&scope=repository:team/app:pull,push&account=alice", "alice", "alice-pw")
	if w.Code != http.StatusOK {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	if tr.Token == "" || tr.AccessToken != tr.Token || tr.ExpiresIn != int(TokenTTL.Seconds()) || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("answer %+v, headers %v", tr, w.Header())
	}
	if iat, err := time.Parse(time.RFC3339, tr.IssuedAt); err != nil || iat.Sub(f.clk.now()).Abs() > time.Second {
		t.Errorf("issued_at %q: %v", tr.IssuedAt, err)
	}
	for repo, ok := range map[string]bool{"library/alpine": true, "team/app": true, "": true, "library/other": false} {
		who, err := check(f.a, "Bearer "+tr.Token, repo)
		if (err == nil) != ok || (ok && who != "htpasswd:alice") {
			t.Errorf("repository %q: %q, %v; want allowed=%v", repo, who, err, ok)
		}
	}

	for _, tc := range []struct {
		name, query, user, pass string
		code                    int
	}{
		{"anonymous", "service=airlock&scope=repository:library/alpine:pull", "", "", http.StatusUnauthorized},
		{"bad password", "service=airlock", "alice", "wrong", http.StatusUnauthorized},
		{"unknown user", "service=airlock", "eve", "alice-pw", http.StatusUnauthorized},
		{"other service", "service=registry.docker.io", "alice", "alice-pw", http.StatusBadRequest},
		{"malformed scope", "scope=library/alpine", "alice", "alice-pw", http.StatusBadRequest},
		{"bad repository", "scope=repository:Library/..:pull", "alice", "alice-pw", http.StatusBadRequest},
		{"quote in repository", `scope=repository:a"b:pull`, "alice", "alice-pw", http.StatusBadRequest},
		{"too many scopes", strings.Repeat("scope=repository:a:pull&", maxScopes+1), "alice", "alice-pw", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := f.tokenReq(t, f.a, tc.query, tc.user, tc.pass)
			var body struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != tc.code || len(body.Errors) != 1 || strings.Contains(w.Body.String(), "token\"") {
				t.Fatalf("%d %s, want %d with one error", w.Code, w.Body, tc.code)
			}
			if tc.code == http.StatusUnauthorized && (body.Errors[0].Code != "UNAUTHORIZED" || w.Header().Get("WWW-Authenticate") == "") {
				t.Errorf("401 without UNAUTHORIZED or a challenge: %v %s", w.Header(), w.Body)
			}
		})
	}
	// Failures left nothing behind.
	if n := len(f.a.remembered); n != 1 {
		t.Errorf("%d remembered logins, want alice's only", n)
	}
}

func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
		err  string
	}{
		{nil, nil, ""},
		{[]string{"repository:library/alpine:pull"}, []string{"library/alpine"}, ""},
		{[]string{"repository:b:pull,push", "repository:a:*", "repository:b:pull"}, []string{"a", "b"}, ""},
		{[]string{"repository:a:pull repository:c:pull"}, []string{"a", "c"}, ""}, // space-separated (OAuth2)
		{[]string{"repository:a:push", "repository:a:delete"}, nil, ""},
		{[]string{"registry:catalog:*", "repository(plugin):p:pull"}, nil, ""},
		{[]string{"repository:ghcr/team/x:pull"}, []string{"ghcr/team/x"}, ""},
		{[]string{"repository:a"}, nil, "want repository:<name>:pull"},
		{[]string{"nonsense"}, nil, "want repository:<name>:pull"},
		{[]string{"repository:UPPER:pull"}, nil, "invalid repository name"},
		{[]string{"repository:a/../b:pull"}, nil, "invalid repository name"},
		{[]string{"repository:" + strings.Repeat("a", 256) + ":pull"}, nil, "invalid repository name"},
		{[]string{strings.Repeat("repository:a:pull ", maxScopes+1)}, nil, "more than 16 scopes"},
	} {
		got, err := scopes(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("scopes(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("scopes(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestBearerTokens: tampered, foreign, expired and stale tokens are
// refused; a token works on another replica sharing the state store.
func TestBearerTokens(t *testing.T) {
	f := newFixture(t)
	tok := f.bearer(t, f.a, "alice", "alice-pw", "library/alpine")
	if _, err := check(f.a, "Bearer "+tok, "library/alpine"); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(body), "library/alpine", "library/secret", 1)
	longer := strings.Replace(string(body), `"exp":`, `"exp":9`, 1)
	enc := base64.RawURLEncoding.EncodeToString

	// Another store (another installation) has another key.
	other := newFixture(t)
	foreign := other.bearer(t, other.a, "alice", "alice-pw", "library/alpine")

	for name, bad := range map[string]string{
		"forged repository": parts[0] + "." + enc([]byte(forged)) + "." + parts[2],
		"forged expiry":     parts[0] + "." + enc([]byte(longer)) + "." + parts[2],
		"no signature":      parts[0] + "." + parts[1] + ".",
		"bad signature":     parts[0] + "." + parts[1] + "." + enc(make([]byte, 32)),
		"other prefix":      "alb2." + parts[1] + "." + parts[2],
		"jwt-like":          "eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"foreign key":       foreign,
		"garbage":           "not-a-token",
		"too long":          tok + strings.Repeat("A", maxBearerLen),
		"empty":             "",
	} {
		if _, err := check(f.a, "Bearer "+bad, "library/alpine"); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	if _, err := check(f.a, "Bearer "+tok, "library/secret"); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "does not cover repository library/secret") {
		t.Errorf("another repository: %v", err)
	}
	if _, err := check(f.a, "Digest abc", ""); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("another scheme: %v", err)
	}

	// A second replica on the same store verifies it (same key).
	replica := f.open(t, f.store)
	if who, err := check(replica, "Bearer "+tok, "library/alpine"); err != nil || who != "htpasswd:alice" {
		t.Errorf("on another replica: %q, %v", who, err)
	}

	// Expiry.
	f.clk.advance(TokenTTL - time.Second)
	if _, err := check(f.a, "Bearer "+tok, "library/alpine"); err != nil {
		t.Errorf("just before expiry: %v", err)
	}
	f.clk.advance(time.Second)
	if _, err := check(f.a, "Bearer "+tok, "library/alpine"); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("at expiry: %v", err)
	}

	// A changed password, or a removed user, ends the user's tokens.
	tok = f.bearer(t, f.a, "alice", "alice-pw", "library/alpine")
	bobTok := f.bearer(t, f.a, "bob", "bob-pw", "library/alpine")
	f.writeUsers(t, map[string]string{"alice": "new-pw"})
	for name, tk := range map[string]string{"changed password": tok, "removed user": bobTok} {
		if _, err := check(f.a, "Bearer "+tk, "library/alpine"); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	if _, err := check(f.a, basic("alice", "new-pw"), ""); err != nil {
		t.Errorf("the new password: %v", err)
	}
}

// TestBearerOfAPIToken: a revoked or expired API token ends its bearer
// tokens at once; an API token expiring sooner than TokenTTL bounds them.
func TestBearerOfAPIToken(t *testing.T) {
	f := newFixture(t)
	secret := f.apiToken(t, "node1", "puller", f.clk.now().Add(time.Minute))
	w, tr := f.tokenReq(t, f.a, "scope=repository:a:pull", "node1", secret)
	if w.Code != http.StatusOK || tr.ExpiresIn != 60 {
		t.Fatalf("token: %d %+v %s", w.Code, tr, w.Body)
	}
	if who, err := check(f.a, "Bearer "+tr.Token, "a"); err != nil || who != "token:node1" {
		t.Fatalf("%q, %v", who, err)
	}
	if _, err := f.store.RevokeToken("node1", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := check(f.a, "Bearer "+tr.Token, "a"); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("after revoke: %v", err)
	}
	if w, _ := f.tokenReq(t, f.a, "", "node1", secret); w.Code != http.StatusUnauthorized {
		t.Errorf("login after revoke: %d", w.Code)
	}
}

// downStore is a state store that cannot be reached.
type downStore struct{ Store }

func (downStore) TokenByHash([32]byte) (state.Token, error) {
	return state.Token{}, fmt.Errorf("token lookup: %w", state.ErrUnavailable)
}

func (downStore) Secret(string) ([]byte, error) {
	return nil, fmt.Errorf("secret: %w", state.ErrUnavailable)
}

// TestStateDown: a token login and the signing key need the state
// store: 503 without it, while htpasswd users still check; a bearer token
// of an API token issued before is accepted until it expires.
func TestStateDown(t *testing.T) {
	f := newFixture(t)
	secret := f.apiToken(t, "node1", "puller", time.Time{})
	tok := f.bearer(t, f.a, "node1", secret, "a")

	down := f.open(t, downStore{})
	if _, err := check(down, basic("node1", secret), ""); Status(err) != http.StatusServiceUnavailable {
		t.Errorf("token login: %v, want 503", err)
	}
	if _, err := check(down, basic("alice", "alice-pw"), ""); err != nil {
		t.Errorf("htpasswd login: %v", err)
	}
	if w, _ := f.tokenReq(t, down, "", "alice", "alice-pw"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("/token without the signing key: %d %s", w.Code, w.Body)
	}
	// Down, the key is asked for at most once a second, not per request.
	counting := &countingDown{}
	a0 := f.open(t, counting)
	for range 5 {
		if w, _ := f.tokenReq(t, a0, "", "alice", "alice-pw"); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("/token: %d", w.Code)
		}
	}
	if n := counting.secrets.Load(); n != 1 {
		t.Errorf("the key was asked for %d times within a second, want 1", n)
	}
	f.clk.advance(keyRetry)
	f.tokenReq(t, a0, "", "alice", "alice-pw")
	if n := counting.secrets.Load(); n != 2 {
		t.Errorf("the key was asked for %d times after a second, want 2", n)
	}
	// The key was read once, before the outage.
	flaky := &switchStore{Store: f.store}
	a := f.open(t, flaky)
	if _, err := check(a, "Bearer "+tok, "a"); err != nil {
		t.Fatal(err)
	}
	flaky.down.Store(true)
	if _, err := check(a, "Bearer "+tok, "a"); err != nil {
		t.Errorf("bearer token during the outage: %v", err)
	}
}

// countingDown is a state store that cannot be reached and counts the
// asks for the key.
type countingDown struct {
	downStore
	secrets atomic.Int32
}

func (c *countingDown) Secret(n string) ([]byte, error) {
	c.secrets.Add(1)
	return c.downStore.Secret(n)
}

// switchStore is a state store that goes down on demand.
type switchStore struct {
	Store
	down atomic.Bool
}

func (s *switchStore) TokenByHash(h [32]byte) (state.Token, error) {
	if s.down.Load() {
		return downStore{}.TokenByHash(h)
	}
	return s.Store.TokenByHash(h)
}

func (s *switchStore) Secret(n string) ([]byte, error) {
	if s.down.Load() {
		return downStore{}.Secret(n)
	}
	return s.Store.Secret(n)
}

// TestFailedLoginsDoTheSameWork: an unknown user, a wrong password and a
// wrong API token each cost one bcrypt check at the file's highest cost;
// a right password costs one too, and is then remembered.
func TestFailedLoginsDoTheSameWork(t *testing.T) {
	f := newFixture(t)
	// carol has a higher cost than everyone else.
	b, _ := os.ReadFile(f.file)
	b = append(b, "carol:"+hashOf(t, "carol-pw", 6, "2y")+"\n"...)
	if err := os.WriteFile(f.file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	_ = os.Chtimes(f.file, later, later)
	f.clk.advance(statEvery)

	var mu sync.Mutex
	var costs []int
	old := compareHash
	compareHash = func(h, pw []byte) error {
		c, _ := bcrypt.Cost(h)
		mu.Lock()
		costs = append(costs, c)
		mu.Unlock()
		return old(h, pw)
	}
	t.Cleanup(func() { compareHash = old })
	for _, tc := range []struct{ user, pass string }{
		{"mallory", "x"}, {"alice", "wrong"}, {"alice", admin.TokenPrefix + "forged"},
	} {
		costs = nil
		if _, err := check(f.a, basic(tc.user, tc.pass), ""); err == nil {
			t.Fatalf("%s logged in", tc.user)
		}
		want := []int{6}
		if tc.user == "alice" {
			want = []int{bcrypt.MinCost} // alice's own hash
		}
		if !slices.Equal(costs, want) {
			t.Errorf("%s/%s: bcrypt at costs %v, want %v", tc.user, tc.pass, costs, want)
		}
	}
	costs = nil
	for range 5 {
		if _, err := check(f.a, basic("carol", "carol-pw"), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if len(costs) != 1 {
		t.Errorf("5 Basic requests did %d bcrypt checks, want 1 (remembered)", len(costs))
	}
}

// TestBcryptConcurrencyBound: however many logins arrive, at most
// Concurrency bcrypt checks run at once, a bounded number wait, and the
// rest are answered 429 at once.
func TestBcryptConcurrencyBound(t *testing.T) {
	f := newFixture(t, WithConcurrency(2))
	var running, peak atomic.Int32
	release := make(chan struct{})
	old := compareHash
	compareHash = func(h, pw []byte) error {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		running.Add(-1)
		return old(h, pw)
	}
	t.Cleanup(func() { compareHash = old })

	total := 2 + maxQueued
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := check(f.a, basic(fmt.Sprintf("u%d", i), "pw"), "")
			errs <- err
		}()
	}
	waitUntil(t, func() bool { return f.a.queued.Load() == int32(total) && running.Load() == 2 })
	// The bound is reached: one more is refused without waiting.
	start := time.Now()
	_, err := check(f.a, basic("alice", "alice-pw"), "")
	if !errors.Is(err, ErrBusy) || Status(err) != http.StatusTooManyRequests || time.Since(start) > time.Second {
		t.Errorf("over the bound: %v after %s, want 429 at once", err, time.Since(start))
	}
	// A login whose client goes away stops waiting.
	f.a.queued.Add(-1) // make room for exactly one waiter
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://airlock.test/v2/", nil)
	r.SetBasicAuth("bob", "bob-pw")
	done := make(chan error, 1)
	go func() { _, err := f.a.Authenticate(r, ""); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, ErrBusy) {
		t.Errorf("cancelled login: %v", err)
	}
	f.a.queued.Add(1)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("a waiting login: %v, want 401 after its check", err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("%d bcrypt checks ran at once, want 2", p)
	}
	if n := f.a.queued.Load(); n != 0 {
		t.Errorf("%d logins still counted", n)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRememberedBounded: remembered logins never exceed maxRemembered.
func TestRememberedBounded(t *testing.T) {
	f := newFixture(t)
	for i := range maxRemembered + 50 {
		f.a.remember(f.a.rememberKeyOf("alice", fmt.Sprint(i)), "alice", "fp")
	}
	if n := len(f.a.remembered); n > maxRemembered {
		t.Errorf("%d remembered, bound %d", n, maxRemembered)
	}
	// Expired ones never count as remembered.
	k := f.a.rememberKeyOf("bob", "pw")
	f.a.remember(k, "bob", "fp")
	f.clk.advance(TokenTTL)
	if f.a.recall(k, "bob", "fp") {
		t.Error("an expired login is remembered")
	}
}

func TestChallenge(t *testing.T) {
	f := newFixture(t)
	r := httptest.NewRequest(http.MethodGet, "http://airlock.test:5000/v2/library/x/manifests/latest", nil)
	if got, want := f.a.Challenge(r, "library/x"), `Bearer realm="http://airlock.test:5000/token",service="airlock",scope="repository:library/x:pull"`; got != want {
		t.Errorf("challenge %s, want %s", got, want)
	}
	r.TLS = &tls.ConnectionState{}
	if got, want := f.a.Challenge(r, ""), `Bearer realm="https://airlock.test:5000/token",service="airlock"`; got != want {
		t.Errorf("TLS challenge %s, want %s", got, want)
	}
	r.Host = `evil"host,x=y`
	if got := f.a.Challenge(r, `a"b`); strings.Count(got, `"`) != 4 || strings.Contains(got, "scope") {
		t.Errorf("hostile host and repository: %s", got)
	}
	a, err := New(config.RegistryAuth{Htpasswd: f.file, Realm: "https://airlock.example.com/token"}, f.store, WithLogger(quietLog()))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Challenge(r, "x"); !strings.HasPrefix(got, `Bearer realm="https://airlock.example.com/token",`) {
		t.Errorf("configured realm: %s", got)
	}
	if _, err := New(config.RegistryAuth{}, f.store); err == nil {
		t.Error("New without htpasswd succeeded")
	}
	if _, err := New(config.RegistryAuth{Htpasswd: filepath.Join(t.TempDir(), "missing")}, f.store); err == nil || !strings.Contains(err.Error(), "registry.auth.htpasswd") {
		t.Errorf("missing file: %v", err)
	}
}

// TestRefusedBearerLogged: a bearer token Airlock issued, refused because
// it does not cover the repository or its credential was revoked, is
// logged with whom it was issued to; a forged one names nobody and is
// not logged.
func TestRefusedBearerLogged(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t)
	f.a.log = slog.New(slog.NewTextHandler(&logs, nil))
	secret := f.apiToken(t, "node1", "puller", f.clk.now().Add(time.Hour))
	nodeBearer := f.bearer(t, f.a, "node1", secret, "a")
	aliceBearer := f.bearer(t, f.a, "alice", "alice-pw", "a")

	for _, tc := range []struct {
		name, bearer, repo, want string
	}{
		{"another repository", aliceBearer, "b", `msg="registry pull refused" user=alice`},
		{"forged", "airlock.e30.AAAA", "a", ""},
		{"revoked credential", nodeBearer, "a", `msg="registry pull refused" user=node1`},
	} {
		if tc.name == "revoked credential" {
			if _, err := f.store.RevokeToken("node1", "admin"); err != nil {
				t.Fatal(err)
			}
		}
		logs.Reset()
		if _, err := check(f.a, "Bearer "+tc.bearer, tc.repo); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("%s: %v, want refused", tc.name, err)
		}
		got := logs.String()
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: logged %q, want %q", tc.name, got, tc.want)
		}
	}
}
