package console

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// queueStates are the states that wait for a person: the review queue.
// Approved images with a flag (a rescan failed under on_rescan_fail: flag)
// join them.
var queueStates = []state.State{state.StateAwaitingApproval, state.StateRejected, state.StateFailed}

// queueData is the review queue page's data.
type queueData struct {
	Images []admin.ListedImage
}

// queue is the review queue: every image a person has to look at.
func (c *Console) queue(w http.ResponseWriter, r *http.Request) {
	var d queueData
	for _, st := range append(queueStates, state.StateApproved) {
		var out struct {
			Images []admin.ListedImage `json:"images"`
		}
		if err := c.call(r, http.MethodGet, "/api/v1/images?state="+url.QueryEscape(string(st)), nil, &out); err != nil {
			c.apiFail(w, r, err)
			return
		}
		for _, img := range out.Images {
			if st == state.StateApproved && img.Flag == "" {
				continue
			}
			d.Images = append(d.Images, img)
		}
	}
	slices.SortStableFunc(d.Images, func(a, b admin.ListedImage) int { return a.Updated.Compare(b.Updated) })
	c.render(w, r, http.StatusOK, "queue", "Review queue", d)
}

// apiFail answers with the admin API's refusal (its status and message)
// or, for any other error, 500.
func (c *Console) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	if ae, ok := err.(*admin.APIError); ok {
		c.fail(w, r, ae.Status, ae.Message)
		return
	}
	c.log.Error("console: admin API call failed", "path", r.URL.Path, "error", err)
	c.fail(w, r, http.StatusInternalServerError, err.Error())
}
