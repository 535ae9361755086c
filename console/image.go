package console

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/storage/state"
)

// Bounds of the image page. A hostile image can carry tens of thousands
// of packages; the page shows the first rows and says so (the SBOM
// download has everything).
const (
	// maxVulnRows bounds the rows of the vulnerability table.
	maxVulnRows = 2000
	// maxPackageRows bounds the rows of the SBOM package table.
	maxPackageRows = 2000
	// maxTimeline bounds the audit entries of the state timeline. The
	// image detail carries the newest 200; past that the page asks the
	// audit endpoint for up to this many.
	maxTimeline = 2000
	// detailAuditEntries is how many audit entries GET /api/v1/images/<IMAGE>
	// includes (admin.showImage).
	detailAuditEntries = 200
	// maxNoticeRunes bounds the ?msg= text shown in the notice.
	maxNoticeRunes = 500
	// maxQueryRunes bounds a search field.
	maxQueryRunes = 200
)

// severities are grype's severity names, most severe first.
var severities = []string{"Critical", "High", "Medium", "Low", "Negligible", "Unknown"}

// severityRank orders severities: Critical 6 … Unknown 1, anything else 0.
func severityRank(s string) int {
	for i, v := range severities {
		if strings.EqualFold(v, s) {
			return len(severities) - i
		}
	}
	return 0
}

// imageLink is the console URL of an image's page, escaped so that a name
// cannot add a query or fragment.
func imageLink(ref string) string {
	return (&url.URL{Path: "/ui/images/" + ref}).EscapedPath()
}

// imageData is the image page's data.
type imageData struct {
	// Ref is the canonical "<upstream>/<repository>@<digest>"; Requested
	// is the reference the URL named when it differs (a tag).
	Ref, Requested string
	// Link is the page's own path.
	Link   string
	Detail admin.ImageDetail
	// Image is Detail.Image.
	Image state.Image
	// Notice and NoticeMsg report a decision just made (?done=, ?msg=).
	Notice, NoticeMsg string

	Size, ContentSize string
	Severities        []sevCount
	BaseOS            []state.BaseOS
	ImageEOL          *state.ImageEOL

	Timeline       []state.Entry
	TimelineCapped bool
	TimelineErr    string

	Tags    []tagRow
	TagsErr string

	Platforms []platformRow

	// Report is nil when the image has no scan report (ReportErr says why).
	Report    *gate.Report
	ReportErr string
	Vulns     vulnTable
	Packages  packageTable
	SBOMs     []sbomLink

	Pulls    *admin.PullsReport
	PullsErr string

	// Actions are the decision links (rendered for approver+ only).
	Actions []actionLink
}

// sevCount is a number of vulnerabilities of one severity.
type sevCount struct {
	Severity string
	Count    int
}

// tagRow is one tag of the image and what a pull of it gets now.
type tagRow struct {
	Name string
	// Status is this digest's relation to the tag (admin.TagCurrent,
	// TagUpstream, TagOlder), "" when unknown.
	Status string
	// Serves is the digest a pull of the tag gets now, "" when none
	// (nothing approved, or refused after a revoke by tag).
	Serves     digest.Digest
	ServesLink string
	ServesThis bool
}

// platformRow is one platform manifest of an index (or the image itself).
type platformRow struct {
	Digest   digest.Digest
	Link     string
	Platform string
	Distro   string
	Packages int
	Matches  int
}

// sbomLink is a download of one platform's SBOM.
type sbomLink struct {
	Platform, Format, Href string
}

// actionLink is a decision link of #actions.
type actionLink struct {
	Action, Label, Href string
}

// sortHeader is a sortable column header: a button submitting the
// filter form with the sort that clicking it asks for (the script sorts
// in the page instead when it runs).
type sortHeader struct {
	Key, Label string
	// Value is the sort parameter the button sends: Key, or "-"+Key when
	// the table is sorted by Key ascending now.
	Value string
	// AriaSort is "ascending" or "descending" on the column sorted by.
	AriaSort string
}

// sortColumn is a sortable column of a table: its key in the sort
// parameter, its header's label, and how it orders two rows.
type sortColumn[T any] struct {
	key, label string
	cmp        func(a, b T) int
}

