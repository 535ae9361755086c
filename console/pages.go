package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/watch"
)

// routes adds the pages beyond sign-in, the queue and the image pages.
// Every page reads and writes through the admin API as the signed-in
// identity (c.call): the API's role table decides, the console only hides
// forms a role could not use.
func (c *Console) routes(mux *http.ServeMux) {
	mux.Handle("GET /ui/images", c.authed(c.imagesPage))
	mux.Handle("GET /ui/cve", c.authed(c.cvePage))
	mux.Handle("GET /ui/db", c.authed(c.dbPage))
	mux.Handle("POST /ui/db/import", c.authedUpload(c.dbImport))
	mux.Handle("GET /ui/watches", c.authed(c.watchesPage))
	mux.Handle("POST /ui/watches", c.authed(c.addWatch))
	mux.Handle("GET /ui/watches/remove", c.authed(c.confirmRemoveWatch))
	mux.Handle("POST /ui/watches/remove", c.authed(c.removeWatch))
	mux.Handle("GET /ui/events", c.authed(c.eventsPage))
	mux.Handle("GET /ui/settings", c.authed(c.settingsPage))
	mux.Handle("GET /ui/tokens", c.authed(c.tokensPage))
	mux.Handle("POST /ui/tokens", c.authed(c.createToken))
	mux.Handle("GET /ui/tokens/revoke", c.authed(c.confirmRevokeToken))
	mux.Handle("POST /ui/tokens/revoke", c.authed(c.revokeToken))
}

// imagesPageSize is how many images one page of /ui/images lists.
const imagesPageSize = 200

// imagesData is the /ui/images page's data.
type imagesData struct {
	Rows []imageRow
	// Total is the number of images in the state asked for, Matching
	// those the filters keep.
	Total, Matching int
	State, Upstream string
	Query           string
	States          []state.State
	Upstreams       []string
	Page, Pages     int
	Prev, Next      string
}

// imageRow is one image of a list.
type imageRow struct {
	admin.ListedImage
	Link string
	// Severities is the last scan's counts, "3 Critical, 1 High".
	Severities string
}

// imagesPage is GET /ui/images: every image, filtered by state
// (?state=, by the API), upstream (?upstream=) and a search in the name,
// tags and reason (?q=); newest change first, imagesPageSize a page.
func (c *Console) imagesPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := imagesData{States: state.States, Query: clip(strings.TrimSpace(q.Get("q")), maxQueryRunes), Upstream: q.Get("upstream")}
	if st := state.State(q.Get("state")); st.Valid() {
		d.State = string(st)
	}
	var out struct {
		Images []admin.ListedImage `json:"images"`
	}
	if err := c.call(r, http.MethodGet, "/api/v1/images?state="+url.QueryEscape(d.State), nil, &out); err != nil {
		c.apiFail(w, r, err)
		return
	}
	d.Total = len(out.Images)
	needle := strings.ToLower(d.Query)
	var rows []imageRow
	for _, img := range out.Images {
		if !slices.Contains(d.Upstreams, img.Upstream) {
			d.Upstreams = append(d.Upstreams, img.Upstream)
		}
		if d.Upstream != "" && img.Upstream != d.Upstream {
			continue
		}
		if needle != "" && !strings.Contains(strings.ToLower(img.Ref.String()+"\x00"+strings.Join(img.Tags, "\x00")+"\x00"+img.Reason), needle) {
			continue
		}
		rows = append(rows, imageRow{ListedImage: img, Link: imageLink(img.Ref.String()), Severities: severityText(img.Scan)})
	}
	slices.Sort(d.Upstreams)
	slices.SortStableFunc(rows, func(a, b imageRow) int { return b.Updated.Compare(a.Updated) })
	d.Matching = len(rows)
	d.Pages = max(1, (len(rows)+imagesPageSize-1)/imagesPageSize)
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = min(max(d.Page, 1), d.Pages)
	lo := (d.Page - 1) * imagesPageSize
	d.Rows = rows[lo:min(lo+imagesPageSize, len(rows))]
	pageLink := func(n int) string {
		v := url.Values{}
		for k, s := range map[string]string{"state": d.State, "upstream": d.Upstream, "q": d.Query} {
			if s != "" {
				v.Set(k, s)
			}
		}
		v.Set("page", strconv.Itoa(n))
		return "/ui/images?" + v.Encode()
	}
	if d.Page > 1 {
		d.Prev = pageLink(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.Next = pageLink(d.Page + 1)
	}
	c.render(w, r, http.StatusOK, "images", "All images", d)
}

