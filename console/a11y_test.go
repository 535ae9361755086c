package console

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// TestAccessible checks every page as an admin sees it (all forms
// present) for what a screen reader and a keyboard need: a language, one
// h1, a label for every form control, header cells for every table, no
// positive tabindex (which breaks the reading order), text on every
// button and link.
func TestAccessible(t *testing.T) {
	e := pagesEnv(t)
	s := e.putScenario(t)
	adm := e.browser(t).signIn(t, bootstrapToken)
	e.token(t, "vera", "viewer") // for the revoke confirmation page
	pages := []string{
		"/ui/", "/ui/images", "/ui/images/" + s.scanned.String(), "/ui/images/" + s.scanned.String() + "/approve",
		"/ui/images/" + s.old.String() + "/revoke", "/ui/cve", "/ui/cve?id=CVE-2026-1000", "/ui/db", "/ui/watches",
		"/ui/events", "/ui/tokens", "/ui/tokens/revoke?name=vera",
	}
	check := func(path string, p page) {
		doc, err := html.Parse(strings.NewReader(p.body))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if p.attr(t, "html", "lang") == "" {
			t.Errorf("%s: no lang on <html>", path)
		}
		if n := len(p.find("h1")); n != 1 {
			t.Errorf("%s: %d h1 elements, want 1", path, n)
		}
		labelled := map[string]bool{}
		for _, l := range p.find("label") {
			labelled[attrOf(l, "for")] = true
		}
		var walk func(n *html.Node, inLabel bool)
		walk = func(n *html.Node, inLabel bool) {
			if n.Type == html.ElementNode {
				what := fmt.Sprintf("%s: <%s id=%q name=%q>", path, n.Data, attrOf(n, "id"), attrOf(n, "name"))
				switch n.Data {
				case "input", "select", "textarea":
					typ := attrOf(n, "type")
					if typ != "hidden" && typ != "submit" && !inLabel && !labelled[attrOf(n, "id")] &&
						attrOf(n, "aria-label") == "" && attrOf(n, "aria-labelledby") == "" {
						t.Errorf("%s has no label", what)
					}
				case "button", "a":
					if strings.TrimSpace(textOf(n)) == "" && attrOf(n, "aria-label") == "" {
						t.Errorf("%s has no text", what)
					}
				case "table":
					if !hasHeaderCells(n) {
						t.Errorf("%s: a table without header cells", what)
					}
				}
				if v, err := strconv.Atoi(attrOf(n, "tabindex")); err == nil && v > 0 {
					t.Errorf("%s has tabindex %d", what, v)
				}
				inLabel = inLabel || n.Data == "label"
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c, inLabel)
			}
		}
		walk(doc, false)
	}
	for _, path := range pages {
		p := adm.get(t, path)
		p.want(t, path, http.StatusOK)
		check(path, p)
	}
	anon := e.browser(t)
	check("/ui/login", anon.get(t, "/ui/login"))
}

func hasHeaderCells(table *html.Node) bool {
	var found bool
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "th" {
			found = true
		}
		for c := n.FirstChild; c != nil && !found; c = c.NextSibling {
			walk(c)
		}
	}
	walk(table)
	return found
}

// TestContrast: the console's colours, as static/console.css declares
// them, meet WCAG 2 AA for text (4.5:1) on the backgrounds they are used
// on: white pages, the grey header and table heads, and white text on the
// buttons.
func TestContrast(t *testing.T) {
	css, err := staticFS.ReadFile("static/console.css")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`--([a-z]+):\s*(#[0-9a-fA-F]{6})`).FindAllStringSubmatch(string(css), -1) {
		vars[m[1]] = m[2]
	}
	for _, c := range []struct{ fg, bg string }{
		{vars["fg"], "#ffffff"}, {vars["muted"], "#ffffff"}, {vars["accent"], "#ffffff"},
		{vars["bad"], "#ffffff"}, {vars["ok"], "#ffffff"}, {vars["warn"], "#ffffff"},
		{vars["fg"], "#f6f8fa"}, {vars["muted"], "#f6f8fa"}, {vars["accent"], "#f6f8fa"},
		{"#ffffff", vars["accent"]}, {"#ffffff", vars["bad"]},
	} {
		if c.fg == "" || c.bg == "" {
			t.Fatalf("a colour variable is missing from console.css: %v", vars)
		}
		if r := contrast(c.fg, c.bg); r < 4.5 {
			t.Errorf("%s on %s: contrast %.2f:1, want at least 4.5:1", c.fg, c.bg, r)
		}
	}
	// The keyboard focus ring is drawn outside the control (outline-offset),
	// on the page's backgrounds: WCAG 2 non-text contrast, 3:1. Every
	// outline uses it.
	for _, m := range regexp.MustCompile(`outline:\s*([^;}]+)`).FindAllStringSubmatch(string(css), -1) {
		if v := strings.TrimSpace(m[1]); v != "3px solid var(--focus)" && v != "none" {
			t.Errorf("outline %q: use 3px solid var(--focus)", v)
		}
	}
	for _, bg := range []string{"#ffffff", "#f6f8fa", "#e7f3ff"} {
		if vars["focus"] == "" {
			t.Fatal("--focus is missing from console.css")
		}
		if r := contrast(vars["focus"], bg); r < 3 {
			t.Errorf("focus ring %s on %s: contrast %.2f:1, want at least 3:1", vars["focus"], bg, r)
		}
	}
}

// contrast is the WCAG 2 contrast ratio of two #rrggbb colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func luminance(hex string) float64 {
	var rgb [3]float64
	for i := range rgb {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			rgb[i] = c / 12.92
		} else {
			rgb[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*rgb[0] + 0.7152*rgb[1] + 0.0722*rgb[2]
}
