package e2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/oidctest"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

// The web console (package console, /ui/ on the admin listener) in a real
// headless Chromium: see browser_test.go for the harness. The tests click
// and read only the console's DOM contract: the ids and data attributes
// its templates promise (form.login, input#token, a#sso, strong#me,
// p#live, table#queue, tr[data-image], [data-state-for], a.act-*,
// form#action-form, textarea#reason, button#confirm, p#notice,
// span#state, #actions a#approve|#revoke|#rescan, #timeline,
// table#packages, table#vulns tr.vuln[data-severity], #error-message).
//
// The browser talks to http://127.0.0.1:<admin port>, the address the
// harness's airlock listens on, over plain http. The session cookie is
// Secure; Chromium accepts a Secure cookie over http from a "potentially
// trustworthy" origin, which http://localhost and the loopback addresses
// 127.0.0.0/8 and [::1] are (W3C Secure Contexts, "Is origin potentially
// trustworthy?"), so no localhost alias is needed. checkSessionCookie
// reads the stored cookie and its flags back from the browser, so a
// Chromium that stopped trusting 127.0.0.1 would fail there, plainly.

// consoleToken creates an API token with role through the CLI (as an
// admin would) and returns its secret.
func consoleToken(t *testing.T, al *Airlock, name, role string) string {
	t.Helper()
	out, err := al.cli(t, "tokens", "create", "--name", name, "--role", role, "--json")
	if err != nil {
		t.Fatalf("airlock tokens create %s: %v\n%s", name, err, out)
	}
	var created struct {
		Name   string `json:"name"`
		Role   string `json:"role"`
		Secret string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Secret == "" || created.Name != name || created.Role != role {
		t.Fatalf("airlock tokens create --json printed %q (%v); want the name, role and secret", out, err)
	}
	return created.Secret
}

// signIn signs the tab in with token through the sign-in form and waits
// for the review queue with the identity in the header.
func signIn(tb *tab, al *Airlock, token, wantName, wantRole string) {
	tb.b.t.Helper()
	tb.navigate(al.AdminURL + "/ui/login")
	tb.run("sign in",
		chromedp.WaitVisible(chromedp.CSS("form.login input#token")),
		chromedp.SendKeys(chromedp.CSS("input#token"), token),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("strong#me")),
	)
	if got := tb.text("strong#me"); got != wantName {
		tb.fatal("signed-in identity", fmt.Errorf("strong#me reads %q, want %q", got, wantName))
	}
	role := value(tb, "role of strong#me", chromedp.AttributeValue(chromedp.CSS("strong#me"), "data-role"))
	if role.Value != wantRole {
		tb.fatal("signed-in role", fmt.Errorf("strong#me data-role=%q, want %q", role.Value, wantRole))
	}
	if loc := value(tb, "location", chromedp.Location()); loc != al.AdminURL+"/ui/" {
		tb.fatal("after sign-in", fmt.Errorf("at %s, want the review queue %s/ui/", loc, al.AdminURL))
	}
}

