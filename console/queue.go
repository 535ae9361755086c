package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// queueStates are the states that wait for a person: the review queue.
// Approved images with a flag (a rescan failed under on_rescan_fail: flag)
// join them (filter value flaggedFilter).
var queueStates = []state.State{state.StateAwaitingApproval, state.StateRejected, state.StateFailed}

// flaggedFilter is the state filter's value for approved images with a
// flag: not a state of its own, but a reason to look.
const flaggedFilter = "flagged"

// severityLevels are the severities the queue shows counts of and filters
// by, highest first, as state.ScanSummary.Severities spells them.
var severityLevels = []string{
	config.SeverityCritical, config.SeverityHigh, config.SeverityMedium, config.SeverityLow, config.SeverityNegligible,
}

// maxQueryBytes bounds the search text: it is matched against every row.
const maxQueryBytes = 256

// queueFilter is the review queue's filter form (GET, so a filtered queue
// is a link and works without JavaScript). Zero values filter nothing.
type queueFilter struct {
	// State is a queue state or flaggedFilter.
	State string
	// Upstream is an upstream name.
	Upstream string
	// Q is searched for, case-insensitively, in the image's name, its
	// tags, its reason and its flag.
	Q string
	// Severity keeps images with at least one match of this severity or
	// a higher one.
	Severity string
}

// readQueueFilter reads the filter form; unknown values are refused so a
// mistyped link does not silently show the whole queue.
func readQueueFilter(q url.Values) (queueFilter, string) {
	f := queueFilter{
		State:    q.Get("state"),
		Upstream: q.Get("upstream"),
		Q:        strings.TrimSpace(q.Get("q")),
		Severity: q.Get("severity"),
	}
	switch {
	case f.State != "" && f.State != flaggedFilter && !slices.Contains(queueStates, state.State(f.State)):
		return f, "unknown state filter; choose one from the list"
	case f.Severity != "" && !slices.Contains(severityLevels, f.Severity):
		return f, "unknown severity filter; choose one from the list"
	case len(f.Q) > maxQueryBytes:
		return f, "the search text is too long"
	}
	return f, ""
}

// match reports whether row passes the filter (the state filter was
// applied when the rows were read).
func (f queueFilter) match(row queueRow) bool {
	if f.Upstream != "" && row.Upstream != f.Upstream {
		return false
	}
	if f.Severity != "" && !row.hasSeverityAtLeast(f.Severity) {
		return false
	}
	if f.Q != "" {
		q := strings.ToLower(f.Q)
		hay := []string{row.Ref.String(), row.Reason, row.Flag}
		hay = append(hay, row.Tags...)
		if !slices.ContainsFunc(hay, func(s string) bool { return strings.Contains(strings.ToLower(s), q) }) {
			return false
		}
	}
	return true
}

// states is which states to read for the filter: approved (to find the
// flagged ones) only when the filter may show them.
func (f queueFilter) states() []state.State {
	switch {
	case f.State == flaggedFilter:
		return []state.State{state.StateApproved}
	case f.State != "":
		return []state.State{state.State(f.State)}
	}
	return append(slices.Clone(queueStates), state.StateApproved)
}

// queueRow is one image of the queue.
type queueRow struct {
	admin.ListedImage
	// Severities are the scan's counts by severity that are not zero,
	// highest first; nil when the image was not scanned (Scan is nil) or
	// has no known vulnerability.
	Severities []severityCount
}

// severityCount is the number of matches of one severity.
type severityCount struct {
	Severity string
	Count    int
}

func (r queueRow) hasSeverityAtLeast(min string) bool {
	if r.Scan == nil {
		return false
	}
	floor := config.SeverityRank(min)
	for sev, n := range r.Scan.Severities {
		if n > 0 && config.SeverityRank(sev) >= floor {
			return true
		}
	}
	return false
}

// newQueueRow adds the severity counts to img: those not zero, highest
// severity first, "unknown" last.
func newQueueRow(img admin.ListedImage) queueRow {
	row := queueRow{ListedImage: img}
	if img.Scan != nil {
		for _, sev := range append(slices.Clone(severityLevels), "unknown") {
			if n := img.Scan.Severities[sev]; n > 0 {
				row.Severities = append(row.Severities, severityCount{Severity: sev, Count: n})
			}
		}
	}
	return row
}

// queueData is the review queue page's data.
type queueData struct {
	Images []queueRow
	// Filter is the filter applied; Error says why it was refused.
	Filter queueFilter
	Error  string
	// Total is how many images wait in the states read, before the
	// upstream, search and severity filters.
	Total int
	// Options of the filter form's selects.
	States     []string
	Upstreams  []string
	Severities []string
}

// queue is the review queue: every image a person has to look at, oldest
// state change first (it has waited longest).
//
// It reads GET /api/v1/images?state=X once per state the filter selects
// (flagged ones: ?state=approved&flagged=true, so that the API works out
// tag status for the flagged images only, not for every approved one):
// the API filters by state, but state.Store.Images has no index by state,
// so each call walks every image record (BenchmarkPages). The state
// filter therefore skips the approved read unless it can show flagged
// images.
func (c *Console) queue(w http.ResponseWriter, r *http.Request) {
	f, ferr := readQueueFilter(r.URL.Query())
	d := queueData{
		Filter: f, Error: ferr, Severities: severityLevels,
		States: []string{string(state.StateAwaitingApproval), string(state.StateRejected), string(state.StateFailed), flaggedFilter},
	}
	if ferr != "" {
		c.render(w, r, http.StatusBadRequest, "queue", "Review queue", d)
		return
	}
	upstreams := map[string]bool{}
	for _, st := range f.states() {
		var out struct {
			Images []admin.ListedImage `json:"images"`
		}
		q := url.Values{"state": {string(st)}}
		if st == state.StateApproved {
			q.Set("flagged", "true")
		}
		if err := c.call(r, http.MethodGet, "/api/v1/images?"+q.Encode(), nil, &out); err != nil {
			c.apiFail(w, r, err)
			return
		}
		for _, img := range out.Images {
			d.Total++
			upstreams[img.Upstream] = true
			if row := newQueueRow(img); f.match(row) {
				d.Images = append(d.Images, row)
			}
		}
	}
	if f.Upstream != "" {
		// Keep the chosen upstream selectable even when nothing of it waits.
		upstreams[f.Upstream] = true
	}
	for u := range upstreams {
		d.Upstreams = append(d.Upstreams, u)
	}
	slices.Sort(d.Upstreams)
	slices.SortStableFunc(d.Images, func(a, b queueRow) int { return a.Updated.Compare(b.Updated) })
	c.render(w, r, http.StatusOK, "queue", "Review queue", d)
}

// apiFail answers with the admin API's refusal (its status and message)
// or, for any other error, 500.
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		c.fail(w, r, ae.Status, ae.Message)
		return
	}
	c.log.Error("console: admin API call failed", "path", r.URL.Path, "error", err)
	c.fail(w, r, http.StatusInternalServerError, err.Error())
}
