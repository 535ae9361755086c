package console

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// The console's attack surface, tried as an anonymous client, a signed-in
// viewer and a hostile web page. Each test names the rule it holds.

// rawGet is a GET of path exactly as written (no cleaning on the client
// side) with b's cookies.
func (b *browser) rawGet(t *testing.T, path string) page {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.e.srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path
	return b.do(t, req)
}

// secured fails unless p carries the console's security headers.
func (p page) secured(t *testing.T, what string) {
	t.Helper()
	h := p.header
	if h.Get("Content-Security-Policy") != contentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s (%d): CSP %q, nosniff %q, frame %q: want the console's headers", what, p.status,
			h.Get("Content-Security-Policy"), h.Get("X-Content-Type-Options"), h.Get("X-Frame-Options"))
	}
}

// TestAttackNoSession: without a session no page, stream, form or upload
// of the console answers anything but the way to the sign-in page (GET,
// HEAD: 303 to /ui/login) or 401 (POST), whatever the cookie holds.
func TestAttackNoSession(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "held"})
	img := ref.String()
	// A real session's stored hash (what a copy of the database holds) is
	// no cookie.
	signed := e.browser(t).signIn(t, bootstrapToken)
	var storedHash string
	for _, c := range signed.c.Jar.Cookies(mustURL(t, e.srv.URL+"/ui/")) {
		if c.Name == sessionCookie {
			storedHash = hashHex(c.Value)
		}
	}
	cookies := map[string]string{
		"none":          "",
		"random":        newSecret(),
		"stored hash":   storedHash,
		"over-long":     strings.Repeat("A", 4000),
		"bootstrap":     bootstrapToken,
		"empty session": "=",
	}
	gets := []string{
		"/ui/", "/ui/live", "/ui/images", "/ui/images/" + img, "/ui/images/" + img + "/approve",
		"/ui/images/" + img + "/sbom", "/ui/cve?id=CVE-2024-3094", "/ui/db", "/ui/watches",
		"/ui/watches/remove?image=x", "/ui/events", "/ui/tokens", "/ui/tokens/revoke?name=admin",
	}
	posts := []string{
		"/ui/images/" + img + "/approve", "/ui/images/" + img + "/revoke", "/ui/logout", "/ui/db/import",
		"/ui/watches", "/ui/watches/remove", "/ui/tokens", "/ui/tokens/revoke",
	}
	for name, value := range cookies {
		b := e.browser(t)
		if value != "" {
			b.c.Jar.SetCookies(mustURL(t, e.srv.URL+"/ui/"), []*http.Cookie{{Name: sessionCookie, Value: value, Path: "/ui/"}})
		}
		for _, p := range gets {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				req, _ := http.NewRequest(m, e.srv.URL+p, nil)
				got := b.do(t, req)
				if got.status != http.StatusSeeOther || got.header.Get("Location") != "/ui/login" {
					t.Errorf("cookie %s, %s %s: %d %q, want 303 to /ui/login", name, m, p, got.status, got.header.Get("Location"))
				}
				got.secured(t, m+" "+p)
			}
		}
		for _, p := range posts {
			got := b.post(t, p, url.Values{"csrf": {"x"}, "reason": {"r"}, "name": {"n"}, "role": {"admin"}}, nil)
			if got.status != http.StatusUnauthorized {
				t.Errorf("cookie %s, POST %s: %d, want 401", name, p, got.status)
			}
			got.secured(t, "POST "+p)
		}
	}
	if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
		t.Errorf("the image is %s after anonymous requests", st)
	}
	var list admin.TokenList
	e.asAdmin(t, http.MethodGet, "/api/v1/tokens", nil, &list)
	if len(list.Tokens) != 0 {
		t.Errorf("anonymous requests made tokens: %v", list.Tokens)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestAttackEveryAnswerSecured: the security headers are on every answer
// of the console, the refusals included: a cross-site form post refused
// before the console runs, a method the route does not take, a 404, a
// static file, a redirect.
func TestAttackEveryAnswerSecured(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	cross := b.post(t, "/ui/login", url.Values{"token": {bootstrapToken}}, map[string]string{"Sec-Fetch-Site": "cross-site"})
	if cross.status != http.StatusForbidden || len(cross.cookie) != 0 {
		t.Errorf("cross-site sign-in: %d, cookies %v; want 403 and none", cross.status, cross.cookie)
	}
	cross.secured(t, "cross-site sign-in")
	origin := b.post(t, "/ui/login", url.Values{"token": {bootstrapToken}}, map[string]string{"Origin": "https://evil.example"})
	if origin.status != http.StatusForbidden || len(origin.cookie) != 0 {
		t.Errorf("sign-in from another origin: %d, want 403 and no cookie", origin.status)
	}
	origin.secured(t, "sign-in from another origin")

	b.signIn(t, bootstrapToken)
	for _, p := range []string{"/ui/", "/ui/login", "/ui/nothing", "/ui/static/console.js", "/ui/static/", "/ui/static/nothing.js",
		"/ui/images/docker.io/none@sha256:" + strings.Repeat("0", 64), "/ui/cve?id=<x>"} {
		b.get(t, p).secured(t, "GET "+p)
	}
	// A method a route does not take.
	req, _ := http.NewRequest(http.MethodPut, e.srv.URL+"/ui/login", nil)
	b.do(t, req).secured(t, "PUT /ui/login")
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/ui/logout", nil)
	b.do(t, req).secured(t, "GET /ui/logout")
	// A signed-in form post from another site.
	p := b.post(t, "/ui/logout", url.Values{"csrf": {b.csrf}}, map[string]string{"Sec-Fetch-Site": "same-site"})
	if p.status != http.StatusForbidden {
		t.Errorf("same-site (other origin) sign-out: %d, want 403", p.status)
	}
	p.secured(t, "same-site sign-out")
}

// TestAttackStaticTraversal: /ui/static/ serves the embedded static files
// and nothing else: no dot segment, encoded slash or doubled slash
// reaches the templates, the Go sources or the file system.
func TestAttackStaticTraversal(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	for _, p := range []string{
		"/ui/static/../templates/layout.html",
		"/ui/static/%2e%2e/templates/layout.html",
		"/ui/static/..%2ftemplates%2flayout.html",
		"/ui/static/%2e%2e%2f%2e%2e%2fconsole.go",
		"/ui/static/..%5ctemplates%5clayout.html",
		"/ui/static//etc/passwd",
		"/ui/static/%2fetc%2fpasswd",
		"/ui/static/templates/layout.html",
		"/ui/static/../../../../etc/passwd",
		"/ui/static/console.js/../../templates/login.html",
		"/ui/templates/layout.html",
		"/ui/static/.",
	} {
		got := b.rawGet(t, p)
		for _, leak := range []string{"{{", "package console", "root:x:0:0"} {
			if strings.Contains(got.body, leak) {
				t.Errorf("GET %s: %d, the answer holds %q", p, got.status, leak)
			}
		}
		if got.status == http.StatusOK && !strings.HasPrefix(p, "/ui/static/") {
			t.Errorf("GET %s: 200", p)
		}
	}
}

// TestAttackRedirects: every redirect the console answers stays on the
// console (a path under /ui/, never "//host" or "/\host"), whatever a
// form or the query adds (next=, done=, msg=, an image name with
// slashes).
func TestAttackRedirects(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "held"})
	onConsole := func(what string, p page) {
		t.Helper()
		if p.status < 300 || p.status > 399 {
			return
		}
		loc := p.header.Get("Location")
		if !strings.HasPrefix(loc, "/ui/") || strings.HasPrefix(loc, "//") || strings.Contains(loc, `\`) {
			t.Errorf("%s: redirect to %q, not a console path", what, loc)
		}
	}
	b := e.browser(t)
	for _, next := range []string{"//evil.example/", "https://evil.example/", `/\evil.example`} {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/login?next="+url.QueryEscape(next)+"&redirect="+url.QueryEscape(next),
			strings.NewReader(url.Values{"token": {bootstrapToken}, "next": {next}, "return_to": {next}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		p := b.do(t, req)
		onConsole("sign-in with next="+next, p)
		if p.header.Get("Location") != "/ui/" {
			t.Errorf("sign-in with next=%s: redirect to %q, want /ui/", next, p.header.Get("Location"))
		}
		onConsole("login page, next="+next, b.get(t, "/ui/login?next="+url.QueryEscape(next)))
	}
	b.signIn(t, e.token(t, "arno", admin.RoleApprover))
	onConsole("approve", b.act(t, ref.String(), "approve", "ok", url.Values{"next": {"//evil.example/"}}))
	onConsole("sign-out", b.form(t, "/ui/logout", url.Values{"next": {"//evil.example/"}}))
	// The outer mux's cleaning redirects stay on this host.
	for _, p := range []string{"/ui//evil.example/", "/ui/./x", "/ui/static/../..//evil.example", `/ui/..\/\evil.example`} {
		got := b.rawGet(t, p)
		if loc := got.header.Get("Location"); got.status/100 == 3 && (!strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.Contains(loc, `\`)) {
			t.Errorf("GET %s: redirect to %q, off this host", p, loc)
		}
	}
}

// TestAttackCSRF: state changes need a POST with the session's CSRF
// token in the form body. A GET of a state-changing route (with the form
// fields in the query, as a link or an <img> on another page would send
// them) changes nothing; a POST with the token in the query instead of
// the body, another session's token, or none is refused.
func TestAttackCSRF(t *testing.T) {
	e := newEnv(t, envOptions{watches: true})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "held"})
	img := ref.String()
	victim := e.browser(t).signIn(t, bootstrapToken)
	other := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	e.token(t, "keep", admin.RolePuller)
	e.asAdmin(t, http.MethodPost, "/api/v1/watches", admin.WatchRequest{Image: "docker.io/library/nginx", Tags: []string{"1.*"}}, nil)

	q := url.Values{"csrf": {victim.csrf}, "reason": {"forged"}, "name": {"keep"}, "image": {"docker.io/library/nginx"}, "role": {"admin"}}.Encode()
	for _, p := range []string{
		"/ui/images/" + img + "/approve", "/ui/images/" + img + "/revoke", "/ui/images/" + img + "/rescan",
		"/ui/logout", "/ui/tokens", "/ui/tokens/revoke", "/ui/watches", "/ui/watches/remove", "/ui/db/import",
	} {
		victim.get(t, p+"?"+q)
		victim.get(t, p+"?"+strings.ReplaceAll(q, "name=keep", "name=forged"))
	}
	for _, tc := range []struct {
		name    string
		csrf    string
		inQuery bool
	}{
		{"no token", "", false},
		{"another session's token", other.csrf, false},
		{"token in the query", victim.csrf, true},
		{"token with a suffix", victim.csrf + "x", false},
		{"token prefix", victim.csrf[:len(victim.csrf)-1], false},
	} {
		path := "/ui/images/" + img + "/approve"
		if tc.inQuery {
			path += "?csrf=" + url.QueryEscape(tc.csrf)
		}
		form := url.Values{"reason": {"forged"}}
		if !tc.inQuery && tc.csrf != "" {
			form.Set("csrf", tc.csrf)
		}
		if p := victim.post(t, path, form, nil); p.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, p.status)
		}
	}
	if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
		t.Errorf("image %s after forged requests", st)
	}
	var tokens admin.TokenList
	e.asAdmin(t, http.MethodGet, "/api/v1/tokens", nil, &tokens)
	for _, tk := range tokens.Tokens {
		if tk.Name == "forged" || !tk.Revoked.IsZero() {
			t.Errorf("token %s (revoked %v) after forged requests", tk.Name, tk.Revoked)
		}
	}
	var watches admin.WatchList
	e.asAdmin(t, http.MethodGet, "/api/v1/watches", nil, &watches)
	if len(watches.Watches) != 1 {
		t.Errorf("%d watches after forged requests, want 1", len(watches.Watches))
	}
	if p := victim.get(t, "/ui/"); p.status != http.StatusOK {
		t.Errorf("the victim was signed out by a GET: %d", p.status)
	}
}

// TestAttackSessionFixation: a session cookie planted before sign-in
// (by another page, or a shared computer) is never adopted: sign-in sets
// a fresh secret, the planted value opens nothing, and every cookie the
// console sets, sign-out included, is HttpOnly, Secure and
// SameSite=Strict.
func TestAttackSessionFixation(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(t)
	planted := newSecret()
	u := mustURL(t, e.srv.URL+"/ui/")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: planted, Path: "/ui/"}})
	login := b.post(t, "/ui/login", url.Values{"token": {bootstrapToken}}, nil)
	login.want(t, "sign-in", http.StatusSeeOther)
	var set *http.Cookie
	for _, c := range login.cookie {
		if c.Name == sessionCookie {
			set = c
		}
	}
	if set == nil || set.Value == planted || set.Value == "" {
		t.Fatalf("sign-in kept the planted cookie: %+v", set)
	}
	if _, err := e.store.Session(hashHex(planted)); err == nil {
		t.Error("the planted value is a session")
	}
	attacker := e.browser(t)
	attacker.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: planted, Path: "/ui/"}})
	if p := attacker.get(t, "/ui/"); p.status != http.StatusSeeOther {
		t.Errorf("the planted cookie opens the console: %d", p.status)
	}
	b.signIn(t, bootstrapToken)
	out := b.form(t, "/ui/logout", url.Values{})
	for _, p := range []page{login, out} {
		for _, c := range p.cookie {
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" {
				t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/ui/", c)
			}
		}
	}
	// Sign-in is a POST only: a token in a link's query signs no one in;
	// a puller token opens the registry, not the console.
	if p := e.browser(t).get(t, "/ui/login?token="+url.QueryEscape(bootstrapToken)); len(p.cookie) != 0 {
		t.Errorf("GET /ui/login?token=: cookies %v", p.cookie)
	}
	puller := e.browser(t).post(t, "/ui/login", url.Values{"token": {e.token(t, "node1", admin.RolePuller)}}, nil)
	if puller.status != http.StatusUnauthorized || len(puller.cookie) != 0 {
		t.Errorf("puller sign-in: %d, cookies %v; want 401 and none", puller.status, puller.cookie)
	}
}

// TestAttackUpload: the DB upload (authedUpload) checks the session and
// the CSRF token before reading the file, reads at most maxCSRFField of
// the csrf part, and refuses an upload without an archive, with the
// parts in the wrong order, or from a role the API refuses.
func TestAttackUpload(t *testing.T) {
	e := newEnv(t, envOptions{scanning: true})
	root := e.browser(t).signIn(t, bootstrapToken)
	vera := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	send := func(b *browser, parts ...[2]string) page {
		t.Helper()
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for _, p := range parts {
			if p[0] == "archive" {
				fw, _ := mw.CreateFormFile("archive", "db.tar.gz")
				_, _ = fw.Write([]byte(p[1]))
				continue
			}
			_ = mw.WriteField(p[0], p[1])
		}
		_ = mw.Close()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/db/import", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return b.do(t, req)
	}
	huge := strings.Repeat(root.csrf, (1<<20)/len(root.csrf))
	for _, tc := range []struct {
		name  string
		b     *browser
		parts [][2]string
		want  int
	}{
		{"no session", e.browser(t), [][2]string{{"csrf", root.csrf}, {"archive", "x"}}, http.StatusUnauthorized},
		{"huge csrf part", root, [][2]string{{"csrf", huge}, {"archive", "x"}}, http.StatusForbidden},
		{"csrf plus junk", root, [][2]string{{"csrf", root.csrf + strings.Repeat("x", 2000)}, {"archive", "x"}}, http.StatusForbidden},
		{"archive first", root, [][2]string{{"archive", "x"}, {"csrf", root.csrf}}, http.StatusForbidden},
		{"no archive", root, [][2]string{{"csrf", root.csrf}}, http.StatusBadRequest},
		{"another field instead", root, [][2]string{{"csrf", root.csrf}, {"file", "x"}}, http.StatusBadRequest},
		{"viewer", vera, [][2]string{{"csrf", vera.csrf}, {"archive", "x"}}, http.StatusForbidden},
	} {
		p := send(tc.b, tc.parts...)
		if p.status != tc.want {
			t.Errorf("%s: %d, want %d: %.200s", tc.name, p.status, tc.want, p.body)
		}
		p.secured(t, tc.name)
	}
	// Not multipart at all.
	p := root.form(t, "/ui/db/import", url.Values{})
	if p.status != http.StatusBadRequest {
		t.Errorf("a plain form: %d, want 400", p.status)
	}
}

// TestAttackLiveAfterSignOut: a live stream carries nothing once its
// session has ended (signed out here, or on another replica; its token
// revoked): the next change is not sent, the stream ends with
// `event: end`, without waiting for the periodic session check.
func TestAttackLiveAfterSignOut(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The periodic check is far away: the stream must not rely on it.
	e.con.streams.sessionCheck = time.Hour
	for _, how := range []string{"signed out", "token revoked", "session deleted elsewhere"} {
		t.Run(how, func(t *testing.T) {
			name := strings.ReplaceAll(how, " ", "-")
			ref := e.image(t, imageSpec{repo: "library/" + name, state: state.StateAwaitingApproval, reason: "held"})
			b := e.browser(t).signIn(t, e.token(t, name, admin.RoleViewer))
			s := b.openStream(t, nil)
			if s.resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /ui/live: %d", s.resp.StatusCode)
			}
			switch how {
			case "signed out":
				b.form(t, "/ui/logout", url.Values{}).want(t, "sign-out", http.StatusSeeOther)
			case "token revoked":
				e.asAdmin(t, http.MethodDelete, "/api/v1/tokens/"+name, nil, nil)
			default:
				for _, c := range b.c.Jar.Cookies(mustURL(t, e.srv.URL+"/ui/")) {
					if c.Name == sessionCookie {
						if err := e.store.DeleteSession(hashHex(c.Value)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			e.asAdmin(t, http.MethodPost, "/api/v1/revoke", admin.ActionRequest{Image: ref.String(), Reason: "secret reason"}, nil)
			deadline := time.After(10 * time.Second)
			for {
				select {
				case ev, ok := <-s.events:
					if !ok {
						t.Fatal("the stream ended without event: end")
					}
					if ev.event == "state" {
						t.Fatalf("a state change reached the stream after the session ended: %s", ev.data)
					}
					if ev.event == "end" {
						return
					}
				case <-deadline:
					t.Fatal("the stream is still open 10s after its session ended and a change happened")
				}
			}
		})
	}
}

// TestAttackURLAttributes: with upstream-controlled strings holding
// markup and javascript: URLs in an image's reason, flag and tags, every
// page the console links to (crawled from the queue as an admin) keeps
// every URL attribute a path of this console, and has no event handler
// attribute, no style attribute and no inline script or style: the CSP
// would block them, and their presence would mean data became markup.
func TestAttackURLAttributes(t *testing.T) {
	e := newEnv(t, envOptions{watches: true, webhook: true})
	js := "javascript:alert(document.cookie)"
	e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval,
		reason: js + ` "><a href="` + js + `">x</a>`, flag: js, tags: []string{"javascript", js, `x" onclick="alert(1)`},
		severities: map[string]int{"Critical": 1}})
	e.image(t, imageSpec{repo: "javascript/alert", state: state.StateRejected, reason: "<style>*{}</style>", upstreamTag: "latest"})
	e.token(t, "javascript", admin.RoleViewer)
	b := e.browser(t).signIn(t, bootstrapToken)

	urlAttrs := map[string]bool{"href": true, "src": true, "action": true, "formaction": true, "data": true, "poster": true, "srcset": true}
	seen := map[string]bool{}
	queue := []string{"/ui/", "/ui/images", "/ui/cve?id=CVE-2024-3094", "/ui/db", "/ui/watches", "/ui/events", "/ui/tokens"}
	for len(queue) > 0 && len(seen) < 60 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		got := b.get(t, p)
		if got.doc == nil {
			continue
		}
		got.secured(t, p)
		for _, n := range got.find("style") {
			t.Errorf("%s: inline <style>: %s", p, textOf(n))
		}
		for _, n := range got.find("script") {
			if src := attrOf(n, "src"); !strings.HasPrefix(src, "/ui/static/") {
				t.Errorf("%s: script not ours: %v", p, n.Attr)
			}
		}
		for _, n := range got.find("") {
			for _, a := range n.Attr {
				k := strings.ToLower(a.Key)
				switch {
				case strings.HasPrefix(k, "on"), k == "style":
					t.Errorf("%s: <%s %s=%q>", p, n.Data, a.Key, a.Val)
				case urlAttrs[k]:
					v := a.Val
					if !(strings.HasPrefix(v, "/ui/") || strings.HasPrefix(v, "#")) || strings.HasPrefix(v, "//") ||
						strings.ContainsAny(v, "\\\x00\t\n") || strings.Contains(strings.ToLower(v), "javascript:") {
						t.Errorf("%s: <%s %s=%q>: not a console path", p, n.Data, a.Key, v)
					}
					if n.Data == "a" && k == "href" && strings.HasPrefix(v, "/ui/") && !strings.Contains(v, "/sbom") &&
						!strings.HasPrefix(v, "/ui/static/") {
						if u, err := url.Parse(v); err == nil {
							queue = append(queue, u.RequestURI())
						}
					}
				}
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("crawled only %d pages: %v", len(seen), seen)
	}
}