// sortRows sorts rows stably by the column that the sort parameter v
// names ("key", or "-key" for descending; anything else is def), ties
// broken by tie, and returns the parameter in effect and the columns'
// headers for it.
func sortRows[T any](rows []T, v, def string, cols []sortColumn[T], tie func(a, b T) int) (string, []sortHeader) {
	find := func(v string) (int, bool) {
		k, desc := strings.CutPrefix(v, "-")
		return slices.IndexFunc(cols, func(c sortColumn[T]) bool { return c.key == k }), desc
	}
	i, desc := find(v)
	if i < 0 {
		v = def
		i, desc = find(def)
	}
	by := cols[i].cmp
	slices.SortStableFunc(rows, func(a, b T) int {
		n := by(a, b)
		if desc {
			n = -n
		}
		return cmp.Or(n, tie(a, b))
	})
	headers := make([]sortHeader, 0, len(cols))
	for _, c := range cols {
		h := sortHeader{Key: c.key, Label: c.label, Value: c.key}
		switch v {
		case c.key:
			h.AriaSort, h.Value = "ascending", "-"+c.key
		case "-" + c.key:
			h.AriaSort = "descending"
		}
		headers = append(headers, h)
	}
	return v, headers
}

// vulnTable is the vulnerability table with its filters.
type vulnTable struct {
	Rows []vulnRow
	// Total is the number of matches before filtering, Matching after,
	// Shown the rows rendered (at most maxVulnRows).
	Total, Matching int
	Severity        string
	Fixed           string
	VEX             string
	Sort            string
	Headers         []sortHeader
	// SuppressedListed is how many VEX suppressions the record lists; at
	// state.maxRecordedSuppressed (50) there may be more.
	SuppressedListed int
	MultiPlatform    bool
	// Options are the severities the minimum-severity filter offers.
	Options []string
}

// Capped reports whether rows were left out.
func (t vulnTable) Capped() bool { return len(t.Rows) < t.Matching }

// vulnRow is one vulnerability in one package (merged across platforms).
type vulnRow struct {
	ID, Severity     string
	Rank             int
	Package, Version string
	Type             string
	FixedIn          string
	FixState         string
	Fixed            bool
	Namespace        string
	Description      string
	Platforms        string
	Suppressed       bool
	SuppressedBy     string
	platformList     []string
}

// packageTable is the SBOM package table with its search.
type packageTable struct {
	Rows          []packageRow
	Total         int
	Matching      int
	Query         string
	Sort          string
	Headers       []sortHeader
	MultiPlatform bool
}

// Capped reports whether rows were left out.
func (t packageTable) Capped() bool { return len(t.Rows) < t.Matching }

// packageRow is one package (merged across platforms).
type packageRow struct {
	Name, Version, Type string
	Licenses            []string
	PURL                string
	Platforms           string
	platformList        []string
}

// imagePage is GET /ui/images/<IMAGE>: everything known about one image.
// <IMAGE>/sbom downloads its SBOM. Every part is read through the admin
// API as the signed-in identity; a part the API refuses (not scanned,
// scanning disabled) says so in its section, while a refusal of the
// image itself (unknown: 404, bad name: 400) is the page's answer.
func (c *Console) imagePage(w http.ResponseWriter, r *http.Request, image string) {
	if image == "" {
		http.Redirect(w, r, "/ui/images", http.StatusSeeOther)
		return
	}
	if ref, ok := strings.CutSuffix(image, "/sbom"); ok {
		c.sbomDownload(w, r, ref)
		return
	}
	var d imageData
	if err := c.call(r, http.MethodGet, imageAPIPath(image, ""), nil, &d.Detail); err != nil {
		c.apiFail(w, r, err)
		return
	}
	img := d.Detail.Image
	d.Image, d.Ref = img, img.Ref.String()
	if image != d.Ref {
		d.Requested = image
	}
	d.Link = imageLink(d.Ref)
	d.Size, d.ContentSize = byteSize(img.Size), byteSize(img.ContentSize)
	if img.Scan != nil {
		for _, s := range severities {
			if n := img.Scan.Severities[s]; n > 0 {
				d.Severities = append(d.Severities, sevCount{s, n})
			}
		}
	}
	switch {
	case img.Policy != nil && (len(img.Policy.BaseOS) > 0 || img.Policy.ImageEOL != nil):
		d.BaseOS, d.ImageEOL = img.Policy.BaseOS, img.Policy.ImageEOL
	case img.Lifecycle != nil:
		d.BaseOS, d.ImageEOL = img.Lifecycle.BaseOS, img.Lifecycle.ImageEOL
	}
	q := r.URL.Query()
	if done := q.Get("done"); slices.Contains(actions, done) {
		d.Notice = fmt.Sprintf("%s recorded: state %s", done, img.State)
		d.NoticeMsg = clip(q.Get("msg"), maxNoticeRunes)
	}

	c.loadTimeline(r, &d)
	c.loadTags(r, &d)
	c.loadReport(r, &d, q)
	var pulls admin.PullsReport
	if err := c.call(r, http.MethodGet, imageAPIPath(d.Ref, "/pulls"), nil, &pulls); err != nil {
		d.PullsErr = c.partFailed(r, "pulls", err)
	} else {
		d.Pulls = &pulls
	}
	for _, a := range actions {
		d.Actions = append(d.Actions, actionLink{Action: a, Label: strings.ToUpper(a[:1]) + a[1:], Href: d.Link + "/" + a})
	}
	c.render(w, r, http.StatusOK, "image", d.Ref, d)
}

// partFailed is what a section says when the API refused its part of
// the page: the API's message (e.g. "… has not been scanned").
func (c *Console) partFailed(r *http.Request, part string, err error) string {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	c.log.Error("console: admin API call failed", "path", r.URL.Path, "part", part, "error", err)
	return "could not be read: " + err.Error()
}

// loadTimeline fills the state timeline: the detail's newest entries, or
// more from the audit endpoint when the detail was cut at its bound.
func (c *Console) loadTimeline(r *http.Request, d *imageData) {
	d.Timeline = d.Detail.Audit
	if len(d.Timeline) < detailAuditEntries {
		return
	}
	var out struct {
		Entries []state.Entry `json:"entries"`
	}
	q := url.Values{"image": {d.Ref}, "limit": {strconv.Itoa(maxTimeline)}}
	if err := c.call(r, http.MethodGet, "/api/v1/audit?"+q.Encode(), nil, &out); err != nil {
		d.TimelineErr = c.partFailed(r, "audit", err)
		d.TimelineCapped = true
		return
	}
	d.Timeline = out.Entries
	d.TimelineCapped = len(out.Entries) >= maxTimeline
}

// loadTags fills each tag's row: what the API's image list says of this
// digest for the tag (tag_status), and which approved digest of the
// repository a pull of the tag gets now (the one whose status is
// "current"). Only the approved list and this image's state are read,
// of this repository only (?repo=).
func (c *Console) loadTags(r *http.Request, d *imageData) {
	img := d.Image
	if len(img.Tags) == 0 {
		return
	}
	lists := []state.State{state.StateApproved}
	if img.State != state.StateApproved {
		lists = append(lists, img.State)
	}
	var own *admin.ListedImage
	serves := map[string]digest.Digest{}
	for _, st := range lists {
		var out struct {
			Images []admin.ListedImage `json:"images"`
		}
		q := url.Values{"state": {string(st)}, "repo": {img.Repo()}}
		if err := c.call(r, http.MethodGet, "/api/v1/images?"+q.Encode(), nil, &out); err != nil {
			d.TagsErr = c.partFailed(r, "tags", err)
			break
		}
		for i := range out.Images {
			li := &out.Images[i]
			if li.Ref == img.Ref {
				own = li
			}
			if li.Repo() != img.Repo() {
				continue
			}
			for tag, s := range li.TagStatus {
				if s == admin.TagCurrent {
					serves[tag] = li.Digest
				}
			}
		}
	}
	for _, t := range img.Tags {
		row := tagRow{Name: t, Serves: serves[t]}
		if own != nil {
			row.Status = own.TagStatus[t]
		}
		if row.Serves != "" {
			row.ServesThis = row.Serves == img.Digest
			row.ServesLink = imageLink(img.Repo() + "@" + string(row.Serves))
		}
		d.Tags = append(d.Tags, row)
	}
	slices.SortFunc(d.Tags, func(a, b tagRow) int { return cmp.Compare(a.Name, b.Name) })
}