// TestConsoleSignIn: an anonymous visitor is sent to the sign-in page; a
// wrong token shows the error and starts no session; the bootstrap admin
// token and an API token sign in as who they are, with an HttpOnly,
// Secure, SameSite=Strict session cookie the page's script cannot read;
// signing out ends the session, and so does revoking the token.
func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	aliceToken := consoleToken(t, al, "alice", "approver")
	br := startBrowser(t)

	anon := br.person("anonymous")
	anon.navigate(al.AdminURL + "/ui/")
	anon.run("redirect to sign-in", chromedp.WaitVisible(chromedp.CSS("form.login input#token")))
	if loc := value(anon, "location", chromedp.Location()); loc != al.AdminURL+"/ui/login" {
		t.Errorf("anonymous GET /ui/ ended at %s, want /ui/login", loc)
	}
	anon.screenshot("sign-in")

	// A wrong token: the error, no session, still on the sign-in page.
	anon.run("wrong token",
		chromedp.SendKeys(chromedp.CSS("input#token"), "e2e-wrong-console-token-5a1e"),
		chromedp.Click(chromedp.CSS(`form.login button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.error[role=alert]`)),
	)
	checkRefused(t, anon, al, "wrong token", "not valid")
	anon.screenshot("wrong-token")
	if strings.Contains(al.Log(), "e2e-wrong-console-token-5a1e") {
		t.Errorf("airlock logged the wrong token it was sent")
	}

	// The bootstrap admin token.
	adm := br.person("admin")
	signIn(adm, al, adminToken, "admin", "admin")
	checkSessionCookie(t, adm, al)
	adm.screenshot("queue-admin")

	// An API token: alice, approver.
	alice := br.person("alice")
	signIn(alice, al, aliceToken, "alice", "approver")
	checkSessionCookie(t, alice, al)

	// Sign out: back to the sign-in page, and /ui/ asks to sign in again.
	adm.run("sign out",
		chromedp.Click(chromedp.CSS(`form.signout button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS("form.login input#token")),
	)
	adm.navigate(al.AdminURL + "/ui/")
	adm.run("signed out", chromedp.WaitVisible(chromedp.CSS("form.login input#token")))
	if n := adm.count("strong#me"); n != 0 {
		t.Errorf("after sign-out, /ui/ still shows a signed-in identity")
	}

	// Revoking alice's token ends her session at her next request.
	if out, err := al.cli(t, "tokens", "revoke", "alice"); err != nil {
		t.Fatalf("airlock tokens revoke alice: %v\n%s", err, out)
	}
	alice.navigate(al.AdminURL + "/ui/")
	alice.run("session ends with the token", chromedp.WaitVisible(chromedp.CSS("form.login input#token")))
	if n := alice.count("strong#me"); n != 0 {
		t.Errorf("after her token was revoked, alice's session still shows her signed in")
	}
}

// sessionCookie is the console's session cookie that tb's browser holds
// for al, or nil.
func sessionCookie(tb *tab, al *Airlock) *network.Cookie {
	var sess *network.Cookie
	for _, c := range tb.cookies(al.AdminURL + "/ui/") {
		if c.Name == "airlock_session" {
			sess = c
		}
	}
	return sess
}

// checkSessionCookie checks the session cookie's flags and that the
// page's script cannot read it.
func checkSessionCookie(t *testing.T, tb *tab, al *Airlock) {
	t.Helper()
	sess := sessionCookie(tb, al)
	switch {
	case sess == nil:
		t.Errorf("%s: no airlock_session cookie stored for %s/ui/", tb.name, al.AdminURL)
		return
	case !sess.HTTPOnly || !sess.Secure || sess.SameSite != network.CookieSameSiteStrict || sess.Path != "/ui/":
		t.Errorf("%s: session cookie HttpOnly=%v Secure=%v SameSite=%q Path=%q; want HttpOnly, Secure, Strict, /ui/",
			tb.name, sess.HTTPOnly, sess.Secure, sess.SameSite, sess.Path)
	}
	if js := eval[string](tb, `document.cookie`); strings.Contains(js, "airlock_session") {
		t.Errorf("%s: the page's script can read the session cookie: %q", tb.name, js)
	}
}

// checkRefused checks a refused sign-in (what): the page's alert says
// want, and tb shows no signed-in identity and holds no session cookie.
func checkRefused(t *testing.T, tb *tab, al *Airlock, what, want string) {
	t.Helper()
	if msg := tb.text(`p.error[role=alert]`); !strings.Contains(msg, want) {
		t.Errorf("%s, %s: the sign-in page says %q, want %q in it", tb.name, what, msg, want)
	}
	if n := tb.count("strong#me"); n != 0 {
		t.Errorf("%s, %s: the page shows a signed-in identity", tb.name, what)
	}
	if sessionCookie(tb, al) != nil {
		t.Errorf("%s, %s: a session cookie was set", tb.name, what)
	}
}

// awaitingImage pushes a small image to repo:v1 upstream, pulls it through
// al (DENIED: it enters quarantine) and waits until it awaits approval
// (manual policy). It returns the image's admin name,
// "docker.io/<repo>@<digest>", which is also its REF in the console.
func awaitingImage(t *testing.T, up *registrytest.Upstream, al *Airlock, repo string) string {
	t.Helper()
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()
	_, err := pull(al.Ref(t, repo+":v1"))
	assertDenied(t, "first pull of "+repo, err, "quarantine")
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	return image
}

// stateFor is the CSS selector of the elements showing image's state.
func stateFor(image string) string { return fmt.Sprintf(`[data-state-for=%q]`, image) }

// rowOf is the CSS selector of image's row in the queue.
func rowOf(image string) string { return fmt.Sprintf(`tr[data-image=%q]`, image) }

// hasAudit reports whether image's audit log has an entry by actor for
// action with reason.
func hasAudit(t *testing.T, al *Airlock, image, actor, action, reason string) bool {
	t.Helper()
	for _, e := range al.audit(t, image) {
		if e.Actor == actor && e.Action == action && e.Reason == reason {
			return true
		}
	}
	return false
}

// TestConsoleApproveLive: alice (an approver token) approves an image from
// the review queue in one tab (approve link → confirmation form with a
// reason → notice); her second tab, open on the queue, shows the new
// state without a reload (server-sent events). The image then pulls
// through Airlock, and the audit log names alice and her reason. An empty
// reason (the browser's "required" removed) is refused and does nothing.
// On the ha backend (make test-ha) the two tabs are on two replicas: the
// change reaches the other replica's stream through PostgreSQL.
func TestConsoleApproveLive(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	var al, watched *Airlock
	if haSuite() {
		rs := startReplicas(t, up, 2, nil, options{})
		al, watched = rs[0], rs[1]
	} else {
		al = startAirlock(t, up, options{})
		watched = al
	}
	const repo = "console/live"
	image := awaitingImage(t, up, al, repo)
	aliceToken := consoleToken(t, al, "alice", "approver")
	br := startBrowser(t)

	alice := br.person("alice")
	signIn(alice, al, aliceToken, "alice", "approver")
	// Her second tab, on the queue (of the other replica on ha: sessions
	// live in the shared state store, and cookies are per host, not port).
	queue := alice.another("alice-queue")
	queue.navigateLive(watched.AdminURL + "/ui/")
	queue.waitText(stateFor(image), browserTimeout, "awaiting-approval")
	// A mark in the page's JavaScript state: a reload would erase it.
	eval[bool](queue, `(window.__sameDocument = true)`)

	// Tab 1: the queue's approve link for this row.
	alice.navigate(al.AdminURL + "/ui/")
	alice.run("open the approve form",
		chromedp.Click(chromedp.CSS(rowOf(image)+" a.act-approve")),
		chromedp.WaitVisible(chromedp.CSS("form#action-form textarea#reason")),
	)
	if loc := value(alice, "location", chromedp.Location()); loc != al.AdminURL+"/ui/images/"+image+"/approve" {
		t.Errorf("the approve link led to %s", loc)
	}
	// The form's `required` keeps a browser from sending an empty reason;
	// without it, the server refuses it (400) and nothing happens.
	eval[bool](alice, `(document.getElementById("reason").removeAttribute("required"), true)`)
	alice.run("send an empty reason",
		chromedp.Click(chromedp.CSS("button#confirm")),
		chromedp.WaitVisible(chromedp.CSS("#error-message")),
	)
	if msg := alice.text("#error-message"); !strings.Contains(strings.ToLower(msg), "reason") {
		t.Errorf("empty reason: the page says %q, want it to ask for a reason", msg)
	}
	if d, _ := al.image(t, image); d.Image.State != "awaiting-approval" {
		t.Fatalf("after an approval with an empty reason the image is %s", d.Image.State)
	}

	const reason = "e2e: reviewed in the console"
	eval[bool](alice, `(document.getElementById("reason").value = "", true)`)
	approved := time.Now()
	alice.run("approve with a reason",
		chromedp.SendKeys(chromedp.CSS("textarea#reason"), reason),
		chromedp.Click(chromedp.CSS("button#confirm")),
		chromedp.WaitVisible(chromedp.CSS("p#notice")),
	)
	if notice := alice.text("p#notice"); !strings.Contains(notice, "approve recorded") {
		t.Errorf("after approving, the notice reads %q", notice)
	}
	if loc := value(alice, "location", chromedp.Location()); loc != al.AdminURL+"/ui/images/"+image+"?done=approve" {
		t.Errorf("after approving, the browser is at %s", loc)
	}

	// Tab 2 shows the change by itself, in the same document.
	got := queue.waitText(stateFor(image), 20*time.Second, "signing", "approved")
	t.Logf("the queue tab showed %q %s after the approve click", got, time.Since(approved).Round(time.Millisecond))
	if !eval[bool](queue, `window.__sameDocument === true`) {
		t.Errorf("the queue tab was reloaded; the state must change through the live updates")
	}
	if cls := eval[string](queue, fmt.Sprintf(`document.querySelector(%s).className`, jsString(stateFor(image)))); !strings.Contains(cls, "state-"+got) {
		t.Errorf("the live update set the text %q but the classes are %q", got, cls)
	}
	if live := queue.text("p#live"); !strings.Contains(live, image) || !strings.Contains(live, "alice") {
		t.Errorf("p#live reads %q; want the image and who changed it", live)
	}
	queue.screenshot("queue-after-live-update")

	al.waitState(t, image, stateTimeout, "approved")
	mustPull(t, al.Ref(t, repo+"@"+strings.SplitN(image, "@", 2)[1]))
	mustPull(t, al.Ref(t, repo+":v1"))
	if !hasAudit(t, al, image, "alice", "approve", reason) {
		t.Errorf("the audit log has no approve by alice with her reason: %+v", al.audit(t, image))
	}
}

// TestConsoleRevoke: alice revokes an approved image from its page
// (#actions a#revoke) with a reason: the page shows it revoked, the
// timeline shows her and her reason, pulls are refused.
func TestConsoleRevoke(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	const repo = "console/revoke"
	image := awaitingImage(t, up, al, repo)
	al.action(t, "approve", image, "e2e: approved to be revoked")
	al.waitState(t, image, stateTimeout, "approved")
	mustPull(t, al.Ref(t, repo+":v1"))
	aliceToken := consoleToken(t, al, "alice", "approver")

	br := startBrowser(t)
	alice := br.person("alice")
	signIn(alice, al, aliceToken, "alice", "approver")
	alice.navigate(al.AdminURL + "/ui/images/" + image)
	if st := alice.text("span#state"); st != "approved" {
		t.Fatalf("the image page shows state %q, want approved", st)
	}
	if h1 := alice.text("h1"); !strings.Contains(h1, image) {
		t.Errorf("the image page's heading %q does not name %s", h1, image)
	}
	const reason = "e2e: withdrawn after review"
	alice.run("revoke",
		chromedp.Click(chromedp.CSS("#actions a#revoke")),
		chromedp.WaitVisible(chromedp.CSS("form#action-form textarea#reason")),
		chromedp.SendKeys(chromedp.CSS("textarea#reason"), reason),
		chromedp.Click(chromedp.CSS("button#confirm")),
		chromedp.WaitVisible(chromedp.CSS("p#notice")),
	)
	if notice := alice.text("p#notice"); !strings.Contains(notice, "revoke recorded") {
		t.Errorf("after revoking, the notice reads %q", notice)
	}
	alice.waitText("span#state", browserTimeout, "revoked")
	timeline := alice.text("#timeline")
	if !strings.Contains(timeline, reason) || !strings.Contains(timeline, "alice") {
		t.Errorf("the timeline does not show alice's revocation and reason:\n%s", timeline)
	}
	alice.screenshot("image-revoked")

	al.waitState(t, image, stateTimeout, "revoked")
	_, err := pull(al.Ref(t, repo+":v1"))
	assertDenied(t, "pull after the console's revoke", err, "revoked")
	if !hasAudit(t, al, image, "alice", "revoke", reason) {
		t.Errorf("the audit log has no revoke by alice with her reason: %+v", al.audit(t, image))
	}
}

// TestConsoleViewer: a viewer sees the queue and the image page without
// any action link or the #actions section, the confirmation page offers
// no form, and a POST forged from the viewer's own page, with the right
// CSRF token, is refused (403) by the API's role table: nothing changes.
func TestConsoleViewer(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	image := awaitingImage(t, up, al, "console/viewer")
	victorToken := consoleToken(t, al, "victor", "viewer")

	br := startBrowser(t)
	victor := br.person("victor")
	signIn(victor, al, victorToken, "victor", "viewer")
	victor.run("queue row", chromedp.WaitVisible(chromedp.CSS(rowOf(image))))
	if n := victor.count("a.act-approve, a.act-revoke, a.act-rescan"); n != 0 {
		t.Errorf("the viewer's queue shows %d action links", n)
	}
	victor.screenshot("queue-viewer")
	victor.navigate(al.AdminURL + "/ui/images/" + image)
	victor.run("image page", chromedp.WaitVisible(chromedp.CSS("span#state")))
	if n := victor.count("#actions, a#approve, a#revoke, a#rescan"); n != 0 {
		t.Errorf("the viewer's image page shows the actions (%d elements)", n)
	}
	victor.navigate(al.AdminURL + "/ui/images/" + image + "/approve")
	if n := victor.count("form#action-form, button#confirm"); n != 0 {
		t.Errorf("the viewer's confirmation page offers the approve form")
	}

	// Forge the approval from the viewer's page, which holds the
	// session's CSRF token (the sign-out form carries it).
	victor.navigate(al.AdminURL + "/ui/images/" + image)
	status := eval[int](victor, fmt.Sprintf(`(async () => {
		const csrf = document.querySelector('input[name=csrf]').value;
		const r = await fetch(%s, {method: "POST", credentials: "same-origin",
			body: new URLSearchParams({csrf: csrf, reason: "forged by a viewer"})});
		return r.status;
	})()`, jsString("/ui/images/"+image+"/approve")))
	if status != 403 {
		t.Errorf("the viewer's forged approve (fetch) answered %d, want 403", status)
	}
	// The same as a form a person could submit: the page answers 403
	// with the API's refusal.
	resp := victor.submit("forged approve form", chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = %s;
		for (const [k, v] of [["csrf", document.querySelector('input[name=csrf]').value], ["reason", "forged by a viewer"]]) {
			const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
		}
		document.body.appendChild(f); f.submit(); return true;
	})()`, jsString("/ui/images/"+image+"/approve"))))
	if resp.Status != 403 {
		t.Errorf("the viewer's forged approve form answered %d, want 403", resp.Status)
	}
	victor.run("refusal shown", chromedp.WaitVisible(chromedp.CSS("#error-message")))
	// The CSRF token was right: the refusal is the API's role check, not
	// the console's form check.
	if msg := victor.text("#error-message"); !strings.Contains(msg, "role viewer may not") {
		t.Errorf("the forged approve was refused with %q; want the API's role refusal", msg)
	}
	victor.screenshot("viewer-forged-approve")

	if d, _ := al.image(t, image); d.Image.State != "awaiting-approval" {
		t.Fatalf("after the viewer's forged approvals the image is %s (%s)", d.Image.State, d.Image.Reason)
	}
	for _, e := range al.audit(t, image) {
		if e.Actor == "victor" && e.To != "" {
			t.Errorf("the audit log has a state change by the viewer: %+v", e)
		}
	}
}

