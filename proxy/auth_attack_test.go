package proxy_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// rawRequest sends a request as written (request line, headers) over a
// new connection, so that nothing on the client side cleans the path or
// checks the Host, and returns the status and the header.
func rawRequest(t *testing.T, addr, requestLine string, header ...string) (int, http.Header) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := requestLine + "\r\n" + strings.Join(append(header, "Connection: close"), "\r\n") + "\r\n\r\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", requestLine, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// TestPullAuthPathVariants: with pull authentication on, no spelling of
// a path, no method and no request-target form reaches a handler
// without credentials. The check runs before routing on the path as
// received, so only the exact paths /healthz and /token are open; every
// other variant (case, doubled or encoded slashes, dot segments, trailing
// junk, the absolute form) is 401, and none of them made a record.
func TestPullAuthPathVariants(t *testing.T) {
	s := newStack(t, nil)
	d := s.up.PushImage(t, "library/app:1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	s.pullAndApprove(t, "library/app", "1", d)
	srv := authStack(t, s)
	addr := strings.TrimPrefix(srv.URL, "http://")
	before, _ := s.store.Images("")

	paths := []string{
		"/v2", "/v2/", "//v2/", "/v2//", "/V2/", "/v2/.", "/v2/./",
		"/v2/library/app/manifests/1",
		"/v2/library/app/manifests/" + d.String(),
		"/v2/library/app/manifests/1/",
		"/v2/library/app/manifests/1/.",
		"/v2/library/app/manifests/1%00",
		"/v2/library/app/manifests/1%20",
		"/v2/library%2Fapp/manifests/1",
		"/v2/library/app%2Fmanifests%2F1",
		"/v2/library/app/manifests%2F1",
		"/v2/./library/app/manifests/1",
		"/v2/../v2/library/app/manifests/1",
		"/v2//library/app/manifests/1",
		"//v2/library/app/manifests/1",
		"/V2/library/app/manifests/1",
		"/v2/library/app/tags/list",
		"/v2/library/app/tags/list/",
		"/v2/library/app/referrers/" + d.String(),
		"/v2/library/app/blobs/" + d.String(),
		"/v2/_catalog",
		"/v2/library/app/blobs/uploads/",
		"/healthz/", "/healthz/../v2/", "/healthz%2F..%2Fv2/", "/Healthz",
		"/token/", "/token/../v2/library/app/manifests/1", "/Token", "/token%2F..%2Fv2/",
		"/", "/metrics", "/ui/", "/api/v1/images",
	}
	methods := []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, "PROPFIND"}
	for _, p := range paths {
		for _, m := range methods {
			status, h := rawRequest(t, addr, m+" "+p+" HTTP/1.1", "Host: "+addr)
			if status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="`) {
				t.Errorf("%s %s: %d %q, want 401 with a challenge", m, p, status, h.Get("WWW-Authenticate"))
			}
		}
	}
	// The absolute form (a request as to a proxy) and a Host naming
	// another server change nothing.
	for _, line := range []string{
		"GET http://" + addr + "/v2/library/app/manifests/1 HTTP/1.1",
		"GET http://elsewhere.example/v2/library/app/manifests/1 HTTP/1.1",
		"GET http://" + addr + "//v2/library/app/manifests/1 HTTP/1.1",
	} {
		if status, _ := rawRequest(t, addr, line, "Host: "+addr); status != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", line, status)
		}
	}
	// HTTP/1.0 without a Host.
	if status, _ := rawRequest(t, addr, "GET /v2/library/app/manifests/1 HTTP/1.0"); status != http.StatusUnauthorized {
		t.Errorf("HTTP/1.0 without Host: %d, want 401", status)
	}
	// The open paths are open as exactly written only.
	if status, _ := rawRequest(t, addr, "GET /healthz HTTP/1.1", "Host: "+addr); status != http.StatusOK {
		t.Errorf("/healthz: %d", status)
	}
	// /%74oken is /token once decoded: the token endpoint, which wants
	// credentials of its own.
	if status, h := rawRequest(t, addr, "GET /%74oken HTTP/1.1", "Host: "+addr); status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("/%%74oken: %d %q, want the token endpoint's 401", status, h.Get("WWW-Authenticate"))
	}
	if after, _ := s.store.Images(""); len(after) != len(before) {
		t.Errorf("anonymous requests made records: %d before, %d after", len(before), len(after))
	}
}

