package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestDecisions: an approver's approve, revoke and rescan go through the
// confirmation page to the admin API, are audited with the token's name
// as the actor, and send the browser to the image's page with done=.
func TestDecisions(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(t).signIn(t, e.token(t, "arno", admin.RoleApprover))
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "manual policy", tags: []string{"3.20"}})
	img := ref.String()

	steps := []struct {
		action string
		want   state.State
	}{
		{"approve", state.StateApproved},
		{"revoke", state.StateRevoked},
		{"rescan", state.StatePending},
	}
	for _, s := range steps {
		confirm := b.get(t, "/ui/images/"+img+"/"+s.action)
		if confirm.status != http.StatusOK {
			t.Fatalf("%s confirmation: %d %s", s.action, confirm.status, confirm.body)
		}
		if got := confirm.attr(t, "form#action-form", "action"); got != "/ui/images/"+img+"/"+s.action {
			t.Errorf("%s form posts to %q", s.action, got)
		}
		if len(confirm.find("textarea#reason[required]")) != 1 || len(confirm.find("button#confirm")) != 1 {
			t.Errorf("%s confirmation lacks textarea#reason (required) or button#confirm:\n%s", s.action, confirm.body)
		}
		if got := confirm.text("[data-state-for]"); got != string(e.imageState(t, ref)) {
			t.Errorf("%s confirmation shows state %q", s.action, got)
		}
		if len(confirm.find("input#allow_fallback")) != 0 {
			t.Errorf("%s of a digest offers allow_fallback", s.action)
		}
		reason := "ticket SEC-1: " + s.action
		p := b.act(t, img, s.action, reason, nil)
		if p.status != http.StatusSeeOther {
			t.Fatalf("%s: %d, want 303: %s", s.action, p.status, p.body)
		}
		loc, err := url.Parse(p.header.Get("Location"))
		if err != nil || loc.Path != "/ui/images/"+img || loc.Query().Get("done") != s.action {
			t.Errorf("%s redirects to %q, want /ui/images/%s?done=%s", s.action, p.header.Get("Location"), img, s.action)
		}
		if got := e.imageState(t, ref); got != s.want {
			t.Errorf("after %s: state %s, want %s", s.action, got, s.want)
		}
		d := e.decisions(t, ref)
		if len(d) == 0 || d[0].Actor != "arno" || d[0].Action != s.action || d[0].Reason != reason {
			t.Errorf("after %s: newest decision %+v, want actor arno, action %s, reason %q", s.action, d, s.action, reason)
		}
	}
}

