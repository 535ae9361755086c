package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/airlockproxy/airlock/admin"
)

// confirmData is the confirmation page of a decision.
type confirmData struct {
	// Image is the image as the URL names it: "<upstream>/<repo>@<digest>"
	// or "<upstream>/<repo>:<tag>".
	Image string
	// Action is approve, revoke or rescan.
	Action string
	// ByTag is set when Image names a tag: a revoke then offers the
	// fallback choice.
	ByTag bool
	// Detail is the image as the API shows it; nil when it could not be
	// read (the page then says so and the API decides on the POST).
	Detail *admin.ImageDetail
	// Reason and AllowFallback are what the form sent, shown again with
	// Error when the decision was refused.
	Reason        string
	AllowFallback bool
	Error         string
}

// Effect says in words what the decision will do.
func (d confirmData) Effect() string {
	switch d.Action {
	case "approve":
		return "Approving lets clients pull this image: it is served once approved (after Airlock signs it, when signing is configured). " +
			"Approve only what you have reviewed: the vulnerabilities, the policy result and the signatures."
	case "revoke":
		if d.ByTag {
			return "Revoking stops serving the digest this tag points to now. Unless you allow a fallback, the tag is refused " +
				"until a newer digest is approved, so it does not roll back to an older image that may carry the same problem."
		}
		return "Revoking stops serving this image at once: pulls of it are refused. Its tags fall back to their previous approved digest, if any."
	case "rescan":
		return "Rescanning checks the image again with the current vulnerability database and policy. An approved image stays served " +
			"unless it now fails; any other image runs through the pipeline again."
	}
	return ""
}

// Title is the page's heading verb.
func (d confirmData) Title() string {
	if d.Action == "" {
		return ""
	}
	return strings.ToUpper(d.Action[:1]) + d.Action[1:]
}

// pageTitle is the confirmation page's title.
func (d confirmData) pageTitle() string { return d.Title() + " " + d.Image }

// imageAPIPath is the admin API path of image (tag or digest reference),
// escaped so that a name cannot add a query or fragment to the call.
func imageAPIPath(image, suffix string) string {
	return (&url.URL{Path: "/api/v1/images/" + image + suffix}).RequestURI()
}

// loadConfirm reads the image for the confirmation page. A refusal of
// the read is returned (the caller answers with it).
func (c *Console) loadConfirm(r *http.Request, image, action string) (confirmData, error) {
	d := confirmData{Image: image, Action: action, ByTag: !strings.Contains(image, "@")}
	var detail admin.ImageDetail
	if err := c.call(r, http.MethodGet, imageAPIPath(image, ""), nil, &detail); err != nil {
		return d, err
	}
	d.Detail = &detail
	return d, nil
}

// confirmAction is GET /ui/images/<IMAGE>/<action>: what the decision
// will do, the image's state and reason, and the form that makes it (a
// reason is required).
func (c *Console) confirmAction(w http.ResponseWriter, r *http.Request, image, action string) {
	if !slices.Contains(actions, action) {
		c.fail(w, r, http.StatusNotFound, "no such action")
		return
	}
	d, err := c.loadConfirm(r, image, action)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "confirm", d.pageTitle(), d)
}

// act is POST /ui/images/<IMAGE>/<action> (CSRF checked by authed): the
// admin API's POST /api/v1/<action> as the signed-in identity, whose role
// the API checks; then 303 to the image's page with ?done=<action> and
// the API's message, if any (msg: what a revoke did to the tag, or that
// an approval is recorded and waits for another approver). The image page
// shows them as text.
func (c *Console) act(w http.ResponseWriter, r *http.Request, image, action string) {
	if !slices.Contains(actions, action) {
		c.fail(w, r, http.StatusNotFound, "no such action")
		return
	}
	req := admin.ActionRequest{
		Image:  image,
		Reason: strings.TrimSpace(r.PostFormValue("reason")),
		// Only a revoke by tag has the choice; anything else sending it
		// is refused by the API, not silently dropped here.
		AllowFallback: r.PostFormValue("allow_fallback") != "",
	}
	if req.Reason == "" {
		// The console asks for a reason on every decision (the API would
		// put a default one in the audit log): the reason is what the
		// next person reads.
		c.refuse(w, r, image, action, req, http.StatusBadRequest, "enter a reason: it is recorded in the audit log with your name")
		return
	}
	var res admin.ActionResult
	if err := c.call(r, http.MethodPost, "/api/v1/"+action, req, &res); err != nil {
		var ae *admin.APIError
		if errors.As(err, &ae) {
			c.log.Info("console: decision refused", "identity", sessionOf(r).id.Name, "action", action, "image", image, "status", ae.Status, "error", ae.Message)
			c.refuse(w, r, image, action, req, ae.Status, ae.Message)
			return
		}
		c.apiFail(w, r, err)
		return
	}
	q := url.Values{"done": {action}}
	if res.Message != "" {
		q.Set("msg", res.Message)
	}
	loc := url.URL{Path: "/ui/images/" + image, RawQuery: q.Encode()}
	http.Redirect(w, r, loc.String(), http.StatusSeeOther)
}

// refuse shows the confirmation page again with status and why, keeping
// what the form sent. The image is read again for the page; if that is
// refused too (e.g. it does not exist), the page goes without it.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, image, action string, req admin.ActionRequest, status int, why string) {
	d, err := c.loadConfirm(r, image, action)
	if err != nil {
		d.Detail = nil
	}
	d.Reason, d.AllowFallback, d.Error = req.Reason, req.AllowFallback, why
	c.render(w, r, status, "confirm", d.pageTitle(), d)
}