// hostilePackages are package names an upstream publisher controls (the
// dpkg database of the image), written to run script if the console
// pasted them into its HTML, or into the DOM from its script.
var hostilePackages = []string{
	`<script>window.__pwned=1</script>`,
	`<img src=x onerror="window.__pwned=2;alert(2)">`,
}

// TestConsoleHostileSBOM: an image whose SBOM lists packages named like
// markup: its page shows the names as text in table#packages, no script
// of theirs runs (window.__pwned stays undefined, no dialog opens) and no
// element of theirs exists in the page. The page's structure is checked
// as well as the effects, because the Content-Security-Policy alone would
// stop the script: the test must fail if the escaping broke. The image
// also has a critical vulnerability, so the screenshots of the queue and
// of the image page show a rejected image with its evidence.
func TestConsoleHostileSBOM(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	pkgs := []registrytest.Pkg{{Name: "libc6", Version: "2.36-9+deb12u1"}}
	for _, name := range hostilePackages {
		pkgs = append(pkgs, registrytest.Pkg{Name: name, Version: "1.0-1"})
	}
	const repo = "console/hostile"
	d := up.PushImage(t, repo+":1", registrytest.DebianImage(t, "12", pkgs...))
	image := "docker.io/" + repo + "@" + d.String()
	al := startAirlock(t, up, options{Policy: "scan", Extra: "scan:\n  max_db_age: 0s\n  rescan_interval: 0s\npolicy:\n  fail_on: critical\n"})
	if out, err := al.cli(t, "db", "import", vulndbtest.Archive(t, baseVulns...)); err != nil {
		t.Fatalf("airlock db import: %v\n%s", err, out)
	}
	_, err := pull(al.Ref(t, repo+":1"))
	assertDenied(t, "first pull", err) // quarantined, or already rejected: the scan is quick
	if img := al.waitState(t, image, 60*time.Second, "rejected", "approved"); img.State != "rejected" || !strings.Contains(img.Reason, "CVE-2026-2001") {
		t.Fatalf("the image is %s (%s); want rejected for CVE-2026-2001 in libc6", img.State, img.Reason)
	}

	br := startBrowser(t)
	adm := br.person("admin")
	signIn(adm, al, adminToken, "admin", "admin")
	adm.run("queue row", chromedp.WaitVisible(chromedp.CSS(rowOf(image))))
	adm.mustScreenshot("queue")
	adm.navigate(al.AdminURL + "/ui/images/" + image)
	adm.run("packages table", chromedp.WaitVisible(chromedp.CSS("table#packages")))

	// The names are there, as text, each whole in its cell.
	names := eval[[]string](adm, `Array.from(document.querySelectorAll("table#packages tr.package td:first-child"), td => td.firstChild ? td.firstChild.textContent : "")`)
	for _, want := range hostilePackages {
		if !slices.Contains(names, want) {
			t.Errorf("table#packages does not show the package %q as text; its names: %q", want, names)
		}
	}
	visible := adm.text("table#packages")
	for _, want := range hostilePackages {
		if !strings.Contains(visible, want) {
			t.Errorf("the visible text of table#packages lacks %q", want)
		}
	}
	// No element came from the names: no script in the page but the
	// console's own, no img at all (the console has none), nothing with
	// an event handler attribute.
	if found := eval[[]string](adm, `Array.from(document.querySelectorAll('script:not([src^="/ui/static/"]), img, [onerror]'), e => e.outerHTML)`); len(found) != 0 {
		t.Errorf("the page has elements made from package names: %q", found)
	}
	if typ := eval[string](adm, `typeof window.__pwned`); typ != "undefined" {
		t.Errorf("a package name's script ran: window.__pwned is %s", typ)
	}
	// The vulnerability that rejected it is listed.
	if n := adm.count(`table#vulns tr.vuln[data-severity="Critical"]`); n == 0 {
		t.Errorf("the image page lists no critical vulnerability; want CVE-2026-2001 in libc6")
	}
	adm.mustScreenshot("image-page-with-vulnerabilities")
	if d := adm.openedDialogs(); len(d) != 0 {
		t.Errorf("the page opened JavaScript dialogs: %q", d)
	}
}

