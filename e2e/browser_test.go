package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The browser harness of the console tests: a real headless Chromium
// (Debian's package chromium, /usr/bin/chromium) driven over the DevTools
// protocol with chromedp. No WebDriver, no mock DOM: the console's pages,
// its Content-Security-Policy, its cookies and its script run as they do
// for a person.

// browserTimeout bounds one step of a browser test (a navigation, a wait
// for an element, a click); a step that takes longer fails the test.
const browserTimeout = 20 * time.Second

// browser is one headless Chromium for one test, stopped at cleanup.
type browser struct {
	t   *testing.T
	ctx context.Context // the first tab's context: the browser lives as long as it
	log *syncBuffer

	mu    sync.Mutex
	shots int
}

// startBrowser starts Chromium for t (requireTool: it fails under CI when
// Chromium is missing and skips elsewhere). Its profile is a fresh
// directory; the flags keep it from reaching the network by itself
// (background networking, component updates, sync, QUIC), which on a
// closed machine would only produce refused connections and noise.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	exe := requireTool(t, "/usr/bin/chromium", "chromium", "chromium-browser")
	profile := t.TempDir()
	b := &browser{t: t, log: &syncBuffer{}}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // the tests may run as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(b.log),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// chromedp's own messages go to the output buffer, not t.Logf: one
	// logged by a goroutine after the test ended would panic.
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(b.logf), chromedp.WithErrorf(b.logf))
	// Cleanups run last-in first-out: the browser stops (and is reaped)
	// before t.TempDir removes its profile.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output (tail, without its D-Bus complaints):\n%s", tail(b.output(), 40))
		}
	})
	// The first Do starts the browser; it runs without a deadline, since a
	// deadline on it would bound the browser's whole life.
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v\n%s", err, tail(b.output(), 40))
	}
	t.Logf("chromium %s started in %s", exe, time.Since(start).Round(time.Millisecond))
	b.ctx = ctx
	return b
}

// logf adds a chromedp message to the output buffer.
func (b *browser) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "chromedp: "+format+"\n", args...)
}

// output is what Chromium printed, without the lines about D-Bus: a
// machine without a desktop session has no bus, and Chromium says so
// many times, which would hide anything that matters.
func (b *browser) output() string {
	var keep []string
	for _, l := range strings.Split(b.log.String(), "\n") {
		if !strings.Contains(l, "dbus/") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// tab is one browser tab.
type tab struct {
	b    *browser
	name string // for messages and screenshot names
	ctx  context.Context

	mu      sync.Mutex
	dialogs []string // JavaScript dialogs the page opened (alert, confirm, prompt)
}

// person opens a tab in a new browser context: its own cookie jar, as
// another person on another machine would have. (The browser's first tab
// is only the handle of the browser; no test uses it.)
func (b *browser) person(name string) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	return b.open(name, ctx, cancel)
}

// another opens a second tab of the same person as tb (tb's browser
// context, so the same cookies).
func (tb *tab) another(name string) *tab {
	tb.b.t.Helper()
	ctx, cancel := chromedp.NewContext(tb.ctx)
	return tb.b.open(name, ctx, cancel)
}

func (b *browser) open(name string, ctx context.Context, cancel context.CancelFunc) *tab {
	b.t.Helper()
	b.t.Cleanup(cancel)
	tb := &tab{b: b, name: name, ctx: ctx}
	// Any JavaScript dialog is recorded and dismissed (a dialog left open
	// would block the page and every later step).
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open tab %s: %v", name, err)
	}
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, string(ev.Type)+": "+ev.Message)
			tb.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return tb
}

// openedDialogs returns the JavaScript dialogs the tab's pages opened.
func (tb *tab) openedDialogs() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// run runs steps with browserTimeout and fails the test on an error,
// with a screenshot of the page for the review.
func (tb *tab) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.b.t.Helper()
	if err := tb.try(browserTimeout, steps...); err != nil {
		tb.fatal(what, err)
	}
}

