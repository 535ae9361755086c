package admin

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/storage/state"
)

const bootstrap = "bootstrap-secret"

// testAPI is an admin API over a bbolt store, with no scanners, watches
// or garbage collector: their endpoints answer 404, which is enough to
// tell an allowed call from a refused one.
type testAPI struct {
	api   *Server
	store *state.Store
	srv   *httptest.Server
	h     *mux.Router
}

// newTestAPI starts the API; gc, when given, configures the gate.
func newTestAPI(t *testing.T, gc ...config.Gate) *testAPI {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var g config.Gate
	if len(gc) > 0 {
		g = gc[0]
	}
	s, err := New(gate.New(st, g, nil), st, bootstrap, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler().(*mux.Router)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testAPI{api: s, store: st, srv: srv, h: h}
}

// decidable puts docker.io/library/app, its content fetched, in state to
// as the pipeline would leave it, with reason; an admin can decide on it.
func (a *testAPI) decidable(t *testing.T, to state.State, reason string) state.Ref {
	t.Helper()
	ref := state.Ref{Upstream: "docker.io", Repository: "library/app", Digest: digest.FromString("app")}
	if _, _, err := a.store.Request(ref, "pull"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Transition(ref, state.Change{To: to, Actor: state.ActorPipeline, Action: "test", Reason: reason,
		Mutate: func(i *state.Image) error {
			i.MediaType, i.Size, i.ContentSize = "application/vnd.oci.image.manifest.v1+json", 100, 1000
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	return ref
}

// call makes one request and returns the status and body.
func (a *testAPI) call(t *testing.T, token, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// token creates a token through the API with the bootstrap token and
// returns its secret.
func (a *testAPI) token(t *testing.T, name string, role Role) string {
	t.Helper()
	body, _ := json.Marshal(TokenRequest{Name: name, Role: role, Expires: "1d"})
	code, out := a.call(t, bootstrap, http.MethodPost, "/api/v1/tokens", string(body))
	if code != http.StatusOK {
		t.Fatalf("create token %s: %d %s", name, code, out)
	}
	var got TokenCreated
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Secret, TokenPrefix) || got.Name != name || got.Role != string(role) || got.CreatedBy != "admin" {
		t.Fatalf("created %+v", got)
	}
	return got.Secret
}

// apiRoutes walks the router: every "METHOD template" under /api/v1.
func apiRoutes(t *testing.T, h *mux.Router) []string {
	t.Helper()
	var out []string
	err := h.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil || !strings.HasPrefix(tpl, "/api/") {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil // the subrouter's prefix itself
		}
		for _, m := range methods {
			out = append(out, m+" "+tpl)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// concrete fills a route template with values.
func concrete(tpl string) string {
	r := strings.NewReplacer(
		"{image:.+}", "docker.io/library/x@sha256:"+strings.Repeat("a", 64),
		"{id}", "CVE-2026-0001",
		"{name}", "nobody",
	)
	return r.Replace(tpl)
}

// TestRoleMatrix calls every route of the API with every role: a role
// below the route's is 403, at or above it never 401 or 403; without a
// token every route is 401. Every route registered must be in routeRoles,
// and every routeRoles entry must be a route.
func TestRoleMatrix(t *testing.T) {
	a := newTestAPI(t)
	routes := apiRoutes(t, a.h)
	seen := map[string]bool{}
	for _, r := range routes {
		seen[r] = true
		if _, ok := routeRoles[r]; !ok {
			t.Errorf("route %s has no entry in routeRoles (roles.go)", r)
		}
	}
	for r, need := range routeRoles {
		if !seen[r] {
			t.Errorf("routeRoles entry %s is no route", r)
		}
		if need.rank() <= RolePuller.rank() {
			t.Errorf("routeRoles lets a puller (registry pulls only) call %s", r)
		}
	}
	if len(routes) < 25 {
		t.Fatalf("walked only %d routes: %v", len(routes), routes)
	}
	callers := []struct {
		name, token string
		role        Role
	}{
		// A puller may only pull from the registry API: 403 everywhere here.
		{"puller", a.token(t, "paul", RolePuller), RolePuller},
		{"viewer", a.token(t, "vera", RoleViewer), RoleViewer},
		{"approver", a.token(t, "arno", RoleApprover), RoleApprover},
		{"admin", a.token(t, "adele", RoleAdmin), RoleAdmin},
		{"bootstrap", bootstrap, RoleAdmin},
	}
	for _, r := range routes {
		method, tpl, _ := strings.Cut(r, " ")
		path := concrete(tpl)
		if code, _ := a.call(t, "", method, path, "{}"); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", r, code)
		}
		if code, _ := a.call(t, "alk_wrong", method, path, "{}"); code != http.StatusUnauthorized {
			t.Errorf("%s with an unknown token: %d, want 401", r, code)
		}
		for _, c := range callers {
			code, body := a.call(t, c.token, method, path, "{}")
			need := routeRoles[r]
			switch {
			case c.role.rank() < need.rank():
				if code != http.StatusForbidden || !strings.Contains(body, "role "+string(c.role)+" may not") {
					t.Errorf("%s as %s: %d %s, want 403", r, c.name, code, body)
				}
			case code == http.StatusUnauthorized || code == http.StatusForbidden:
				t.Errorf("%s as %s: %d %s, want it allowed", r, c.name, code, body)
			}
		}
	}
}

func TestExpiredAndRevokedTokensRefused(t *testing.T) {
	a := newTestAPI(t)
	secret := "alk_expired"
	if _, err := a.store.CreateToken(state.Token{Name: "old", Role: "admin", Expires: time.Now().Add(-time.Minute)},
		sha256.Sum256([]byte(secret)), "admin"); err != nil {
		t.Fatal(err)
	}
	if code, body := a.call(t, secret, http.MethodGet, "/api/v1/images", ""); code != http.StatusUnauthorized || !strings.Contains(body, "token old expired") {
		t.Errorf("expired token: %d %s", code, body)
	}

	eve := a.token(t, "eve", RoleApprover)
	if code, body := a.call(t, eve, http.MethodGet, "/api/v1/images", ""); code != http.StatusOK {
		t.Fatalf("fresh token: %d %s", code, body)
	}
	// Only an admin may revoke, and a second revoke is a conflict.
	if code, _ := a.call(t, eve, http.MethodDelete, "/api/v1/tokens/eve", ""); code != http.StatusForbidden {
		t.Errorf("approver revoking: %d, want 403", code)
	}
	if code, body := a.call(t, bootstrap, http.MethodDelete, "/api/v1/tokens/eve", ""); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := a.call(t, bootstrap, http.MethodDelete, "/api/v1/tokens/eve", ""); code != http.StatusConflict {
		t.Errorf("second revoke: %d, want 409", code)
	}
	if code, body := a.call(t, eve, http.MethodGet, "/api/v1/images", ""); code != http.StatusUnauthorized || !strings.Contains(body, "token eve was revoked") {
		t.Errorf("revoked token: %d %s", code, body)
	}

	// The list shows both, without hashes or secrets.
	code, body := a.call(t, bootstrap, http.MethodGet, "/api/v1/tokens", "")
	if code != http.StatusOK || !strings.Contains(body, `"name": "eve"`) || !strings.Contains(body, `"revoked_by": "admin"`) ||
		strings.Contains(body, "sha256") || strings.Contains(body, secret) {
		t.Errorf("list: %d %s", code, body)
	}
}

func TestTokenRequestsChecked(t *testing.T) {
	a := newTestAPI(t)
	for _, body := range []string{
		`{"name": "Alice", "role": "viewer"}`,
		`{"name": "admin", "role": "viewer"}`,
		`{"name": "pipeline", "role": "viewer"}`,
		`{"name": "bob", "role": "root"}`,
		`{"name": "bob", "role": "viewer", "expires": "-3d"}`,
		`{"name": "bob", "role": "viewer", "expires": "soon"}`,
		`{"name": "bob", "role": "viewer", "secret": "x"}`,
	} {
		if code, out := a.call(t, bootstrap, http.MethodPost, "/api/v1/tokens", body); code != http.StatusBadRequest {
			t.Errorf("POST %s: %d %s, want 400", body, code, out)
		}
	}
	a.token(t, "bob", RoleViewer)
	if code, _ := a.call(t, bootstrap, http.MethodPost, "/api/v1/tokens", `{"name": "bob", "role": "admin"}`); code != http.StatusConflict {
		t.Errorf("duplicate name: %d, want 409", code)
	}
	for in, want := range map[string]time.Duration{"": DefaultTokenTTL, "never": 0, "90d": 90 * 24 * time.Hour, "36h": 36 * time.Hour} {
		if got, err := ParseTTL(in); err != nil || got != want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// TestAuditActorIsTokenName: an approve by a token is audited with the
// token's name as actor, whatever the request's actor field says.
func TestAuditActorIsTokenName(t *testing.T) {
	a := newTestAPI(t)
	ref := a.decidable(t, state.StateAwaitingApproval, "")
	secret := a.token(t, "alice", RoleApprover)
	body, _ := json.Marshal(ActionRequest{Image: ref.String(), Reason: "reviewed", Actor: "mallory"})
	code, out := a.call(t, secret, http.MethodPost, "/api/v1/approve", string(body))
	if code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, out)
	}
	img, err := a.store.Image(ref)
	if err != nil || img.State != state.StateApproved || img.ApprovedBy != "alice" {
		t.Errorf("after approve: %s by %q, %v", img.State, img.ApprovedBy, err)
	}
	entries, err := a.store.Audit(ref.String(), 1)
	if err != nil || len(entries) != 1 || entries[0].Actor != "alice" || entries[0].Action != "approve" {
		t.Errorf("audit = %+v, %v; want alice's approve", entries, err)
	}
	all, _ := a.store.Audit("", 0)
	var creates []string
	for _, e := range all {
		if e.Action == "token-create" {
			creates = append(creates, e.Actor)
		}
	}
	if len(creates) != 1 || creates[0] != "admin" {
		t.Errorf("token-create entries by %v, want [admin]", creates)
	}
	// A viewer's approve is refused and changes nothing.
	viewer := a.token(t, "vic", RoleViewer)
	if code, out := a.call(t, viewer, http.MethodPost, "/api/v1/revoke", string(body)); code != http.StatusForbidden || !strings.Contains(out, "role viewer may not") {
		t.Errorf("viewer revoke: %d %s", code, out)
	}
	if img, _ := a.store.Image(ref); img.State != state.StateApproved {
		t.Errorf("after a refused revoke: %s", img.State)
	}
}
