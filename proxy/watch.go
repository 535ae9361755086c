package proxy

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// recheckInterval is the least time between two re-checks of one
// response's decision: a herd of unrelated state changes must not turn
// every download in flight into a stream of store reads, and a revoke
// still cuts within a fraction of a second.
const recheckInterval = 100 * time.Millisecond

var cuts = promauto.NewCounter(prometheus.CounterOpts{
	Name: "airlock_responses_cut_total",
	Help: "Responses cut in flight because their content stopped being servable (a revoke).",
})

// watch keeps checking, while a response is written, that its content is
// still servable: after every committed state change (at most once per
// recheckInterval) it asks still again, and when the answer is no it
// sets the connection's write deadline to now. A write or sendfile in
// progress then fails within one socket buffer, the handler returns, and
// the client sees a short body: a revoke ends downloads already running,
// not only the next request.
//
// changed must have been taken from the store before the decision that
// allowed the response, so that no change between the decision and the
// watch is missed. The returned stop must be called before the handler
// returns: after it the connection (which keep-alive reuses) is never
// touched.
func (s *Server) watch(w http.ResponseWriter, changed <-chan struct{}, what string, still func() bool) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
	)
	done := make(chan struct{})
	rc := http.NewResponseController(w)
	go func() {
		last := time.Time{}
		for {
			select {
			case <-done:
				return
			case <-changed:
			}
			if wait := recheckInterval - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-done:
					t.Stop()
					return
				case <-t.C:
				}
			}
			changed, last = s.store.Changed(), time.Now()
			if still() {
				continue
			}
			mu.Lock()
			if !stopped {
				_ = rc.SetWriteDeadline(time.Now())
				cuts.Inc()
				s.log.Warn("response cut: content no longer servable", "content", what)
			}
			mu.Unlock()
			return
		}
	}()
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		close(done)
	}
}