// try runs steps with a deadline and returns the error.
func (tb *tab) try(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// fatal fails the test after a screenshot and the page's URL and text.
func (tb *tab) fatal(what string, err error) {
	tb.b.t.Helper()
	tb.screenshot("failed-" + what)
	loc, _ := runIn(tb, chromedp.Location())
	body, _ := runIn(tb, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	tb.b.t.Fatalf("%s: %s: %v\npage %s:\n%s", tb.name, what, err, loc, tail(body, 30))
}

// runIn runs one action with browserTimeout and returns its value.
func runIn[T any](tb *tab, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, browserTimeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// value runs one action that returns a value and fails the test on an error.
func value[T any](tb *tab, what string, a chromedp.Action[T]) T {
	tb.b.t.Helper()
	v, err := runIn(tb, a)
	if err != nil {
		tb.fatal(what, err)
	}
	return v
}

// eval evaluates a JavaScript expression in the page (chromedp runs it as
// the DevTools console would: the page's CSP does not apply to it).
func eval[T any](tb *tab, expr string) T {
	tb.b.t.Helper()
	return value(tb, "evaluate "+expr, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// text returns the visible text of the first element sel matches,
// trimmed; it waits until sel is visible.
func (tb *tab) text(sel string) string {
	tb.b.t.Helper()
	return strings.TrimSpace(value(tb, "text of "+sel, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)))
}

// count returns how many elements sel matches now (no waiting).
func (tb *tab) count(sel string) int {
	tb.b.t.Helper()
	return eval[int](tb, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsString(sel)))
}

// navigate loads u and waits for the page's body.
func (tb *tab) navigate(u string) {
	tb.b.t.Helper()
	tb.run("navigate to "+u, chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("body")))
}

// submit runs trigger, which makes the page navigate (submits a form),
// and returns the response of that navigation once the page loaded.
func (tb *tab) submit(what string, trigger chromedp.Action[bool]) *network.Response {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := trigger(ctx, t)
		return chromedp.Void{}, err
	})
	if err != nil {
		tb.fatal(what, err)
	}
	if resp == nil {
		tb.fatal(what, fmt.Errorf("no navigation"))
	}
	return resp
}

// navigateLive loads u, a page with live updates, and waits until its
// EventSource on /ui/live has been answered (200 and headers): the server
// has then taken its place in the audit log, and every later change
// reaches the page. Without this wait, a change made right after the
// navigation could precede the stream and never be shown.
func (tb *tab) navigateLive(u string) {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserTimeout)
	defer cancel()
	responses := chromedp.Events(ctx, network.ResponseReceived)
	tb.navigate(u)
	for ev, err := range responses {
		if err != nil {
			tb.fatal("wait for the live update stream of "+u, err)
		}
		if ev.Type != network.ResourceTypeEventSource || !strings.HasSuffix(ev.Response.URL, "/ui/live") {
			continue
		}
		if ev.Response.Status != 200 {
			tb.fatal("live update stream", fmt.Errorf("GET %s answered %d", ev.Response.URL, ev.Response.Status))
		}
		return
	}
}

// waitText waits until the text of the first element sel matches is
// one of want (a live update, a redirect) and returns it.
func (tb *tab) waitText(sel string, timeout time.Duration, want ...string) string {
	tb.b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return ""; const s = e.textContent.trim(); return %s.includes(s) ? s : ""; })()`,
		jsString(sel), jsStrings(want))
	ctx, cancel := context.WithTimeout(tb.ctx, timeout)
	defer cancel()
	// Interval polling (setTimeout), not requestAnimationFrame: a tab in
	// the background gets no animation frames.
	got, err := chromedp.Run(ctx, chromedp.Poll[string](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		cur, _ := runIn(tb, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%s) || {textContent: "(no such element)"}).textContent.trim()`, jsString(sel))))
		tb.fatal(fmt.Sprintf("wait %s for %s to read %q", timeout, sel, want), fmt.Errorf("%w; it reads %q", err, cur))
	}
	return got
}

// screenshotName keeps screenshot file names portable.
var screenshotName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// screenshot saves a PNG of the whole page in the test's artifact
// directory (t.ArtifactDir: kept under -outputdir when the test runs with
// -artifacts, a temporary directory otherwise) and logs its path. A
// screenshot that cannot be taken is logged, not fatal: it is evidence
// for a person, not a check.
func (tb *tab) screenshot(name string) string {
	t := tb.b.t
	t.Helper()
	tb.b.mu.Lock()
	tb.b.shots++
	n := tb.b.shots
	tb.b.mu.Unlock()
	ctx, cancel := context.WithTimeout(tb.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(t.ArtifactDir(), fmt.Sprintf("%02d-%s-%s.png", n, tb.name, screenshotName.ReplaceAllString(name, "_")))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	t.Logf("screenshot: %s", p)
	return p
}

// mustScreenshot is screenshot for the screenshots a test promises (the
// issue asks for the queue and the image page, for review): one that is
// not saved as a PNG fails the test.
func (tb *tab) mustScreenshot(name string) {
	tb.b.t.Helper()
	p := tb.screenshot(name)
	b, err := os.ReadFile(p)
	if p == "" || err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1024 {
		tb.b.t.Errorf("screenshot %s was not saved as a PNG (%q, %d bytes, %v)", name, p, len(b), err)
	}
}

// cookies returns the browser's cookies for u.
func (tb *tab) cookies(u string) []*network.Cookie {
	tb.b.t.Helper()
	return value(tb, "read cookies", func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{u}})
		return res.Cookies, err
	})
}

// jsString quotes s as a JavaScript string literal (a JSON string is one).
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a string always marshals
	}
	return string(b)
}

func jsStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = jsString(s)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// syncBuffer collects a process's output for the failure log.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		// Bounded: a browser that never stops printing cannot fill the
		// test's memory. The first MiB is kept.
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
