package upstream

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// retryStatusCodes are the answers go-containerregistry retries with its
// own backoff: its defaults without 429, which politeTransport handles
// with the upstream's Retry-After instead of a fixed 1s, 3s.
var retryStatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
	499, // nginx: client closed request
	522, // Cloudflare: connection timed out
}

// TagList is the answer of Registry.Tags.
type TagList struct {
	// Tags are the tags listed, in the upstream's order, at most the max
	// asked for.
	Tags []string
	// Truncated says the upstream has more tags than were read.
	Truncated bool
}

// Tags lists repo's tags upstream (GET /v2/<repo>/tags/list, following
// its pagination), reading at most max tags: an upstream listing a million
// tags costs one page, not a million entries. Each page's body is bounded
// too (maxTagListBytes).
func (r *Registry) Tags(ctx context.Context, repo string, max int) (TagList, error) {
	what := fmt.Sprintf("list tags of %s/%s", r.cfg.Name, repo)
	var out TagList
	lister, err := r.puller.Lister(ctx, r.Repository(repo))
	if err != nil {
		return out, classify(what, err)
	}
	for lister.HasNext() {
		if len(out.Tags) >= max {
			out.Truncated = true
			break
		}
		page, err := lister.Next(ctx)
		if err != nil {
			return out, classify(what, err)
		}
		for _, t := range page.Tags {
			if len(out.Tags) >= max {
				out.Truncated = true
				break
			}
			out.Tags = append(out.Tags, t)
		}
	}
	return out, nil
}

// CoolingDown returns until when the upstream asked (with a 429) not to be
// sent requests; the zero time when it did not or that time has passed.
func (r *Registry) CoolingDown() time.Time { return r.polite.CoolingDown() }