// adminListen finds the admin listener's address in a config the harness
// wrote.
var adminListen = regexp.MustCompile(`(?m)^admin:\n  listen: (127\.0\.0\.1:\d+)\n`)

// TestConsoleOIDC signs people in to the console through a real OpenID
// provider (internal/oidctest: zitadel's example OP, the whole protocol,
// its own login page) configured in admin.oidc: olivia, whose group maps
// to approver, clicks a#sso, logs in on the provider's page and lands on
// the review queue as oidc:olivia, approver; her approval from the
// console is audited under that name. mallory, whose groups map to no
// role, is refused and gets no session.
func TestConsoleOIDC(t *testing.T) {
	t.Parallel()
	idp := oidctest.Start(t,
		oidctest.User{Username: "olivia", Password: "olivia-pw-e2e", Email: "olivia@example.com", Groups: []string{"staff", "release-approvers"}},
		oidctest.User{Username: "mallory", Password: "mallory-pw-e2e", Groups: []string{"interns"}})
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{
		Env: []string{"AIRLOCK_E2E_OIDC_SECRET=" + idp.ClientSecret},
		Edit: func(cfg string) string {
			m := adminListen.FindStringSubmatch(cfg)
			if m == nil {
				t.Fatalf("no admin listener in the config:\n%s", cfg)
			}
			oidc := fmt.Sprintf(`  oidc:
    issuer: %q
    client_id: %q
    client_secret_env: AIRLOCK_E2E_OIDC_SECRET
    redirect_url: "http://%s/ui/login/oidc/callback"
    groups_claim: %s
    roles: {release-approvers: approver, auditors: viewer}
`, idp.Issuer, idp.ClientID, m[1], oidctest.GroupsClaim)
			return strings.Replace(cfg, m[0], m[0]+oidc, 1)
		},
	})
	idp.AllowRedirectURI(al.AdminURL + "/ui/login/oidc/callback")
	image := awaitingImage(t, up, al, "console/sso")
	br := startBrowser(t)

	ssoLogin := func(tb *tab, user, password string) {
		tb.b.t.Helper()
		tb.navigate(al.AdminURL + "/ui/login")
		tb.run("single sign-on at the provider",
			chromedp.Click(chromedp.CSS("a#sso")),
			chromedp.WaitVisible(chromedp.CSS("input#username")),
		)
		if loc := value(tb, "location", chromedp.Location()); !strings.HasPrefix(loc, idp.Issuer+"/login/") {
			t.Errorf("a#sso led to %s, want the provider's login page under %s", loc, idp.Issuer)
		}
		tb.screenshot("provider-login")
		tb.run("log in at the provider",
			chromedp.SendKeys(chromedp.CSS("input#username"), user),
			chromedp.SendKeys(chromedp.CSS("input#password"), password),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		)
	}

	olivia := br.person("olivia")
	ssoLogin(olivia, "olivia", "olivia-pw-e2e")
	olivia.run("back on the console", chromedp.WaitVisible(chromedp.CSS("strong#me")))
	if loc := value(olivia, "location", chromedp.Location()); loc != al.AdminURL+"/ui/" {
		t.Errorf("after single sign-on olivia is at %s, want the review queue", loc)
	}
	if me := olivia.text("strong#me"); me != "oidc:olivia" {
		t.Errorf("signed in as %q, want oidc:olivia", me)
	}
	if role := value(olivia, "role", chromedp.AttributeValue(chromedp.CSS("strong#me"), "data-role")); role.Value != "approver" {
		t.Errorf("olivia's role is %q, want approver (release-approvers)", role.Value)
	}
	checkSessionCookie(t, olivia, al)
	olivia.screenshot("queue-oidc")

	const reason = "e2e: approved by single sign-on"
	olivia.run("approve as oidc:olivia",
		chromedp.Click(chromedp.CSS(rowOf(image)+" a.act-approve")),
		chromedp.WaitVisible(chromedp.CSS("textarea#reason")),
		chromedp.SendKeys(chromedp.CSS("textarea#reason"), reason),
		chromedp.Click(chromedp.CSS("button#confirm")),
		chromedp.WaitVisible(chromedp.CSS("p#notice")),
	)
	al.waitState(t, image, stateTimeout, "approved")
	if !hasAudit(t, al, image, "oidc:olivia", "approve", reason) {
		t.Errorf("the audit log has no approve by oidc:olivia: %+v", al.audit(t, image))
	}

	// mallory: the provider signs her in, Airlock refuses her.
	mallory := br.person("mallory")
	ssoLogin(mallory, "mallory", "mallory-pw-e2e")
	mallory.run("refused", chromedp.WaitVisible(chromedp.CSS(`p.error[role=alert]`)))
	// Her refusal says that none of her groups has a role.
	checkRefused(t, mallory, al, "no mapped group", "group")
	mallory.screenshot("refused")
}
