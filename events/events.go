// Package events delivers Airlock's state-change events to webhooks.
//
// The events themselves are written by the state store into its outbox,
// in the transaction of the change (storage/state/outbox.go). A Deliverer
// runs one loop per configured endpoint: it reads the events after the
// endpoint's cursor, skips those its filters leave out, POSTs the others
// one at a time in outbox order, and advances the cursor after each
// success. A failure stops that endpoint (and only it) at the failing
// event, which is tried again after an exponential backoff
// (events.min_backoff doubling up to events.max_backoff, or a longer
// Retry-After), so an endpoint sees every event, in order, exactly as
// often as its acknowledgements were lost: at least once, with stable IDs.
// The cursor and the backoff are in the state store, so a restart resumes
// where the last process stopped.
//
// With several replicas on PostgreSQL, each endpoint's loop runs on the
// replica that holds the lease "events:<endpoint>"; another replica takes
// over when that lease expires.
package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// batchSize bounds the events read from the outbox at once.
const batchSize = 100

// idlePoll is how often an idle endpoint looks at the outbox even
// without a change notification (a missed notification costs this much).
const idlePoll = 5 * time.Second

var (
	delivered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_events_delivered_total",
		Help: "Events posted to a webhook endpoint and acknowledged with a 2xx.",
	}, []string{"endpoint"})
	failures = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_events_failures_total",
		Help: "Failed webhook delivery attempts (each is retried).",
	}, []string{"endpoint"})
	lost = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_events_lost_total",
		Help: "Events an endpoint never got because events.max_pending dropped them first.",
	}, []string{"endpoint"})
)

// Endpoint describes one configured webhook, for `airlock events`.
type Endpoint struct {
	Name string `json:"name"`
	// Host is the URL's host (the URL itself may hold a secret).
	Host         string   `json:"host"`
	Format       string   `json:"format"`
	Signed       bool     `json:"signed"`
	Types        []string `json:"types,omitempty"`
	Upstreams    []string `json:"upstreams,omitempty"`
	Repositories []string `json:"repositories,omitempty"`
}

// Deliverer posts the outbox's events to the configured webhooks.
type Deliverer struct {
	store     *state.Store
	cfg       config.Events
	endpoints []*endpoint
	log       *slog.Logger
	userAgent string
	now       func() time.Time
}

// endpoint is one webhook with its secret and HTTP client.
type endpoint struct {
	name   string
	hook   config.Webhook
	secret []byte
	client *http.Client
}

// Option configures a Deliverer.
type Option func(*Deliverer)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(d *Deliverer) { d.log = l } }

// WithUserAgent sets the User-Agent of webhook requests.
func WithUserAgent(ua string) Option { return func(d *Deliverer) { d.userAgent = ua } }