// loadReport reads the scan report (GET …/vulnerabilities) and builds
// the platform, vulnerability and package tables with the filters of q.
func (c *Console) loadReport(r *http.Request, d *imageData, q url.Values) {
	img := d.Image
	var rep admin.VulnerabilityReport
	if err := c.call(r, http.MethodGet, imageAPIPath(d.Ref, "/vulnerabilities"), nil, &rep); err != nil {
		d.ReportErr = c.partFailed(r, "vulnerabilities", err)
	} else if rep.Report != nil {
		d.Report = rep.Report
	}
	// Platforms: the index's fetched children, named from the report.
	byManifest := map[digest.Digest]*gate.PlatformReport{}
	if d.Report != nil {
		for i := range d.Report.Platforms {
			byManifest[d.Report.Platforms[i].Manifest] = &d.Report.Platforms[i]
		}
	}
	children := img.Manifests
	if len(children) == 0 && d.Report != nil {
		for _, p := range d.Report.Platforms {
			children = append(children, p.Manifest)
		}
	}
	for _, m := range children {
		row := platformRow{Digest: m}
		if m != img.Digest {
			row.Link = imageLink(img.Repo() + "@" + string(m))
		}
		if p := byManifest[m]; p != nil {
			row.Platform, row.Distro, row.Packages, row.Matches = p.Platform, p.Distro, len(p.Packages), len(p.Matches)
		}
		d.Platforms = append(d.Platforms, row)
	}
	if d.Report == nil {
		return
	}
	for _, p := range d.Report.Platforms {
		name := cmp.Or(p.Platform, shortDigest(p.Manifest))
		qs := url.Values{"platform": {string(p.Manifest)}}
		for _, f := range []string{"spdx", "syft"} {
			qs.Set("format", f)
			d.SBOMs = append(d.SBOMs, sbomLink{Platform: name, Format: f, Href: d.Link + "/sbom?" + qs.Encode()})
		}
	}
	var suppressed []string
	if img.Policy != nil {
		suppressed = img.Policy.Suppressed
	}
	d.Vulns = buildVulns(d.Report, suppressed, q)
	d.Packages = buildPackages(d.Report, q)
}

// vulnColumns are the sortable columns of the vulnerability table.
var vulnColumns = []sortColumn[vulnRow]{
	{"id", "Vulnerability", func(a, b vulnRow) int { return cmp.Compare(a.ID, b.ID) }},
	{"severity", "Severity", func(a, b vulnRow) int { return cmp.Compare(a.Rank, b.Rank) }},
	{"package", "Package", func(a, b vulnRow) int { return cmp.Compare(a.Package, b.Package) }},
	{"version", "Version", func(a, b vulnRow) int { return cmp.Compare(a.Version, b.Version) }},
	{"fixed", "Fixed in", func(a, b vulnRow) int { return cmp.Compare(a.FixedIn, b.FixedIn) }},
	{"vex", "VEX", func(a, b vulnRow) int { return cmp.Compare(a.SuppressedBy, b.SuppressedBy) }},
}

// packageColumns are the sortable columns of the SBOM package table.
var packageColumns = []sortColumn[packageRow]{
	{"name", "Name", func(a, b packageRow) int { return cmp.Compare(a.Name, b.Name) }},
	{"version", "Version", func(a, b packageRow) int { return cmp.Compare(a.Version, b.Version) }},
	{"type", "Type", func(a, b packageRow) int { return cmp.Compare(a.Type, b.Type) }},
	{"licenses", "Licences", func(a, b packageRow) int {
		return cmp.Compare(strings.Join(a.Licenses, " "), strings.Join(b.Licenses, " "))
	}},
}

// buildVulns merges the report's matches across platforms, marks those a
// VEX statement suppressed (the policy decision lists them as "<id> in
// <package> <version>: <statement>"), then filters and sorts by q:
// severity (minimum), fixed (fixed|not-fixed), vex (affected|suppressed),
// vsort.
func buildVulns(rep *gate.Report, suppressed []string, q url.Values) vulnTable {
	t := vulnTable{
		Severity: q.Get("severity"), Fixed: q.Get("fixed"), VEX: q.Get("vex"),
		SuppressedListed: len(suppressed), MultiPlatform: len(rep.Platforms) > 1,
		Options: severities[:len(severities)-1],
	}
	if severityRank(t.Severity) == 0 {
		t.Severity = ""
	}
	if t.Fixed != "fixed" && t.Fixed != "not-fixed" {
		t.Fixed = ""
	}
	if t.VEX != "affected" && t.VEX != "suppressed" {
		t.VEX = ""
	}
	index := map[string]int{}
	var all []vulnRow
	for _, p := range rep.Platforms {
		pname := cmp.Or(p.Platform, shortDigest(p.Manifest))
		for _, m := range p.Matches {
			key := m.VulnID + "\x00" + m.Package + "\x00" + m.Version + "\x00" + m.Type
			if i, ok := index[key]; ok {
				if !slices.Contains(all[i].platformList, pname) {
					all[i].platformList = append(all[i].platformList, pname)
				}
				continue
			}
			row := vulnRow{
				ID: m.VulnID, Severity: m.Severity, Rank: severityRank(m.Severity),
				Package: m.Package, Version: m.Version, Type: m.Type,
				FixedIn: strings.Join(m.FixedIn, ", "), FixState: m.FixState,
				Fixed:     m.FixState == "fixed" || len(m.FixedIn) > 0,
				Namespace: m.Namespace, Description: m.Description,
				platformList: []string{pname},
			}
			prefix := m.VulnID + " in " + m.Package + " " + m.Version + ": "
			for _, s := range suppressed {
				if by, ok := strings.CutPrefix(s, prefix); ok {
					row.Suppressed, row.SuppressedBy = true, by
					break
				}
			}
			index[key] = len(all)
			all = append(all, row)
		}
	}
	t.Total = len(all)
	min := severityRank(t.Severity)
	rows := all[:0:0]
	for _, v := range all {
		switch {
		case min > 0 && v.Rank < min:
		case t.Fixed == "fixed" && !v.Fixed, t.Fixed == "not-fixed" && v.Fixed:
		case t.VEX == "suppressed" && !v.Suppressed, t.VEX == "affected" && v.Suppressed:
		default:
			v.Platforms = strings.Join(v.platformList, ", ")
			rows = append(rows, v)
		}
	}
	t.Sort, t.Headers = sortRows(rows, q.Get("vsort"), "-severity", vulnColumns,
		func(a, b vulnRow) int { return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Package, b.Package)) })
	t.Matching = len(rows)
	if len(rows) > maxVulnRows {
		rows = rows[:maxVulnRows]
	}
	t.Rows = rows
	return t
}