// severityText is a scan's counts by severity, most severe first.
func severityText(s *state.ScanSummary) string {
	if s == nil {
		return ""
	}
	var parts []string
	for _, sev := range severities {
		if n := s.Severities[sev]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, sev))
		}
	}
	return strings.Join(parts, ", ")
}

// vulnID is what a vulnerability ID may look like (CVE-2024-1234,
// GHSA-xxxx-xxxx-xxxx, ALAS-2024-1, …).
var vulnID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)

// cveData is the "where is CVE-X" page's data.
type cveData struct {
	ID    string
	Error string
	// Searched is set once an ID was looked up.
	Searched bool
	Hits     []cveHit
}

// cveHit is one image affected by the vulnerability.
type cveHit struct {
	state.VulnHit
	Ref, Link string
	Rank      int
}

// cvePage is GET /ui/cve?id=<ID>: which images' last scan found the
// vulnerability (GET /api/v1/vulnerabilities/{id}), most severe first.
func (c *Console) cvePage(w http.ResponseWriter, r *http.Request) {
	d := cveData{ID: strings.TrimSpace(r.URL.Query().Get("id"))}
	if d.ID == "" {
		c.render(w, r, http.StatusOK, "cve", "Where is a vulnerability", d)
		return
	}
	if !vulnID.MatchString(d.ID) {
		d.Error, d.ID = "a vulnerability ID looks like CVE-2024-3094 or GHSA-xxxx-xxxx-xxxx", clip(d.ID, maxQueryRunes)
		c.render(w, r, http.StatusBadRequest, "cve", "Where is a vulnerability", d)
		return
	}
	if len(d.ID) > 4 && strings.EqualFold(d.ID[:4], "cve-") {
		// The index keys CVEs as the scanners spell them: upper case.
		d.ID = strings.ToUpper(d.ID)
	}
	var out struct {
		Images []state.VulnHit `json:"images"`
	}
	if err := c.call(r, http.MethodGet, "/api/v1/vulnerabilities/"+url.PathEscape(d.ID), nil, &out); err != nil {
		c.apiFail(w, r, err)
		return
	}
	d.Searched = true
	for _, h := range out.Images {
		ref := h.Image.String()
		d.Hits = append(d.Hits, cveHit{VulnHit: h, Ref: ref, Link: imageLink(ref), Rank: severityRank(h.Severity)})
	}
	slices.SortStableFunc(d.Hits, func(a, b cveHit) int { return cmp.Or(cmp.Compare(b.Rank, a.Rank), cmp.Compare(a.Ref, b.Ref)) })
	c.render(w, r, http.StatusOK, "cve", d.ID, d)
}

// dbData is the vulnerability DB page's data.
type dbData struct {
	Status *scan.DBStatus
	// Error is why there is no status (scanning off, no DB installed).
	Error  string
	Notice string
}

