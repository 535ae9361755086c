package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// rows are the images of the queue page, in order.
func (p page) rows() []string {
	var out []string
	for _, tr := range p.find("tr[data-image]") {
		out = append(out, attrOf(tr, "data-image"))
	}
	return out
}

// TestQueue: the queue lists the images waiting for a person (awaiting
// approval, rejected, failed, approved with a flag) and no others; its
// filters (state, upstream, search, minimum severity) work server-side;
// approvers get action links, viewers none.
func TestQueue(t *testing.T) {
	e := newEnv(t, envOptions{})
	awaiting := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "manual policy",
		tags: []string{"3.20"}, severities: map[string]int{"critical": 1, "low": 3}}).String()
	rejected := e.image(t, imageSpec{upstream: "ghcr.io", repo: "acme/app", state: state.StateRejected, reason: "policy: 2 high vulnerabilities",
		tags: []string{"v1.2.3"}, severities: map[string]int{"high": 2}}).String()
	failed := e.image(t, imageSpec{repo: "library/busybox", state: state.StateFailed, reason: "fetch: upstream answered 503"}).String()
	flagged := e.image(t, imageSpec{repo: "library/nginx", state: state.StateApproved, reason: "ok", flag: "rescan failed policy",
		severities: map[string]int{"medium": 4}}).String()
	e.image(t, imageSpec{repo: "library/redis", state: state.StateApproved, reason: "ok"})
	e.image(t, imageSpec{repo: "library/postgres", state: state.StateRevoked, reason: "revoked"})
	e.image(t, imageSpec{repo: "library/golang", state: state.StateScanning, reason: "scanning"})

	approver := e.browser(t).signIn(t, e.token(t, "arno", admin.RoleApprover))
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))

	all := []string{awaiting, rejected, failed, flagged}
	cases := []struct {
		query string
		want  []string
	}{
		{"", all},
		{"state=awaiting-approval", []string{awaiting}},
		{"state=rejected", []string{rejected}},
		{"state=failed", []string{failed}},
		{"state=flagged", []string{flagged}},
		{"upstream=ghcr.io", []string{rejected}},
		{"upstream=docker.io&state=failed", []string{failed}},
		{"q=V1.2", []string{rejected}},         // tag, any case
		{"q=503", []string{failed}},            // reason
		{"q=rescan+failed", []string{flagged}}, // flag
		{"q=library%2Fbusybox", []string{failed}},
		{"severity=critical", []string{awaiting}},
		{"severity=high", []string{awaiting, rejected}},
		{"severity=medium", []string{awaiting, rejected, flagged}},
		{"severity=low", []string{awaiting, rejected, flagged}},
		{"q=nothing-matches", nil},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			p := approver.get(t, "/ui/?"+c.query)
			if p.status != http.StatusOK {
				t.Fatalf("%d %s", p.status, p.body)
			}
			got := p.rows()
			if !sameSet(got, c.want) {
				t.Errorf("rows %v, want %v", got, c.want)
			}
			if len(c.want) == 0 && len(p.find("#queue-empty")) != 1 {
				t.Error("no empty-queue notice")
			}
			// The filter form shows what was chosen.
			q, _ := url.ParseQuery(c.query)
			if v := q.Get("q"); v != "" && p.attr(t, "input#f-q", "value") != v {
				t.Errorf("search field %q, want %q", p.attr(t, "input#f-q", "value"), v)
			}
			for _, sel := range []struct{ id, name string }{{"f-state", "state"}, {"f-upstream", "upstream"}, {"f-severity", "severity"}} {
				if v := q.Get(sel.name); v != "" && len(p.find("select#"+sel.id)) == 1 {
					chosen := ""
					for _, o := range p.find("option[selected]") {
						if attrOf(o, "value") == v {
							chosen = v
						}
					}
					if chosen != v {
						t.Errorf("select#%s does not show %q as chosen", sel.id, v)
					}
				}
			}
		})
	}

	t.Run("columns", func(t *testing.T) {
		p := approver.get(t, "/ui/")
		if got := p.text("[data-state-for=" + awaiting + "]"); got != "awaiting-approval" {
			t.Errorf("state cell %q", got)
		}
		row := textOf(p.find("tr[data-image=" + awaiting + "]")[0])
		for _, want := range []string{"docker.io", "3.20", "manual policy", "1 critical", "3 low", "just now"} {
			if !strings.Contains(row, want) {
				t.Errorf("row %q lacks %q", row, want)
			}
		}
		if got := textOf(p.find("tr[data-image=" + failed + "]")[0]); !strings.Contains(got, "not scanned") {
			t.Errorf("unscanned row %q", got)
		}
		for _, cls := range []string{"act-approve", "act-revoke", "act-rescan"} {
			links := p.find("a." + cls)
			if len(links) != len(all) {
				t.Errorf("%d a.%s links, want one per row", len(links), cls)
				continue
			}
			want := "/ui/images/" + awaiting + "/" + strings.TrimPrefix(cls, "act-")
			if !slices.ContainsFunc(links, func(n *html.Node) bool { return attrOf(n, "href") == want }) {
				t.Errorf("no a.%s to %s", cls, want)
			}
		}
		for _, th := range p.find("th") {
			if attrOf(th, "scope") == "" {
				t.Errorf("table header %q without scope", textOf(th))
			}
		}
		if got := p.attr(t, "a[href=/ui/images/"+awaiting+"]", "href"); got == "" {
			t.Error("no link to the image's page")
		}
	})
	t.Run("viewer", func(t *testing.T) {
		p := viewer.get(t, "/ui/")
		if !sameSet(p.rows(), all) {
			t.Errorf("viewer's rows %v", p.rows())
		}
		if n := len(p.find("a.act-approve")) + len(p.find("a.act-revoke")) + len(p.find("a.act-rescan")); n != 0 {
			t.Errorf("viewer sees %d action links", n)
		}
	})
	t.Run("bad filter", func(t *testing.T) {
		for _, q := range []string{"state=approved", "state=bogus", "severity=extreme", "q=" + strings.Repeat("x", 300)} {
			p := approver.get(t, "/ui/?"+q)
			if p.status != http.StatusBadRequest || len(p.find("#filter-error")) != 1 {
				t.Errorf("%s: %d, want 400 with the filter error", q, p.status)
			}
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// hostile are strings an upstream publisher controls (tags, reasons
// quoting upstream errors) that would run script if written unescaped.
var hostile = []string{
	`<script>alert(1)</script>`,
	`"><img src=x onerror=alert(1)>`,
	`' onmouseover='alert(1)`,
	"javascript:alert(1)",
}

// TestHostileStrings: image tags, reasons, flags and search text holding
// markup appear on the queue and confirmation pages as text, never as
// markup.
func TestHostileStrings(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval,
		reason: "upstream said: " + hostile[0] + hostile[1], flag: hostile[1],
		tags: []string{hostile[0], hostile[1], hostile[2]}, severities: map[string]int{hostile[0]: 1}})
	flagged := e.image(t, imageSpec{repo: "library/nginx", state: state.StateApproved, reason: hostile[2], flag: hostile[0]})
	b := e.browser(t).signIn(t, bootstrapToken)

	pages := []string{
		"/ui/",
		"/ui/?state=flagged",
		"/ui/?q=" + url.QueryEscape(hostile[1]),
		"/ui/images/" + ref.String() + "/approve",
		"/ui/images/" + flagged.String() + "/revoke",
	}
	for _, path := range pages {
		p := b.get(t, path)
		if p.status != http.StatusOK && p.status != http.StatusBadRequest {
			t.Fatalf("%s: %d", path, p.status)
		}
		for _, h := range hostile[:2] {
			if strings.Contains(p.body, h) {
				t.Errorf("%s: page source holds %q unescaped", path, h)
			}
		}
		// What the parser sees: no element the data could have made.
		if n := len(p.find("img")); n != 0 {
			t.Errorf("%s: %d <img> elements", path, n)
		}
		for _, s := range p.find("script") {
			if src := attrOf(s, "src"); !strings.HasPrefix(src, "/ui/static/") || strings.ContainsAny(src, "<>\"' ") {
				t.Errorf("%s: a script element not ours: %v", path, s.Attr)
			}
		}
		for _, n := range p.find("[onmouseover]") {
			t.Errorf("%s: element with onmouseover: %v", path, n.Attr)
		}
		for _, a := range p.find("a") {
			if strings.HasPrefix(strings.ToLower(attrOf(a, "href")), "javascript:") {
				t.Errorf("%s: javascript: link", path)
			}
		}
	}
	// The text is still shown, as text.
	p := b.get(t, "/ui/")
	if !strings.Contains(textOf(p.doc), hostile[0]) {
		t.Errorf("the tag is not shown as text")
	}
	// A rejected decision's reason is shown back as text too.
	bad := b.act(t, ref.String(), "approve", hostile[0]+"\x1b[2J", nil)
	if bad.status != http.StatusBadRequest || strings.Contains(bad.body, hostile[0]) {
		t.Errorf("refused reason: %d, echoed unescaped: %v", bad.status, strings.Contains(bad.body, hostile[0]))
	}
}
