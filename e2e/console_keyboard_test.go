package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// TestConsoleKeyboard: a reviewer with only a keyboard signs in, skips the
// navigation, reaches an image's approve link in the queue, gives a reason
// and approves: Tab, typing and Enter only, no clicks and no script
// setting focus. Every element the Tab key reaches shows a focus ring.
func TestConsoleKeyboard(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	const repo = "console/keyboard"
	image := awaitingImage(t, up, al, repo)
	token := consoleToken(t, al, "kim", "approver")
	kim := startBrowser(t).person("kim")

	kim.navigate(al.AdminURL + "/ui/login")
	kim.tabTo("input#token", 10)
	kim.run("type the token", chromedp.KeyEvent(token))
	kim.pressEnter("sign in")
	if got := kim.text("strong#me"); got != "kim" {
		t.Fatalf("signed in as %q, want kim", got)
	}

	// The first Tab on a page reaches the skip link; Enter on it moves
	// the focus past the navigation to the main content.
	kim.tabTo("a.skip", 1)
	kim.run("skip to content", chromedp.KeyEvent(kb.Enter))
	if id := eval[string](kim, `document.activeElement.id`); id != "main" {
		t.Errorf("after the skip link the focus is on %q, want main", id)
	}
	kim.tabTo(rowOf(image)+" a.act-approve", 200)
	kim.pressEnter("open the approve form")
	if loc := value(kim, "location", chromedp.Location()); loc != al.AdminURL+"/ui/images/"+image+"/approve" {
		t.Fatalf("the approve link led to %s", loc)
	}
	kim.tabTo("textarea#reason", 60)
	const reason = "e2e: reviewed with the keyboard"
	kim.run("type the reason", chromedp.KeyEvent(reason))
	kim.tabTo("button#confirm", 5)
	kim.pressEnter("approve")
	if notice := kim.text("p#notice"); !strings.Contains(notice, "approve recorded") {
		t.Errorf("after approving, the notice reads %q", notice)
	}
	al.waitState(t, image, stateTimeout, "approved")
	if !hasAudit(t, al, image, "kim", "approve", reason) {
		t.Errorf("the audit log has no approve by kim with the typed reason: %+v", al.audit(t, image))
	}
}

// tabTo presses Tab until the focused element matches sel, at most max
// times, and fails the test otherwise. Each element focused on the way
// must show a focus ring (an outline, from :focus-visible), or the test
// fails: a keyboard user must see where they are.
func (tb *tab) tabTo(sel string, max int) {
	tb.b.t.Helper()
	js := fmt.Sprintf(`(() => {
		const e = document.activeElement;
		if (!e || e === document.body) return {at: false, name: "body", ring: true};
		const s = getComputedStyle(e);
		const name = e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + String(e.className).split(" ").join(".") : "") + " " + (e.textContent || "").trim().slice(0, 40);
		return {at: e.matches(%s), name: name, ring: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2};
	})()`, jsString(sel))
	type focus struct {
		At   bool   `json:"at"`
		Name string `json:"name"`
		Ring bool   `json:"ring"`
	}
	var path []string
	for range max {
		tb.run("press Tab", chromedp.KeyEvent(kb.Tab))
		f := eval[focus](tb, js)
		path = append(path, f.Name)
		if !f.Ring {
			tb.b.t.Errorf("%s: the focused %s shows no focus ring", tb.name, f.Name)
		}
		if f.At {
			return
		}
	}
	tb.fatal("tab to "+sel, fmt.Errorf("not reached in %d presses of Tab; focus went %s", max, strings.Join(path, " → ")))
}

// pressEnter presses Enter on the focused element, which must make the
// page navigate (a link, a form), and waits for the new page.
func (tb *tab) pressEnter(what string) {
	tb.b.t.Helper()
	tb.submit(what, func(ctx context.Context, t *chromedp.Target) (bool, error) {
		_, err := chromedp.KeyEvent(kb.Enter)(ctx, t)
		return err == nil, err
	})
}