// New checks cfg (every secret_env variable must be set, every type
// pattern must match an event type Airlock emits) and returns a
// Deliverer. It does not configure the store's outbox: call
// store.ConfigureOutbox(d.Names(), cfg.MaxPending) before the pipeline
// starts, so no change goes unrecorded.
func New(store *state.Store, cfg config.Events, opts ...Option) (*Deliverer, error) {
	d := &Deliverer{store: store, cfg: cfg, log: slog.Default(), userAgent: "airlock", now: time.Now}
	for _, o := range opts {
		o(d)
	}
	known := state.EventTypes()
	for i, h := range cfg.Webhooks {
		field := fmt.Sprintf("events.webhooks[%d]", i)
		ep := &endpoint{name: h.EndpointName(), hook: h}
		if h.SecretEnv != "" {
			v := os.Getenv(h.SecretEnv)
			if v == "" {
				return nil, fmt.Errorf("%s.secret_env: environment variable %s is not set or empty", field, h.SecretEnv)
			}
			ep.secret = []byte(v)
		}
		for j, p := range h.Types {
			if !matchesAny(p, known) {
				return nil, fmt.Errorf("%s.types[%d]: %q matches no event type (%s)", field, j, p, strings.Join(known, ", "))
			}
		}
		ep.client = &http.Client{
			Timeout: h.Timeout,
			// A redirect is a failure to report, not a place to post
			// events (and their signature) to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		d.endpoints = append(d.endpoints, ep)
	}
	return d, nil
}

func matchesAny(pattern string, types []string) bool {
	for _, t := range types {
		if ok, _ := path.Match(pattern, t); ok {
			return true
		}
	}
	return false
}

// Names returns the endpoint names, for store.ConfigureOutbox.
func (d *Deliverer) Names() []string {
	out := make([]string, 0, len(d.endpoints))
	for _, ep := range d.endpoints {
		out = append(out, ep.name)
	}
	return out
}

// Endpoints describes the configured endpoints.
func (d *Deliverer) Endpoints() []Endpoint {
	out := make([]Endpoint, 0, len(d.endpoints))
	for _, ep := range d.endpoints {
		host := ""
		if u, err := url.Parse(ep.hook.URL); err == nil {
			host = u.Host
		}
		out = append(out, Endpoint{
			Name: ep.name, Host: host, Format: ep.hook.Format, Signed: ep.secret != nil,
			Types: ep.hook.Types, Upstreams: ep.hook.Upstreams, Repositories: ep.hook.Repositories,
		})
	}
	return out
}

// Run delivers events until ctx is done.
func (d *Deliverer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ep := range d.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &runner{d: d, ep: ep, lease: "events:" + ep.name}
			r.run(ctx)
		}()
	}
	wg.Wait()
}

// runner is the delivery loop of one endpoint.
type runner struct {
	d       *Deliverer
	ep      *endpoint
	lease   string
	held    bool
	renewed time.Time
}

func (r *runner) run(ctx context.Context) {
	defer func() {
		if r.held {
			if err := r.d.store.ReleaseLease(r.lease); err != nil {
				r.d.log.Warn("events: release lease", "endpoint", r.ep.name, "err", err)
			}
		}
	}()
	errDelay := r.d.cfg.MinBackoff
	for ctx.Err() == nil {
		changed := r.d.store.Changed()
		ok, until, err := r.hold()
		switch {
		case err != nil:
			r.d.log.Error("events: lease", "endpoint", r.ep.name, "err", err)
			sleep(ctx, errDelay)
			errDelay = min(2*errDelay, r.d.cfg.MaxBackoff)
			continue
		case !ok:
			// Another replica delivers to this endpoint.
			sleep(ctx, max(time.Until(until), 100*time.Millisecond))
			continue
		}
		st, evs, err := r.d.store.PendingEvents(r.ep.name, batchSize)
		if err != nil {
			r.d.log.Error("events: read outbox", "endpoint", r.ep.name, "err", err)
			sleep(ctx, errDelay)
			errDelay = min(2*errDelay, r.d.cfg.MaxBackoff)
			continue
		}
		errDelay = r.d.cfg.MinBackoff
		if len(evs) == 0 {
			r.wait(ctx, changed, idlePoll)
			continue
		}
		if st.Attempts > 0 {
			if wait := st.NextAttempt.Sub(r.d.now()); wait > 0 {
				// Waiting for a retry; short steps keep the lease.
				sleep(ctx, min(wait, r.d.store.LeaseDuration()/3))
				continue
			}
		}
		r.deliver(ctx, st, evs)
	}
}

// hold takes or renews the endpoint's lease when a third of it has passed.
func (r *runner) hold() (bool, time.Time, error) {
	if r.held && time.Since(r.renewed) < r.d.store.LeaseDuration()/3 {
		return true, time.Time{}, nil
	}
	ok, until, err := r.d.store.TryLease(r.lease)
	if err != nil {
		return false, until, err
	}
	r.held = ok
	if ok {
		r.renewed = time.Now()
	}
	return ok, until, nil
}

// wait waits for a state change, at most d.
func (r *runner) wait(ctx context.Context, changed <-chan struct{}, d time.Duration) {
	t := time.NewTimer(min(d, r.d.store.LeaseDuration()/3))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-changed:
	case <-t.C:
	}
}