// dbPage is GET /ui/db: the vulnerability DB scans use now and, for
// admins, the form that imports a new one.
func (c *Console) dbPage(w http.ResponseWriter, r *http.Request) {
	var d dbData
	var st scan.DBStatus
	err := c.call(r, http.MethodGet, "/api/v1/db", nil, &st)
	var ae *admin.APIError
	switch {
	case err == nil:
		d.Status = &st
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		// Scanning is off, or no DB is installed yet: the page says so
		// (and still offers the import).
		d.Error = ae.Message
	default:
		c.apiFail(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Get("done") == "import" {
		rescans, _ := strconv.Atoi(q.Get("rescans"))
		retries, _ := strconv.Atoi(q.Get("retries"))
		d.Notice = fmt.Sprintf("Vulnerability DB imported: %d rescans and %d retries queued.", rescans, retries)
	}
	c.render(w, r, http.StatusOK, "db", "Vulnerability DB", d)
}

// maxCSRFField bounds the csrf part of an upload.
const maxCSRFField = 1024

// authedUpload serves h to a signed-in multipart upload whose first part
// is the session's CSRF token ("csrf") and whose second is the file
// ("archive"), handed to h unread. authed cannot serve uploads: it
// parses the whole body as a form within maxFormBytes, while a DB archive
// is hundreds of megabytes and must reach the API as a stream, not a
// copy in memory or on disk. The checks are authed's: no session is 401,
// a missing or wrong token 403, before any of the file is read.
func (c *Console) authedUpload(h func(http.ResponseWriter, *http.Request, *multipart.Part)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.lookup(r)
		if s == nil {
			c.fail(w, r, http.StatusUnauthorized, "sign in first")
			return
		}
		r = r.WithContext(withSession(r.Context(), s))
		mr, err := r.MultipartReader()
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, "send the upload as a multipart/form-data form")
			return
		}
		part, err := mr.NextPart()
		var got []byte
		if err == nil && part.FormName() == "csrf" {
			got, err = io.ReadAll(io.LimitReader(part, maxCSRFField+1))
		}
		if err != nil || len(got) > maxCSRFField {
			got = nil
		}
		if !c.csrfOK(w, r, got) {
			return
		}
		file, err := mr.NextPart()
		if err != nil || file.FormName() != "archive" || file.FileName() == "" {
			c.fail(w, r, http.StatusBadRequest, "choose a database file to upload (field archive, after csrf)")
			return
		}
		h(w, r, file)
	})
}

// dbImport is POST /ui/db/import: the uploaded file, streamed as the body
// of the admin API's POST /api/v1/db/import (which bounds its size,
// scan.db_max_size, and checks the role: admin); then 303 to /ui/db.
// c.call sends JSON, so this one call invokes the API directly, as the
// same signed-in identity.
func (c *Console) dbImport(w http.ResponseWriter, r *http.Request, file *multipart.Part) {
	name := path.Base(file.FileName())
	target := "/api/v1/db/import?" + url.Values{"name": {name}}.Encode()
	resp := c.api.Invoke(r.Context(), sessionOf(r).identity(), http.MethodPost, target, file, "application/octet-stream")
	if err := resp.Err(); err != nil {
		c.apiFail(w, r, err)
		return
	}
	var res admin.DBImportResult
	if err := json.Unmarshal(resp.Body, &res); err != nil {
		c.apiFail(w, r, fmt.Errorf("decode POST %s: %w", target, err))
		return
	}
	c.log.Info("console: vulnerability DB imported", "identity", sessionOf(r).id.Name, "built", res.DB.Built)
	q := url.Values{"done": {"import"}, "rescans": {strconv.Itoa(res.Rescans)}, "retries": {strconv.Itoa(res.Retries)}}
	http.Redirect(w, r, "/ui/db?"+q.Encode(), http.StatusSeeOther)
}

// watchesData is the watched repositories page's data.
type watchesData struct {
	Watches []watchRow
	// Disabled is why there are no watches (not enabled in this process).
	Disabled string
	Notice   string
	// Error and the Form fields are a refused add, shown again.
	Error string
	Form  watchForm
}

// watchRow is one watch.
type watchRow struct {
	watch.Listed
	Interval  string
	RemoveURL string
}

// watchForm is what the add form sent.
type watchForm struct {
	Image, Tags, Interval, MaxNew string
}

