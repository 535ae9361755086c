package console

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/net/html"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/events"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
	"github.com/airlockproxy/airlock/watch"
)

// bootstrapToken is the test's admin.token.
const bootstrapToken = "bootstrap-secret-for-console-tests"

// ociManifest is the media type of the test images' manifests.
const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// envOptions are what a test adds to its environment; the zero value is
// the admin API over the engine and the state store alone, which is all
// the queue, the decisions and the live updates read.
type envOptions struct {
	gate config.Gate
	// scanning adds a content store (scan reports, SBOMs) and a real
	// scanner with no DB until one is imported through the console.
	scanning bool
	// watches adds the watch scheduler, not running, over one upstream
	// that is never reached.
	watches bool
	// webhook adds an events outbox with one webhook endpoint, never
	// posted to.
	webhook bool
	admin   []admin.Option
}

// testEnv is the console and the admin API on the admin listener's mux,
// as cmd/airlock serves them, over a real admin.Server, gate.Engine (its
// steps not running: images are put in states through the store, as the
// pipeline would) and bbolt state store, behind an https test server
// (the session cookie is Secure).
type testEnv struct {
	store *state.Store
	cs    *content.Store // nil without envOptions.scanning
	api   *admin.Server
	con   *Console
	srv   *httptest.Server
}

