package console

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/net/html"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/storage/state"
)

// bootstrapToken is the test's admin.token.
const bootstrapToken = "bootstrap-secret-for-console-tests"

// testEnv is the console and the admin API on the admin listener's mux,
// as cmd/airlock serves them, over a real admin.Server, gate.Engine (no
// steps, not running: images are put in states through the store) and
// bbolt state store, behind an https test server (the session cookie is
// Secure).
type testEnv struct {
	store *state.Store
	api   *admin.Server
	con   *Console
	srv   *httptest.Server
}

func newEnv(t *testing.T, gateCfg config.Gate) *testEnv {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	api, err := admin.New(gate.New(st, gateCfg, nil, gate.WithLogger(quiet)), st, bootstrapToken, admin.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(api, st, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", con.Handler())
	mux.Handle("/", api.Handler())
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	// Cleanups run last-in first-out: end the live streams before the
	// server waits for its requests to finish.
	t.Cleanup(con.Close)
	return &testEnv{store: st, api: api, con: con, srv: srv}
}

// asAdmin calls the admin API in process as the bootstrap admin.
func (e *testEnv) asAdmin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	resp := e.api.Invoke(context.Background(), admin.Identity{Name: admin.BootstrapIdentity, Role: admin.RoleAdmin}, method, path, rd, "application/json")
	if err := resp.Err(); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			t.Fatal(err)
		}
	}
}

// token creates an API token and returns its secret.
func (e *testEnv) token(t *testing.T, name string, role admin.Role) string {
	t.Helper()
	var got admin.TokenCreated
	e.asAdmin(t, http.MethodPost, "/api/v1/tokens", admin.TokenRequest{Name: name, Role: role, Expires: "1d"}, &got)
	return got.Secret
}

// imageSpec is an image put into a state for a test.
type imageSpec struct {
	upstream, repo string
	state          state.State
	reason, flag   string
	tags           []string
	severities     map[string]int // nil: not scanned
}

// image creates the image's record (as a pull would) and moves it to
// its state (as the pipeline would), fetched, so that it can be approved.
func (e *testEnv) image(t *testing.T, s imageSpec) state.Ref {
	t.Helper()
	if s.upstream == "" {
		s.upstream = "docker.io"
	}
	ref := state.Ref{Upstream: s.upstream, Repository: s.repo, Digest: digest.FromString(s.upstream + "/" + s.repo)}
	if _, _, err := e.store.Request(ref, "pull"); err != nil {
		t.Fatal(err)
	}
	_, err := e.store.Transition(ref, state.Change{
		To: s.state, Actor: state.ActorPipeline, Action: "step:test", Reason: s.reason,
		Mutate: func(img *state.Image) error {
			img.MediaType, img.Size, img.ContentSize = "application/vnd.oci.image.manifest.v1+json", 512, 4096
			img.Flag = s.flag
			img.Tags = s.tags
			if s.severities != nil {
				img.Scan = &state.ScanSummary{ScannedAt: time.Now(), Packages: 10, Severities: s.severities}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// browser is one person's browser: a cookie jar, no automatic redirects
// (the tests look at them), and the session's CSRF token once signed in.
type browser struct {
	e    *testEnv
	c    *http.Client
	csrf string
}

func (e *testEnv) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	// A client of its own (srv.Client is shared), trusting the server's
	// certificate.
	c := &http.Client{
		Transport:     e.srv.Client().Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &browser{e: e, c: c}
}

// signIn signs b in with token and reads the session's CSRF token.
func (b *browser) signIn(t *testing.T, token string) *browser {
	t.Helper()
	resp := b.post(t, "/ui/login", url.Values{"token": {token}}, nil)
	if resp.status != http.StatusSeeOther || resp.header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in: %d %s, want 303 to /ui/: %s", resp.status, resp.header.Get("Location"), resp.body)
	}
	page := b.get(t, "/ui/")
	if page.status != http.StatusOK {
		t.Fatalf("queue after sign-in: %d %s", page.status, page.body)
	}
	b.csrf = page.attr(t, `input[name=csrf]`, "value")
	if b.csrf == "" {
		t.Fatal("no CSRF token on the queue page")
	}
	return b
}

// page is an answer: status, header, body and its parsed document.
type page struct {
	status int
	header http.Header
	body   string
	cookie []*http.Cookie
	doc    *html.Node
}

func (b *browser) do(t *testing.T, req *http.Request) page {
	t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := page{status: resp.StatusCode, header: resp.Header, body: string(raw), cookie: resp.Cookies()}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if p.doc, err = html.Parse(strings.NewReader(p.body)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (b *browser) get(t *testing.T, path string) page {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

// post sends a form; hdr adds headers (e.g. Sec-Fetch-Site).
func (b *browser) post(t *testing.T, path string, form url.Values, hdr map[string]string) page {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return b.do(t, req)
}

// act posts a decision with the session's CSRF token.
func (b *browser) act(t *testing.T, image, action, reason string, extra url.Values) page {
	t.Helper()
	form := url.Values{"csrf": {b.csrf}, "reason": {reason}}
	for k, v := range extra {
		form[k] = v
	}
	return b.post(t, "/ui/images/"+image+"/"+action, form, nil)
}

// find returns the elements matching a small selector: "tag",
// "#id", "tag#id", "tag.class", "[attr]", "[attr=value]", "tag[attr=value]".
func (p page) find(sel string) []*html.Node {
	tag, id, class, attr, val := parseSelector(sel)
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (tag == "" || n.Data == tag) &&
			(id == "" || attrOf(n, "id") == id) &&
			(class == "" || slices.Contains(strings.Fields(attrOf(n, "class")), class)) &&
			(attr == "" || hasAttr(n, attr) && (val == "" || attrOf(n, attr) == val)) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	if p.doc != nil {
		walk(p.doc)
	}
	return out
}

func parseSelector(sel string) (tag, id, class, attr, val string) {
	if i := strings.IndexByte(sel, '['); i >= 0 {
		a := strings.TrimSuffix(sel[i+1:], "]")
		attr, val, _ = strings.Cut(a, "=")
		val = strings.Trim(val, `"`)
		sel = sel[:i]
	}
	if i := strings.IndexByte(sel, '#'); i >= 0 {
		sel, id = sel[:i], sel[i+1:]
	}
	if i := strings.IndexByte(sel, '.'); i >= 0 {
		sel, class = sel[:i], sel[i+1:]
	}
	return sel, id, class, attr, val
}

// attr is the attribute of the first element matching sel.
func (p page) attr(t *testing.T, sel, name string) string {
	t.Helper()
	n := p.find(sel)
	if len(n) == 0 {
		t.Fatalf("no %s in page:\n%s", sel, p.body)
	}
	return attrOf(n[0], name)
}

// text is the text of the first element matching sel ("" if none).
func (p page) text(sel string) string {
	n := p.find(sel)
	if len(n) == 0 {
		return ""
	}
	return textOf(n[0])
}

func attrOf(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, name string) bool {
	return slices.ContainsFunc(n.Attr, func(a html.Attribute) bool { return a.Key == name })
}

func textOf(n *html.Node) string {
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(sb.String()), " ")
}

// imageState reads ref's state from the store.
func (e *testEnv) imageState(t *testing.T, ref state.Ref) state.State {
	t.Helper()
	img, err := e.store.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img.State
}

// decisions are the audit entries of ref made by people (not the
// pipeline or a pull).
func (e *testEnv) decisions(t *testing.T, ref state.Ref) []state.Entry {
	t.Helper()
	all, err := e.store.Audit(ref.String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(en state.Entry) bool { return !state.IsAdminActor(en.Actor) })
}

// TestSignIn: the bootstrap token and an API token of each role sign in
// (the page names the identity and role); an unknown, expired or revoked
// token does not; a session ends when its token is revoked; sign-out
// ends it too.
func TestSignIn(t *testing.T) {
	e := newEnv(t, config.Gate{})
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
	e := newEnv(t, config.Gate{})
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