// watchesPage is GET /ui/watches.
func (c *Console) watchesPage(w http.ResponseWriter, r *http.Request) {
	var d watchesData
	switch r.URL.Query().Get("done") {
	case "added":
		d.Notice = "Watch added."
	case "removed":
		d.Notice = "Watch removed."
	}
	c.renderWatches(w, r, http.StatusOK, d)
}

// renderWatches reads the watches into d and renders the page.
func (c *Console) renderWatches(w http.ResponseWriter, r *http.Request, status int, d watchesData) {
	var list admin.WatchList
	err := c.call(r, http.MethodGet, "/api/v1/watches", nil, &list)
	var ae *admin.APIError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		d.Disabled = ae.Message
	default:
		c.apiFail(w, r, err)
		return
	}
	for _, l := range list.Watches {
		row := watchRow{Listed: l, Interval: l.Interval.String()}
		if l.Source == watch.SourceAPI {
			row.RemoveURL = "/ui/watches/remove?" + url.Values{"image": {l.Image}}.Encode()
		}
		d.Watches = append(d.Watches, row)
	}
	c.render(w, r, status, "watches", "Watched repositories", d)
}

// addWatch is POST /ui/watches: image, tags (one pattern a line),
// interval and max_new_per_run → POST /api/v1/watches.
func (c *Console) addWatch(w http.ResponseWriter, r *http.Request) {
	f := watchForm{
		Image: strings.TrimSpace(r.PostFormValue("image")), Tags: r.PostFormValue("tags"),
		Interval: strings.TrimSpace(r.PostFormValue("interval")), MaxNew: strings.TrimSpace(r.PostFormValue("max_new_per_run")),
	}
	req := admin.WatchRequest{Image: f.Image, Interval: f.Interval}
	for _, line := range strings.Split(f.Tags, "\n") {
		if t := strings.TrimSpace(line); t != "" {
			req.Tags = append(req.Tags, t)
		}
	}
	refuse := func(status int, msg string) {
		c.renderWatches(w, r, status, watchesData{Error: msg, Form: f})
	}
	if f.MaxNew != "" {
		n, err := strconv.Atoi(f.MaxNew)
		if err != nil || n < 0 {
			refuse(http.StatusBadRequest, "max new per run: want a whole number (0 for the default)")
			return
		}
		req.MaxNewPerRun = n
	}
	var def watch.Definition
	if err := c.call(r, http.MethodPost, "/api/v1/watches", req, &def); err != nil {
		var ae *admin.APIError
		if errors.As(err, &ae) && ae.Status != http.StatusForbidden && ae.Status != http.StatusUnauthorized {
			refuse(ae.Status, ae.Message)
			return
		}
		c.apiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/ui/watches?done=added", http.StatusSeeOther)
}

// removeData is the page that asks before a watch is removed
// or a token revoked.
type removeData struct {
	Heading, Text string
	// Action is the form's URL; Field and Value its one hidden field.
	Action, Field, Value string
	Button, Cancel       string
}

// confirmRemove is the GET of a remove page: the query parameter field
// names the item, which must be in the API's list at listPath (read
// into list; a 404 otherwise, so that no page asks about nothing); ask
// gives the page's title and data for it, or false when it is not in
// the list.
func (c *Console) confirmRemove(w http.ResponseWriter, r *http.Request, what, field, listPath string, list any, ask func(name string) (string, removeData, bool)) {
	name := r.URL.Query().Get(field)
	if err := c.call(r, http.MethodGet, listPath, nil, list); err != nil {
		c.apiFail(w, r, err)
		return
	}
	title, d, ok := ask(name)
	if !ok {
		c.fail(w, r, http.StatusNotFound, "no such "+what)
		return
	}
	c.render(w, r, http.StatusOK, "remove", title, d)
}

// removeNamed is the POST of a remove page: the form's field names the
// item, and apiPath is the admin API's DELETE of it. It answers a
// refusal itself and returns false; on success the caller redirects.
func (c *Console) removeNamed(w http.ResponseWriter, r *http.Request, what, field string, apiPath func(name string) string) (string, bool) {
	name := strings.TrimSpace(r.PostFormValue(field))
	if name == "" {
		c.fail(w, r, http.StatusBadRequest, "which "+what+"? (field "+field+")")
		return "", false
	}
	if err := c.call(r, http.MethodDelete, apiPath(name), nil, nil); err != nil {
		c.apiFail(w, r, err)
		return "", false
	}
	return name, true
}

// confirmRemoveWatch is GET /ui/watches/remove?image=…: asks first.
func (c *Console) confirmRemoveWatch(w http.ResponseWriter, r *http.Request) {
	var list admin.WatchList
	c.confirmRemove(w, r, "watch", "image", "/api/v1/watches", &list, func(image string) (string, removeData, bool) {
		return "Remove watch " + image, removeData{
			Heading: "Remove the watch of " + image + "?",
			Text:    "Airlock stops checking this repository for new tags. Images already pulled stay as they are.",
			Action:  "/ui/watches/remove", Field: "image", Value: image, Button: "Remove watch", Cancel: "/ui/watches",
		}, slices.ContainsFunc(list.Watches, func(l watch.Listed) bool { return l.Image == image })
	})
}

// removeWatch is POST /ui/watches/remove → DELETE /api/v1/watches/<image>.
func (c *Console) removeWatch(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.removeNamed(w, r, "watch", "image", func(image string) string {
		return (&url.URL{Path: "/api/v1/watches/" + image}).RequestURI()
	}); ok {
		http.Redirect(w, r, "/ui/watches?done=removed", http.StatusSeeOther)
	}
}

// eventsRecent is how many of the newest events the events page lists.
const eventsRecent = 50

// eventsData is the events page's data.
type eventsData struct {
	admin.EventsStatus
	Recent []eventRow
}

// eventRow is one event of the outbox.
type eventRow struct {
	state.Event
	Link string
}

// eventsPage is GET /ui/events: the webhook endpoints, the outbox and
// each endpoint's delivery progress, and the newest events.
func (c *Console) eventsPage(w http.ResponseWriter, r *http.Request) {
	var d eventsData
	if err := c.call(r, http.MethodGet, "/api/v1/events?recent="+strconv.Itoa(eventsRecent), nil, &d.EventsStatus); err != nil {
		c.apiFail(w, r, err)
		return
	}
	for _, e := range d.EventsStatus.Recent {
		row := eventRow{Event: e}
		if _, err := state.ParseRef(e.Subject); err == nil {
			row.Link = imageLink(e.Subject)
		}
		d.Recent = append(d.Recent, row)
	}
	c.render(w, r, http.StatusOK, "events", "Events", d)
}

// tokensData is the tokens page's data.
type tokensData struct {
	Tokens []tokenRow
	// New is the token just created: its secret is shown this once.
	New    *admin.TokenCreated
	Notice string
	// Error and Form are a refused creation, shown again.
	Error string
	Form  admin.TokenRequest
	Roles []admin.Role
}

// tokenRow is one token of the list.
type tokenRow struct {
	state.Token
	// Status is active, expired or revoked.
	Status    string
	RevokeURL string
}

// tokensPage is GET /ui/tokens. The list is GET /api/v1/tokens, which
// only admins may read: anyone else gets the API's 403 as the page.
func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request) {
	var d tokensData
	if r.URL.Query().Get("done") == "revoked" {
		d.Notice = "Token revoked: it no longer works, and its console sessions have ended."
	}
	c.renderTokens(w, r, http.StatusOK, d)
}