// buildPackages merges the report's packages across platforms, then
// searches (pkg: name, version, type, licence or purl, ignoring case)
// and sorts (psort) them.
func buildPackages(rep *gate.Report, q url.Values) packageTable {
	t := packageTable{Query: clip(strings.TrimSpace(q.Get("pkg")), maxQueryRunes), MultiPlatform: len(rep.Platforms) > 1}
	index := map[string]int{}
	var all []packageRow
	for _, p := range rep.Platforms {
		pname := cmp.Or(p.Platform, shortDigest(p.Manifest))
		for _, pkg := range p.Packages {
			key := pkg.Name + "\x00" + pkg.Version + "\x00" + pkg.Type
			if i, ok := index[key]; ok {
				row := &all[i]
				if !slices.Contains(row.platformList, pname) {
					row.platformList = append(row.platformList, pname)
				}
				for _, l := range pkg.Licenses {
					if !slices.Contains(row.Licenses, l) {
						row.Licenses = append(row.Licenses, l)
					}
				}
				continue
			}
			index[key] = len(all)
			all = append(all, packageRow{
				Name: pkg.Name, Version: pkg.Version, Type: pkg.Type, PURL: pkg.PURL,
				Licenses: slices.Clone(pkg.Licenses), platformList: []string{pname},
			})
		}
	}
	t.Total = len(all)
	needle := strings.ToLower(t.Query)
	rows := all[:0:0]
	for _, p := range all {
		if needle != "" && !strings.Contains(strings.ToLower(strings.Join(append([]string{p.Name, p.Version, p.Type, p.PURL}, p.Licenses...), "\x00")), needle) {
			continue
		}
		p.Platforms = strings.Join(p.platformList, ", ")
		rows = append(rows, p)
	}
	t.Sort, t.Headers = sortRows(rows, q.Get("psort"), "name", packageColumns,
		func(a, b packageRow) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
		})
	t.Matching = len(rows)
	if len(rows) > maxPackageRows {
		rows = rows[:maxPackageRows]
	}
	t.Rows = rows
	return t
}

// unsafeFileName matches what may not appear in a download's file name.
var unsafeFileName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sbomDownload is GET /ui/images/<IMAGE>/sbom?format=spdx|syft&platform=…:
// the admin API's SBOM of the image as a file to save. It is served as an
// attachment of type application/json, never rendered as a page: the
// SBOM's strings come from the image.
func (c *Console) sbomDownload(w http.ResponseWriter, r *http.Request, image string) {
	q := url.Values{}
	for _, k := range []string{"format", "platform"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	var raw json.RawMessage
	if err := c.call(r, http.MethodGet, imageAPIPath(image, "/sbom")+"?"+q.Encode(), nil, &raw); err != nil {
		c.apiFail(w, r, err)
		return
	}
	format := cmp.Or(q.Get("format"), "spdx")
	name := unsafeFileName.ReplaceAllString(image, "_")
	if len(name) > 120 {
		name = name[:120]
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s.json"`, name, unsafeFileName.ReplaceAllString(format, "_")))
	_, _ = w.Write(raw)
}

// byteSize is n bytes for people: "12.3 MiB"; "" for 0.
func byteSize(n int64) string {
	if n <= 0 {
		return ""
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

// shortDigest is the first 12 hex digits of d, for labels.
func shortDigest(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// clip cuts s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