// challengeShape is every challenge: the realm's host keeps only the
// characters of a host and port, the scope only a valid repository.
var challengeShape = regexp.MustCompile(`^Bearer realm="https?://[A-Za-z0-9.:\[\]_-]+/token",service="airlock"(,scope="repository:[a-z0-9._/-]+:pull")?$`)

// TestPullAuthHostileHost: the challenge's realm is built from the Host
// header; a hostile Host (quotes, commas, spaces, a user part, a path,
// a second realm) cannot add a parameter to WWW-Authenticate, end its
// quoted string, or make the realm a URL with a path or user info. (A
// client only ever gets the realm of the Host it sent itself; behind a
// proxy that rewrites Host, registry.auth.realm fixes it.)
func TestPullAuthHostileHost(t *testing.T) {
	s := newStack(t, nil)
	srv := authStack(t, s)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, host := range []string{
		`evil.example`,
		`evil.example:443@good.example`,
		`evil.example",realm="http://x`,
		`evil.example, Basic realm=x`,
		`evil.example/path?x=1#f`,
		`evil.example%0d%0aSet-Cookie:%20x=1`,
		`[::1]:5000`,
		`evil.example:99999`,
		strings.Repeat("a", 5000),
		`'`,
	} {
		for _, p := range []string{"/v2/", "/v2/library/app/manifests/1", `/v2/a"b/manifests/1`} {
			status, h := rawRequest(t, addr, "GET "+p+" HTTP/1.1", "Host: "+host)
			if status == http.StatusBadRequest {
				continue // net/http refused the Host itself
			}
			ch := h.Values("WWW-Authenticate")
			if status != http.StatusUnauthorized || len(ch) != 1 || !challengeShape.MatchString(ch[0]) {
				t.Errorf("Host %.40q, %s: %d %q", host, p, status, ch)
			}
			if len(h.Values("Set-Cookie")) != 0 {
				t.Errorf("Host %.40q: a cookie was set", host)
			}
		}
	}
}