// renderTokens reads the token list into d and renders the page.
func (c *Console) renderTokens(w http.ResponseWriter, r *http.Request, status int, d tokensData) {
	var list admin.TokenList
	if err := c.call(r, http.MethodGet, "/api/v1/tokens", nil, &list); err != nil {
		c.apiFail(w, r, err)
		return
	}
	now := time.Now()
	for _, t := range list.Tokens {
		row := tokenRow{Token: t, Status: "active"}
		switch {
		case !t.Revoked.IsZero():
			row.Status = "revoked"
		case !t.Active(now):
			row.Status = "expired"
		default:
			row.RevokeURL = "/ui/tokens/revoke?" + url.Values{"name": {t.Name}}.Encode()
		}
		d.Tokens = append(d.Tokens, row)
	}
	d.Roles = []admin.Role{admin.RoleViewer, admin.RoleApprover, admin.RoleAdmin, admin.RolePuller}
	if d.Form.Role == "" {
		d.Form.Role = admin.RoleViewer
	}
	c.render(w, r, status, "tokens", "API tokens", d)
}

// createToken is POST /ui/tokens: name, role, expires → POST
// /api/v1/tokens. The answer is the page itself, never a redirect: the
// secret must not travel in a URL, and it is shown this once.
func (c *Console) createToken(w http.ResponseWriter, r *http.Request) {
	req := admin.TokenRequest{
		Name:    strings.TrimSpace(r.PostFormValue("name")),
		Role:    admin.Role(r.PostFormValue("role")),
		Expires: strings.TrimSpace(r.PostFormValue("expires")),
	}
	var created admin.TokenCreated
	if err := c.call(r, http.MethodPost, "/api/v1/tokens", req, &created); err != nil {
		var ae *admin.APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict) {
			c.renderTokens(w, r, ae.Status, tokensData{Error: ae.Message, Form: req})
			return
		}
		c.apiFail(w, r, err)
		return
	}
	c.log.Info("console: token created", "identity", sessionOf(r).id.Name, "token", created.Name, "role", created.Role)
	c.renderTokens(w, r, http.StatusOK, tokensData{New: &created})
}