// TestAttackFourEyesIdentities: four eyes counts identities of the admin
// API. One token signed in twice (two browsers) is one identity and
// counts once. The bootstrap admin ("admin") and an OIDC person whose
// name is admin ("oidc:admin") are two identities in the audit log, but
// one approver: four eyes compares names without the "oidc:" prefix
// (README, gate.Engine.Approve). Two tokens of different names are two.
// No token can take either name: token names have no colon and "admin"
// is reserved.
func TestAttackFourEyesIdentities(t *testing.T) {
	e := newEnv(t, envOptions{gate: config.Gate{ApprovalsRequired: 2}})
	tok := e.token(t, "alice", admin.RoleApprover)
	one := e.browser(t).signIn(t, tok)
	two := e.browser(t).signIn(t, tok)
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "held"})
	one.act(t, ref.String(), "approve", "looked", nil).want(t, "first approval", http.StatusSeeOther)
	two.act(t, ref.String(), "approve", "looked again", nil).want(t, "same token, other session", http.StatusConflict)
	if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
		t.Fatalf("one token in two sessions approved alone: %s", st)
	}
	// A stolen token's approval ends with the token: bob, next, is the
	// first approver again, and the confirmation no longer names alice.
	bob := e.browser(t).signIn(t, e.token(t, "bob", admin.RoleApprover))
	e.asAdmin(t, http.MethodDelete, "/api/v1/tokens/alice", nil, nil)
	if got := bob.get(t, "/ui/images/"+ref.String()+"/approve").text("#confirm-approvals"); strings.Contains(got, "alice") {
		t.Errorf("the confirmation still counts the revoked token's approval: %q", got)
	}
	p := bob.act(t, ref.String(), "approve", "looked", nil)
	p.want(t, "bob after alice's revocation", http.StatusSeeOther)
	if loc := p.header.Get("Location"); !strings.Contains(loc, "approval+1+of+2") {
		t.Errorf("bob's approval: %s, want approval 1 of 2", loc)
	}
	if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
		t.Fatalf("the revoked token's approval completed the quorum: %s", st)
	}

	for _, name := range []string{"oidc:admin", "admin", "Admin", "oidc-admin:x"} {
		resp := e.invoke(t, admin.Identity{Name: admin.BootstrapIdentity, Role: admin.RoleAdmin}, http.MethodPost, "/api/v1/tokens",
			admin.TokenRequest{Name: name, Role: admin.RoleApprover})
		if resp.Status != http.StatusBadRequest {
			t.Errorf("token named %q: %d, want 400", name, resp.Status)
		}
	}

	// An OIDC session (as ssoCallback starts it) named oidc:admin.
	rec := httptest.NewRecorder()
	if err := e.con.startSession(rec, admin.Identity{Name: "oidc:admin", Role: admin.RoleApprover}, ""); err != nil {
		t.Fatal(err)
	}
	person := e.browser(t)
	person.c.Jar.SetCookies(mustURL(t, e.srv.URL+"/ui/"), rec.Result().Cookies())
	q := person.get(t, "/ui/")
	q.want(t, "OIDC session", http.StatusOK)
	if q.text("strong#me") != "oidc:admin" {
		t.Fatalf("signed in as %q", q.text("strong#me"))
	}
	person.csrf = q.attr(t, "input[name=csrf]", "value")
	root := e.browser(t).signIn(t, bootstrapToken)
	ref2 := e.image(t, imageSpec{repo: "library/nginx", state: state.StateAwaitingApproval, reason: "held"})
	root.act(t, ref2.String(), "approve", "bootstrap", nil).want(t, "bootstrap approval", http.StatusSeeOther)
	// Four eyes counts names without the "oidc:" prefix (a person's token
	// and SSO login are one approver): oidc:admin cannot be the second
	// approver after the bootstrap admin, and the refusal names the first.
	person.act(t, ref2.String(), "approve", "person", nil).want(t, "oidc:admin approval", http.StatusConflict)
	if st := e.imageState(t, ref2); st != state.StateAwaitingApproval {
		t.Errorf("admin and oidc:admin: %s, want awaiting-approval (one person by name)", st)
	}
	var actors []string
	for _, en := range e.decisions(t, ref2) {
		actors = append(actors, en.Actor)
	}
	if !slices.Contains(actors, "admin") || slices.Contains(actors, "oidc:admin") {
		t.Errorf("audit actors %v, want the bootstrap admin's approval only", actors)
	}
}