// TestPullAuthCredentialAttacks: bearer tokens and Basic credentials
// through the registry API: a token for one repository does not open
// another, push scopes grant nothing, a revoked puller token is refused
// both as Basic credentials and as the bearer tokens issued for it,
// over-long and malformed Authorization headers are refused without
// work, and an alg-confused (JWT "none") or re-signed token is refused.
func TestPullAuthCredentialAttacks(t *testing.T) {
	s := newStack(t, nil)
	d := s.up.PushImage(t, "library/app:1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	s.pullAndApprove(t, "library/app", "1", d)
	d2 := s.up.PushImage(t, "library/other:1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	s.pullAndApprove(t, "library/other", "1", d2)
	srv := authStack(t, s)

	secret := "alk_puller-secret-for-attack-test"
	if _, err := s.store.CreateToken(state.Token{Name: "node1", Role: "puller"}, sha256.Sum256([]byte(secret)), "admin"); err != nil {
		t.Fatal(err)
	}
	token := func(user, pass, query string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/token?service=airlock&"+query, nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr struct{ Token string }
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tr) != nil || tr.Token == "" {
			t.Fatalf("/token as %s?%s: %d", user, query, resp.StatusCode)
		}
		return tr.Token
	}
	get := func(path, authz string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Accept", string(types.OCIManifestSchema1))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }

	appTok := token("alice", "alice-pw", "scope=repository:library/app:pull")
	pushTok := token("alice", "alice-pw", "scope=repository:library/other:push,delete&scope=registry:catalog:*")
	nodeTok := token("node1", secret, "scope=repository:library/app:pull")
	app, other := "/v2/library/app/manifests/1", "/v2/library/other/manifests/1"

	if st, _ := get(app, "Bearer "+appTok); st != http.StatusOK {
		t.Fatalf("the token's own repository: %d", st)
	}
	for _, tc := range []struct {
		name, path, authz string
	}{
		{"token of another repository", other, "Bearer " + appTok},
		{"same name, other upstream prefix", "/v2/docker.io/library/other/manifests/1", "Bearer " + appTok},
		{"push and catalog scopes", other, "Bearer " + pushTok},
		{"bearer in lower case, other repository", other, "bearer " + appTok},
		{"two tokens in one header", other, "Bearer " + appTok + " " + appTok},
		{"alg none", app, "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9."},
		{"re-signed with an empty key", app, "Bearer " + resign(t, appTok, nil)},
		{"re-signed with the service name", app, "Bearer " + resign(t, appTok, []byte("airlock"))},
		{"over-long bearer", app, "Bearer " + strings.Repeat("A", 20<<10)},
		{"over-long Basic", app, basic("alice", strings.Repeat("p", 40<<10))},
		{"Basic without a colon", app, "Basic " + base64.StdEncoding.EncodeToString([]byte("alice"))},
		{"Basic not base64", app, "Basic !!!"},
		{"scheme only", app, "Bearer"},
		{"other scheme", app, "Negotiate abc"},
	} {
		st, ch := get(tc.path, tc.authz)
		if st != http.StatusUnauthorized || ch == "" {
			t.Errorf("%s: %d %q, want 401 with a challenge", tc.name, st, ch)
		}
	}
	// The push token opens no repository, only the API version check.
	if st, _ := get("/v2/", "Bearer "+pushTok); st != http.StatusOK {
		t.Errorf("/v2/ with any valid token: %d", st)
	}

	// A revoked puller token: refused as Basic, and its bearer tokens end.
	if st, _ := get(app, "Bearer "+nodeTok); st != http.StatusOK {
		t.Fatalf("puller's bearer token: %d", st)
	}
	if _, err := s.store.RevokeToken("node1", "admin"); err != nil {
		t.Fatal(err)
	}
	for name, authz := range map[string]string{"Basic": basic("node1", secret), "bearer issued before": "Bearer " + nodeTok} {
		if st, _ := get(app, authz); st != http.StatusUnauthorized {
			t.Errorf("revoked puller token, %s: %d, want 401", name, st)
		}
	}
}

// resign replaces a bearer token's signature with an HMAC under key (an
// attacker guessing a default key).
func resign(t *testing.T, tok string, key []byte) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(hmacSHA256(key, parts[0]+"."+parts[1]))
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// TestAnonymousMethodsDoNotGrowMetrics: net/http accepts any token as a
// method, and the request counter is labelled by method: each new method
// an anonymous client sends must not become a new time series (memory
// that grows with every request, and a /metrics page without bound).
func TestAnonymousMethodsDoNotGrowMetrics(t *testing.T) {
	s := newStack(t, nil)
	srv := authStack(t, s)
	addr := strings.TrimPrefix(srv.URL, "http://")
	for i := range 50 {
		rawRequest(t, addr, fmt.Sprintf("X%dMETHOD /v2/ HTTP/1.1", i), "Host: "+addr)
		rawRequest(t, strings.TrimPrefix(s.srv.URL, "http://"), fmt.Sprintf("Y%dMETHOD /v2/ HTTP/1.1", i), "Host: x")
	}
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "airlock_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] = true
				}
			}
		}
	}
	if len(methods) == 0 {
		t.Fatal("no airlock_http_requests_total series")
	}
	for m := range methods {
		if strings.Contains(m, "METHOD") {
			t.Errorf("method label %q: a client-chosen method became a series (%d methods in all)", m, len(methods))
			break
		}
	}
}