// confirmRevokeToken is GET /ui/tokens/revoke?name=…: asks first.
func (c *Console) confirmRevokeToken(w http.ResponseWriter, r *http.Request) {
	var list admin.TokenList
	c.confirmRemove(w, r, "token", "name", "/api/v1/tokens", &list, func(name string) (string, removeData, bool) {
		i := slices.IndexFunc(list.Tokens, func(t state.Token) bool { return t.Name == name })
		if i < 0 {
			return "", removeData{}, false
		}
		t := list.Tokens[i]
		return "Revoke token " + name, removeData{
			Heading: "Revoke the token " + name + "?",
			Text: fmt.Sprintf("The token (role %s, created by %s) stops working at once, for the API, for pulls and for the console sessions signed in with it. This cannot be undone: a new token has a new secret.",
				t.Role, t.CreatedBy),
			Action: "/ui/tokens/revoke", Field: "name", Value: name, Button: "Revoke token", Cancel: "/ui/tokens",
		}, true
	})
}

// revokeToken is POST /ui/tokens/revoke → DELETE /api/v1/tokens/<name>.
func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request) {
	name, ok := c.removeNamed(w, r, "token", "name", func(name string) string { return "/api/v1/tokens/" + url.PathEscape(name) })
	if !ok {
		return
	}
	c.log.Info("console: token revoked", "identity", sessionOf(r).id.Name, "token", name)
	http.Redirect(w, r, "/ui/tokens?done=revoked", http.StatusSeeOther)
}

// settingsPage is GET /ui/settings: the running configuration, secrets
// redacted, as GET /api/v1/settings answers it (admins only: the API
// refuses anyone else, and the page shows its refusal).
func (c *Console) settingsPage(w http.ResponseWriter, r *http.Request) {
	resp := c.api.Invoke(r.Context(), sessionOf(r).identity(), http.MethodGet, "/api/v1/settings", nil, "")
	if err := resp.Err(); err != nil {
		c.apiFail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "settings", "Settings", string(resp.Body))
}