// deliver posts evs in order, acknowledging each, until one fails.
func (r *runner) deliver(ctx context.Context, st state.EndpointState, evs []state.Event) {
	log := r.d.log
	through := st.Delivered
	var p state.Progress
	if evs[0].Seq > st.Delivered+1 {
		gap := evs[0].Seq - st.Delivered - 1
		p.Lost = gap
		lost.WithLabelValues(r.ep.name).Add(float64(gap))
		log.Error("events: events were dropped before this endpoint took them (events.max_pending)", "endpoint", r.ep.name, "lost", gap)
	}
	ack := func() bool {
		if through == st.Delivered && p == (state.Progress{}) {
			return true
		}
		if err := r.d.store.AckEvents(r.ep.name, through, p); err != nil {
			// Not acknowledged: the events go again (at least once).
			log.Error("events: record delivery", "endpoint", r.ep.name, "err", err)
			return false
		}
		st.Delivered, p = through, state.Progress{}
		return true
	}
	for _, ev := range evs {
		if ctx.Err() != nil {
			break
		}
		if ok, _, err := r.hold(); err != nil || !ok {
			break
		}
		if !r.ep.matches(ev) {
			through = ev.Seq
			p.Skipped++
			continue
		}
		retryAfter, err := r.ep.post(ctx, ev, r.d.cfg.Source, r.d.userAgent)
		if err != nil {
			ack()
			if ctx.Err() != nil {
				return // shutting down: not the receiver's failure
			}
			attempts := 1
			if st.FailingSeq == ev.Seq {
				attempts = st.Attempts + 1
			}
			delay := backoff(r.d.cfg.MinBackoff, r.d.cfg.MaxBackoff, attempts)
			if retryAfter > delay {
				delay = min(retryAfter, r.d.cfg.MaxBackoff)
			}
			failures.WithLabelValues(r.ep.name).Inc()
			next := r.d.now().Add(delay)
			if _, serr := r.d.store.EventFailed(r.ep.name, ev.Seq, err.Error(), next); serr != nil {
				log.Error("events: record failure", "endpoint", r.ep.name, "err", serr)
			}
			log.Warn("events: delivery failed; retrying", "endpoint", r.ep.name, "event", ev.ID, "type", ev.Type,
				"attempt", attempts, "retry_in", delay, "err", err)
			return
		}
		delivered.WithLabelValues(r.ep.name).Inc()
		through = ev.Seq
		p.Sent++
		if !ack() {
			return
		}
	}
	ack()
}

// backoff is min·2^(attempts-1), capped at max.
func backoff(minD, maxD time.Duration, attempts int) time.Duration {
	d := minD
	for i := 1; i < attempts && d < maxD; i++ {
		d *= 2
	}
	return min(d, maxD)
}

// matches applies the endpoint's filters: types to every event, upstreams
// and repositories to image events.
func (ep *endpoint) matches(ev state.Event) bool {
	if !ep.hook.MatchesType(ev.Type) {
		return false
	}
	if ev.Data.Upstream == "" && ev.Data.Repository == "" {
		return true
	}
	return ep.hook.MatchesImage(ev.Data.Upstream, ev.Data.Repository)
}

// statusError is a non-2xx answer.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("HTTP %d", e.code)
	}
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

// post sends one event; a non-2xx answer is an error, with the delay a
// Retry-After header asked for.
func (ep *endpoint) post(ctx context.Context, ev state.Event, source, userAgent string) (time.Duration, error) {
	var (
		body []byte
		err  error
		ct   = ContentTypeCloudEvents
	)
	if ep.hook.Format == config.FormatSlack {
		body, err = EncodeSlack(ev)
		ct = "application/json"
	} else {
		body, err = EncodeCloudEvent(ev, source)
	}
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.hook.URL, strings.NewReader(string(body)))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(EventIDHeader, ev.ID)
	req.Header.Set(EventTypeHeader, ev.Type)
	if ep.secret != nil {
		req.Header.Set(SignatureHeader, Sign(ep.secret, body))
	}
	resp, err := ep.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// The URL may hold a secret (a Slack webhook's path): name
			// the host only.
			err = fmt.Errorf("post to %s: %w", req.URL.Host, ue.Err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	var retryAfter time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	return retryAfter, &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(snippet))}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