func newEnv(t testing.TB, o envOptions) *testEnv {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := state.Open(filepath.Join(dir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &testEnv{store: st}
	engine := gate.New(st, o.gate, nil, gate.WithLogger(quiet))
	settings := *config.Default()
	settings.Admin.Token = "settings-token-hunter2"
	opts := []admin.Option{admin.WithLogger(quiet), admin.WithSettings(settings)}
	if o.scanning {
		if e.cs, err = content.New(context.Background(), "filesystem", map[string]any{"rootdirectory": filepath.Join(dir, "content")}); err != nil {
			t.Fatal(err)
		}
		sc, err := scan.New(filepath.Join(dir, "grype"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		tmp := filepath.Join(dir, "tmp")
		if err := os.Mkdir(tmp, 0o700); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, admin.WithScanning(e.cs, sc, tmp))
	}
	if o.watches {
		cfg := config.Default()
		cfg.Upstreams = []config.Upstream{{Name: "docker.io", URL: "http://127.0.0.1:9", Insecure: true, Default: true}}
		ups, err := upstream.NewSet(cfg.Upstreams)
		if err != nil {
			t.Fatal(err)
		}
		watches, err := watch.New(cfg, st, engine, ups, watch.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, admin.WithWatches(watches))
	}
	if o.webhook {
		ev, err := events.New(st, config.Events{Webhooks: []config.Webhook{{Name: "audit-hook", URL: "https://hooks.invalid/airlock", Format: "slack"}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.ConfigureOutbox(ev.Names(), 1000); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, admin.WithEvents(ev))
	}
	if e.api, err = admin.New(engine, st, bootstrapToken, append(opts, o.admin...)...); err != nil {
		t.Fatal(err)
	}
	if e.con, err = New(e.api, st, WithLogger(quiet)); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", e.con.Handler())
	mux.Handle("/", e.api.Handler())
	e.srv = httptest.NewTLSServer(mux)
	t.Cleanup(e.srv.Close)
	// Cleanups run last-in first-out: end the live streams before the
	// server waits for its requests to finish.
	t.Cleanup(e.con.Close)
	return e
}

// invoke calls the admin API in process as id and returns the answer.
func (e *testEnv) invoke(t testing.TB, id admin.Identity, method, path string, body any) admin.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	return e.api.Invoke(context.Background(), id, method, path, rd, "application/json")
}

// asAdmin calls the admin API in process as the bootstrap admin and
// fails on an error answer; out, if not nil, gets the JSON body.
func (e *testEnv) asAdmin(t testing.TB, method, path string, body, out any) {
	t.Helper()
	resp := e.invoke(t, admin.Identity{Name: admin.BootstrapIdentity, Role: admin.RoleAdmin}, method, path, body)
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
func (e *testEnv) token(t testing.TB, name string, role admin.Role) string {
	t.Helper()
	var got admin.TokenCreated
	e.asAdmin(t, http.MethodPost, "/api/v1/tokens", admin.TokenRequest{Name: name, Role: role, Expires: "1d"}, &got)
	return got.Secret
}

// imageSpec is an image put into a state for a test.
type imageSpec struct {
	upstream, repo string
	// seed makes the digest (default: upstream/repo).
	seed         string
	state        state.State
	reason, flag string
	// upstreamTag, if set, is recorded as resolving to the image before
	// its record is made, as a pull by tag does.
	upstreamTag string
	tags        []string
	severities  map[string]int // nil: not scanned
	// mutate adds what the pipeline would have recorded.
	mutate func(*state.Image)
}

// image creates the image's record (as a pull would) and moves it to
// its state (as the pipeline would), fetched, so that it can be approved.
func (e *testEnv) image(t testing.TB, s imageSpec) state.Ref {
	t.Helper()
	if s.upstream == "" {
		s.upstream = "docker.io"
	}
	if s.seed == "" {
		s.seed = s.upstream + "/" + s.repo
	}
	ref := state.Ref{Upstream: s.upstream, Repository: s.repo, Digest: digest.FromString(s.seed)}
	if s.upstreamTag != "" {
		if _, err := e.store.RecordTag(ref.Upstream, ref.Repository, s.upstreamTag, ref.Digest, ociManifest); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.store.Request(ref, "pull"); err != nil {
		t.Fatal(err)
	}
	_, err := e.store.Transition(ref, state.Change{
		To: s.state, Actor: state.ActorPipeline, Action: "step:test", Reason: s.reason,
		Mutate: func(img *state.Image) error {
			img.MediaType, img.Size, img.ContentSize = ociManifest, 1234, 5<<20
			img.Flag = s.flag
			if s.tags != nil {
				img.Tags = s.tags
			}
			if s.severities != nil {
				img.Scan = &state.ScanSummary{ScannedAt: time.Now(), Packages: 10, Severities: s.severities}
			}
			if s.mutate != nil {
				s.mutate(img)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// imageState reads ref's state from the store.
func (e *testEnv) imageState(t testing.TB, ref state.Ref) state.State {
	t.Helper()
	img, err := e.store.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img.State
}

// decisions are the audit entries of ref made by people (not the
// pipeline or a pull).
func (e *testEnv) decisions(t testing.TB, ref state.Ref) []state.Entry {
	t.Helper()
	all, err := e.store.Audit(ref.String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(en state.Entry) bool { return !state.IsAdminActor(en.Actor) })
}

// browser is one person's browser: a cookie jar, no automatic redirects
// (the tests look at them), and the session's CSRF token once signed in.
type browser struct {
	e    *testEnv
	c    *http.Client
	csrf string
}

func (e *testEnv) browser(t testing.TB) *browser {
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
func (b *browser) signIn(t testing.TB, token string) *browser {
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

func (b *browser) do(t testing.TB, req *http.Request) page {
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

func (b *browser) get(t testing.TB, path string) page {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

// post sends a form as is (add "csrf" for a signed-in form); hdr adds
// headers (e.g. Sec-Fetch-Site).
func (b *browser) post(t testing.TB, path string, form url.Values, hdr map[string]string) page {
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

// form is post with the session's CSRF token.
func (b *browser) form(t testing.TB, path string, form url.Values) page {
	t.Helper()
	form.Set("csrf", b.csrf)
	return b.post(t, path, form, nil)
}

// act posts a decision with the session's CSRF token.
func (b *browser) act(t testing.TB, image, action, reason string, extra url.Values) page {
	t.Helper()
	form := url.Values{"reason": {reason}}
	for k, v := range extra {
		form[k] = v
	}
	return b.form(t, "/ui/images/"+image+"/"+action, form)
}

// want fails the test unless the answer's status is status.
func (p page) want(t testing.TB, what string, status int) {
	t.Helper()
	if p.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, p.status, status, p.body)
	}
}

// has fails unless the body contains every one of want.
func (p page) has(t testing.TB, what string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(p.body, w) {
			t.Errorf("%s: no %q in the page", what, w)
		}
	}
}

// lacks fails if the body contains any of bad.
func (p page) lacks(t testing.TB, what string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(p.body, b) {
			t.Errorf("%s: %q in the page", what, b)
		}
	}
}

var idAttr = regexp.MustCompile(`\sid="([^"]*)"`)

// uniqueIDs fails when two elements share an id (the DOM contract and
// the labels rely on ids).
func (p page) uniqueIDs(t testing.TB, what string) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range idAttr.FindAllStringSubmatch(p.body, -1) {
		if seen[m[1]] {
			t.Errorf("%s: id %q twice", what, m[1])
		}
		seen[m[1]] = true
	}
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
func (p page) attr(t testing.TB, sel, name string) string {
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