// TestDecisionRefusals: a decision without a reason is 400 with the form
// again and nothing done; without the CSRF token, with a wrong one, or
// from another site it is 403 and nothing done; a viewer's forged POST
// with a valid CSRF token is refused 403 by the admin API; an unknown
// action is 404. None leaves a decision in the audit log.
func TestDecisionRefusals(t *testing.T) {
	e := newEnv(t, envOptions{})
	approver := e.browser(t).signIn(t, e.token(t, "arno", admin.RoleApprover))
	viewer := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "manual policy"})
	img := ref.String()
	path := "/ui/images/" + img + "/approve"

	cases := []struct {
		name   string
		b      *browser
		form   url.Values
		hdr    map[string]string
		status int
		check  func(t *testing.T, p page)
	}{
		{"empty reason", approver, url.Values{"csrf": {approver.csrf}, "reason": {"  "}}, nil, http.StatusBadRequest, func(t *testing.T, p page) {
			if !strings.Contains(p.text("#error-message"), "reason") || len(p.find("textarea#reason")) != 1 || len(p.find("button#confirm")) != 1 {
				t.Errorf("no error and form again:\n%s", p.body)
			}
		}},
		{"no CSRF token", approver, url.Values{"reason": {"ok"}}, nil, http.StatusForbidden, nil},
		{"wrong CSRF token", approver, url.Values{"csrf": {viewer.csrf}, "reason": {"ok"}}, nil, http.StatusForbidden, nil},
		{"cross-site", approver, url.Values{"csrf": {approver.csrf}, "reason": {"ok"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, nil},
		{"cross-origin", approver, url.Values{"csrf": {approver.csrf}, "reason": {"ok"}}, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden, nil},
		{"viewer", viewer, url.Values{"csrf": {viewer.csrf}, "reason": {"ok"}}, nil, http.StatusForbidden, func(t *testing.T, p page) {
			if msg := p.text("#error-message"); !strings.Contains(msg, "role viewer may not") {
				t.Errorf("viewer refused with %q, want the API's role message", msg)
			}
		}},
		{"control character", approver, url.Values{"csrf": {approver.csrf}, "reason": {"line one\r\nline two"}}, nil, http.StatusBadRequest, func(t *testing.T, p page) {
			if msg := p.text("#error-message"); !strings.Contains(msg, "control character") {
				t.Errorf("refused with %q, want the API's reason check", msg)
			}
			if got := p.text("textarea#reason"); !strings.Contains(got, "line one") {
				t.Errorf("the reason sent is not kept in the form: %q", got)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.b.post(t, path, c.form, c.hdr)
			if p.status != c.status {
				t.Fatalf("%d, want %d: %s", p.status, c.status, p.body)
			}
			if c.check != nil {
				c.check(t, p)
			}
			if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
				t.Errorf("state %s after a refused decision", st)
			}
			if d := e.decisions(t, ref); len(d) != 0 {
				t.Errorf("audit has decisions after a refused one: %+v", d)
			}
		})
	}

	t.Run("viewer sees no form", func(t *testing.T) {
		p := viewer.get(t, path)
		if p.status != http.StatusOK || len(p.find("button#confirm")) != 0 || len(p.find("#role-note")) != 1 {
			t.Errorf("viewer's confirmation page: %d\n%s", p.status, p.body)
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		p := approver.post(t, "/ui/images/"+img+"/delete", url.Values{"csrf": {approver.csrf}, "reason": {"x"}}, nil)
		if p.status != http.StatusNotFound {
			t.Errorf("POST of an unknown action: %d, want 404", p.status)
		}
	})
	t.Run("unknown image", func(t *testing.T) {
		p := approver.get(t, "/ui/images/docker.io/library/nothing@sha256:"+strings.Repeat("0", 64)+"/approve")
		if p.status != http.StatusNotFound {
			t.Errorf("confirmation of an unknown image: %d, want 404", p.status)
		}
	})
	t.Run("conflict", func(t *testing.T) {
		other := e.image(t, imageSpec{repo: "library/busybox", state: state.StateScanning, reason: "scanning"})
		p := approver.act(t, other.String(), "approve", "looks fine", nil)
		if p.status != http.StatusConflict || !strings.Contains(p.text("#error-message"), "still in the pipeline") {
			t.Errorf("approve in the pipeline: %d %q, want 409 with the API's message", p.status, p.text("#error-message"))
		}
	})
}

// TestRevokeByTag: the confirmation of a revoke by tag offers the
// fallback; the API's message on what the tag serves now reaches the
// image page's URL (msg=).
func TestRevokeByTag(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(t).signIn(t, e.token(t, "arno", admin.RoleApprover))
	ref := e.image(t, imageSpec{repo: "library/nginx", state: state.StateApproved, reason: "ok"})
	if _, err := e.store.RecordTag(ref.Upstream, ref.Repository, "1.27", ref.Digest, "application/vnd.oci.image.manifest.v1+json"); err != nil {
		t.Fatal(err)
	}
	byTag := "docker.io/library/nginx:1.27"
	confirm := b.get(t, "/ui/images/"+byTag+"/revoke")
	if confirm.status != http.StatusOK || len(confirm.find("input#allow_fallback")) != 1 {
		t.Fatalf("revoke-by-tag confirmation: %d, no allow_fallback checkbox:\n%s", confirm.status, confirm.body)
	}
	p := b.act(t, byTag, "revoke", "CVE-2026-0001", url.Values{"allow_fallback": {"1"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("revoke by tag: %d %s", p.status, p.body)
	}
	loc, _ := url.Parse(p.header.Get("Location"))
	if loc.Path != "/ui/images/"+byTag || !strings.Contains(loc.Query().Get("msg"), "tag 1.27 has no other approved digest") {
		t.Errorf("redirect %q: want the image page with the API's message", p.header.Get("Location"))
	}
	if st := e.imageState(t, ref); st != state.StateRevoked {
		t.Errorf("state %s, want revoked", st)
	}
	// allow_fallback on a revoke by digest is the API's to refuse.
	other := e.image(t, imageSpec{repo: "library/redis", state: state.StateApproved, reason: "ok"})
	if p := b.act(t, other.String(), "revoke", "x", url.Values{"allow_fallback": {"1"}}); p.status != http.StatusBadRequest {
		t.Errorf("allow_fallback by digest: %d, want 400", p.status)
	}
}

// TestFourEyes: with gate.approvals_required 2 the first approval is
// recorded and pending (the API's message reaches the image page's URL),
// the same approver cannot approve twice, and a second approver's
// approval approves.
func TestFourEyes(t *testing.T) {
	e := newEnv(t, envOptions{gate: config.Gate{ApprovalsRequired: 2}})
	alice := e.browser(t).signIn(t, e.token(t, "alice", admin.RoleApprover))
	bob := e.browser(t).signIn(t, e.token(t, "bob", admin.RoleApprover))
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "manual policy"})
	img := ref.String()

	p := alice.act(t, img, "approve", "reviewed the SBOM", nil)
	if p.status != http.StatusSeeOther {
		t.Fatalf("first approval: %d %s", p.status, p.body)
	}
	loc, _ := url.Parse(p.header.Get("Location"))
	if msg := loc.Query().Get("msg"); !strings.Contains(msg, "approval 1 of 2 recorded") || loc.Query().Get("done") != "approve" {
		t.Errorf("first approval redirects to %q, want done=approve and the pending message", p.header.Get("Location"))
	}
	if st := e.imageState(t, ref); st != state.StateAwaitingApproval {
		t.Fatalf("state %s after one of two approvals", st)
	}
	confirm := bob.get(t, "/ui/images/"+img+"/approve")
	if got := confirm.text("#confirm-approvals"); !strings.Contains(got, "2 different approvers") || !strings.Contains(got, "alice") {
		t.Errorf("confirmation shows approvals %q", got)
	}
	queue := bob.get(t, "/ui/")
	if got := queue.text("ul.approvals"); !strings.Contains(got, "alice") {
		t.Errorf("queue shows pending approvals %q", got)
	}
	if p := alice.act(t, img, "approve", "again", nil); p.status != http.StatusConflict {
		t.Errorf("same approver twice: %d, want 409", p.status)
	}
	if p := bob.act(t, img, "approve", "agree", nil); p.status != http.StatusSeeOther {
		t.Fatalf("second approval: %d %s", p.status, p.body)
	}
	if st := e.imageState(t, ref); st != state.StateApproved {
		t.Errorf("state %s after two approvals", st)
	}
}