// TestAttackInvokeIdentityNotRemote: the identity the console acts as is
// set in process only (admin.Server.Invoke, an unexported context key).
// A remote request to the admin API gets nothing from a console session:
// the cookie (sent here even to /api/, which a browser would not do),
// the CSRF token and any identity-looking header are ignored, so the API
// stays bearer-token only and out of reach of a forged cross-site
// request.
func TestAttackInvokeIdentityNotRemote(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "held"})
	root := e.browser(t).signIn(t, bootstrapToken)
	var cookie *http.Cookie
	for _, c := range root.c.Jar.Cookies(mustURL(t, e.srv.URL+"/ui/")) {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/v1/images", ""},
		{http.MethodGet, "/api/v1/tokens", ""},
		{http.MethodPost, "/api/v1/approve", `{"image":"` + ref.String() + `","reason":"forged"}`},
	} {
		req, _ := http.NewRequest(tc.method, e.srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie.Value})
		for k, v := range map[string]string{
			"X-Airlock-Identity": "admin", "X-Remote-User": "admin", "X-Forwarded-User": "admin",
			"X-CSRF-Token": root.csrf, "Authorization": "Session " + cookie.Value,
		} {
			req.Header.Set(k, v)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with a console session: %d, want 401", tc.method, tc.path, resp.StatusCode)
		}
	}
	if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
		t.Errorf("image %s after remote requests", st)
	}
}
