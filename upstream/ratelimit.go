package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/airlockproxy/airlock/config"
)

// ErrRateLimited means the upstream asked Airlock to slow down (HTTP 429
// with Retry-After) and the caller cannot wait that long: its context ends
// before the upstream's cool-down does.
var ErrRateLimited = errors.New("upstream rate limit")

const (
	// MaxRetryAfter caps how long a 429's Retry-After makes an upstream
	// cool down: an upstream (an adversary, or a misconfigured one) that
	// asks for a day must not stop Airlock for a day.
	MaxRetryAfter = 5 * time.Minute
	// max429Retries is how many times one request is sent again after a
	// 429 before the 429 is returned to the caller.
	max429Retries = 3
	// default429Wait is the cool-down after a 429 without a usable
	// Retry-After; it doubles with each further 429 of the same request.
	default429Wait = time.Second
	// maxTagListBytes bounds one page of a tags list read from an
	// upstream: a million tags in one answer is refused, not buffered.
	maxTagListBytes = 4 << 20
)

var (
	throttled = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_upstream_throttled_total",
		Help: "HTTP 429 (Too Many Requests) answers received from an upstream.",
	}, []string{"upstream"})
	waited = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_upstream_wait_seconds_total",
		Help: "Time upstream requests waited for the upstream's rate limit or a 429 cool-down.",
	}, []string{"upstream", "reason"})
)

// politeTransport is the innermost transport of an upstream: every HTTP
// request to it (tag resolution, manifest and blob fetches, signatures,
// referrers, tag listing, token exchanges) passes here, so the upstream's
// rate_limit and its 429 answers apply to all of them.
//
// A 429 starts a cool-down of the whole upstream until its Retry-After
// (seconds or an HTTP date; capped at MaxRetryAfter): no request of any
// caller is sent before it ends. The request that met the 429 is sent
// again after the cool-down, up to max429Retries times, when its context
// allows waiting that long; otherwise the 429 is returned at once (a
// client pull then gets the last approved digest instead of waiting). A
// request that arrives during a cool-down longer than its context allows
// fails at once with ErrRateLimited.
type politeTransport struct {
	base    http.RoundTripper
	name    string
	limiter *rate.Limiter // nil: no rate limit
	now     func() time.Time

	mu        sync.Mutex
	coolUntil time.Time
}

// newPoliteTransport wraps base with upstream name's rate limit.
func newPoliteTransport(name string, rl config.RateLimit, base http.RoundTripper) *politeTransport {
	t := &politeTransport{base: base, name: name, now: time.Now}
	if rl.RequestsPerSecond > 0 {
		burst := rl.Burst
		if burst < 1 {
			burst = 1
		}
		t.limiter = rate.NewLimiter(rate.Limit(rl.RequestsPerSecond), burst)
	}
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *politeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		if err := t.waitCoolDown(ctx); err != nil {
			return nil, err
		}
		if t.limiter != nil {
			start := t.now()
			if err := t.limiter.Wait(ctx); err != nil {
				return nil, fmt.Errorf("upstream %s: rate_limit: %w", t.name, err)
			}
			if d := t.now().Sub(start); d > time.Millisecond {
				waited.WithLabelValues(t.name, "rate_limit").Add(d.Seconds())
			}
		}
		r := req
		if attempt > 0 {
			var err error
			if r, err = rewind(req); err != nil {
				return nil, err
			}
		}
		resp, err := t.base.RoundTrip(r)
		if err != nil {
			return resp, err
		}
		if resp.StatusCode == http.StatusOK && strings.HasSuffix(r.URL.Path, "/tags/list") {
			resp.Body = &cappedBody{rc: resp.Body, left: maxTagListBytes}
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			return resp, nil
		}
		throttled.WithLabelValues(t.name).Inc()
		wait := retryAfter(resp.Header.Get("Retry-After"), t.now(), attempt)
		until := t.coolDown(wait)
		if attempt >= max429Retries || !replayable(req) || !fits(ctx, until) {
			return resp, nil
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}
}

// waitCoolDown waits until the upstream's cool-down ends, or fails at once
// with ErrRateLimited when ctx would end first.
func (t *politeTransport) waitCoolDown(ctx context.Context) error {
	t.mu.Lock()
	until := t.coolUntil
	t.mu.Unlock()
	d := until.Sub(t.now())
	if d <= 0 {
		return nil
	}
	if !fits(ctx, until) {
		return fmt.Errorf("upstream %s asked to slow down (429) until %s: %w", t.name, until.UTC().Format(time.RFC3339), ErrRateLimited)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("upstream %s: waiting for its 429 cool-down: %w", t.name, ctx.Err())
	case <-timer.C:
		waited.WithLabelValues(t.name, "429").Add(d.Seconds())
		return nil
	}
}

// coolDown extends the upstream's cool-down to now+wait and returns its end.
func (t *politeTransport) coolDown(wait time.Duration) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until := t.now().Add(wait); until.After(t.coolUntil) {
		t.coolUntil = until
	}
	return t.coolUntil
}

// CoolingDown reports until when the upstream asked not to be sent
// requests (zero when it did not, or that time has passed).
func (t *politeTransport) CoolingDown() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.coolUntil.After(t.now()) {
		return t.coolUntil
	}
	return time.Time{}
}

// fits reports whether ctx lasts until until.
func fits(ctx context.Context, until time.Time) bool {
	if ctx.Err() != nil {
		return false
	}
	dl, ok := ctx.Deadline()
	return !ok || !dl.Before(until)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date
// (RFC 9110 10.2.3). A missing, malformed or past value means
// default429Wait doubled per earlier 429 of the same request; every value
// is capped at MaxRetryAfter.
func retryAfter(v string, now time.Time, attempt int) time.Duration {
	v = strings.TrimSpace(v)
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	}
	if d <= 0 {
		d = default429Wait << min(attempt, 8)
	}
	return min(d, MaxRetryAfter)
}

// replayable reports whether req can be sent again: it has no body, or
// one that can be produced again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewind returns a copy of req to send again, with a fresh body.
func rewind(req *http.Request) (*http.Request, error) {
	r := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("resend %s %s: %w", req.Method, req.URL.Redacted(), err)
		}
		r.Body = body
	}
	return r, nil
}

// errTagListTooLarge is returned while reading a tags list page over maxTagListBytes.
var errTagListTooLarge = fmt.Errorf("tags list page exceeds %d bytes", maxTagListBytes)

// cappedBody fails a read past left bytes.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTagListTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }
