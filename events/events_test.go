package events

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/airlockproxy/airlock/storage/state"
)

// The tests run on bbolt by default and on PostgreSQL with
// AIRLOCK_TEST_STATE=postgres, like storage/state's.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newWhere(t *testing.T) string {
	t.Helper()
	if os.Getenv("AIRLOCK_TEST_STATE") == "postgres" {
		return pgtest.Shared(t).NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "airlock.db")
}

// open opens the store at where (from newWhere), closed at cleanup.
func open(t *testing.T, where string) *state.Store {
	t.Helper()
	var (
		s   *state.Store
		err error
	)
	if os.Getenv("AIRLOCK_TEST_STATE") == "postgres" {
		db, derr := kv.OpenPostgres(context.Background(), where)
		if derr != nil {
			t.Fatal(derr)
		}
		s, err = state.New(db, state.WithLease(3*time.Second))
	} else {
		s, err = state.Open(where, state.WithLease(3*time.Second))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const secret = "s3cret-for-tests"

// receiver is a webhook endpoint that records what it accepts and can be
// told to fail.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	got      []received
	failing  bool
	requests int
}

type received struct {
	header http.Header
	body   []byte
	event  CloudEvent
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rec := received{header: req.Header.Clone(), body: body}
		_ = json.Unmarshal(body, &rec.event)
		r.got = append(r.got, rec)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFailing(v bool) {
	r.mu.Lock()
	r.failing = v
	r.mu.Unlock()
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *receiver) waitN(n int, timeout time.Duration) []received {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.received()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver got %d events, want %d", len(got), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func eventsConfig(hooks ...config.Webhook) config.Events {
	c := config.Default().Events
	c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	c.Webhooks = hooks
	for i := range c.Webhooks {
		if c.Webhooks[i].Format == "" {
			c.Webhooks[i].Format = config.FormatCloudEvents
		}
		if c.Webhooks[i].Timeout == 0 {
			c.Webhooks[i].Timeout = 2 * time.Second
		}
	}
	return c
}

// start configures the outbox and runs a Deliverer until the test ends
// (or the returned stop is called).
func start(t *testing.T, s *state.Store, cfg config.Events) (*Deliverer, func()) {
	t.Helper()
	t.Setenv("EVENTS_TEST_SECRET", secret)
	d, err := New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigureOutbox(d.Names(), cfg.MaxPending); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return d, sync.OnceFunc(stop)
}

func imageRef(repo, content string) state.Ref {
	return state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.FromString(content)}
}

// move takes ref through states (requesting it first if needed).
func move(t *testing.T, s *state.Store, ref state.Ref, states ...state.State) {
	t.Helper()
	if _, err := s.Image(ref); err != nil {
		if _, _, err := s.Request(ref, "pull"); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range states {
		if _, err := s.Transition(ref, state.Change{To: st, Actor: "test", Action: "set", Reason: "to " + string(st)}); err != nil {
			t.Fatal(err)
		}
	}
}

func typesOf(got []received) []string {
	var out []string
	for _, r := range got {
		out = append(out, r.event.Type+" "+r.event.Subject)
	}
	return out
}

// TestDeliverInOrderSigned: every state change reaches the receiver once,
// in order, as a signed CloudEvents 1.0 structured request.
func TestDeliverInOrderSigned(t *testing.T) {
	s := open(t, newWhere(t))
	rcv := newReceiver(t)
	start(t, s, eventsConfig(config.Webhook{URL: rcv.srv.URL + "/hook", SecretEnv: "EVENTS_TEST_SECRET"}))
	a, b := imageRef("library/a", "a"), imageRef("team/b", "b")
	move(t, s, a, state.StateFetching, state.StateAwaitingApproval, state.StateApproved)
	move(t, s, b, state.StateFetching, state.StateRejected)
	move(t, s, a, state.StateRevoked)
	if _, _, err := s.EmitEvent(state.EventVulnDBUpdated, "", state.EventData{DB: &state.EventDB{SchemaVersion: "v6.1.0"}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"dev.airlock.image.awaiting-approval " + a.String(), "dev.airlock.image.approved " + a.String(),
		"dev.airlock.image.rejected " + b.String(), "dev.airlock.image.revoked " + a.String(),
		"dev.airlock.vulndb.updated ",
	}
	got := rcv.waitN(len(want), 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	got = rcv.received()
	if !slices.Equal(typesOf(got), want) {
		t.Fatalf("received:\n %q\nwant\n %q", typesOf(got), want)
	}
	for i, r := range got {
		if !Verify([]byte(secret), r.body, r.header.Get(SignatureHeader)) {
			t.Errorf("event %d: signature %q does not verify", i, r.header.Get(SignatureHeader))
		}
		if Verify([]byte("wrong"), r.body, r.header.Get(SignatureHeader)) {
			t.Errorf("event %d verifies with the wrong secret", i)
		}
		e := r.event
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
			t.Errorf("event %d: content type %q", i, ct)
		}
		if e.SpecVersion != "1.0" || e.ID == "" || e.Source != "/airlock" || e.DataContentType != "application/json" || e.Time.IsZero() || e.AirlockSeq != uint64(i+1) {
			t.Errorf("event %d: %+v", i, e)
		}
		if r.header.Get(EventIDHeader) != e.ID || r.header.Get(EventTypeHeader) != e.Type {
			t.Errorf("event %d: headers %v", i, r.header)
		}
	}
	if d := got[3].event.Data; d.State != state.StateRevoked || d.From != state.StateApproved || d.Repository != "library/a" || d.Digest != a.Digest || d.Reason != "to revoked" {
		t.Errorf("revoked data: %+v", d)
	}
	// Delivered events leave the outbox; the endpoint shows its progress.
	waitFor(t, "outbox pruned", func() bool {
		st, err := s.Outbox(10)
		return err == nil && st.Kept == 0 && len(st.Endpoints) == 1 && st.Endpoints[0].Sent == 5 && st.Endpoints[0].Pending == 0
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRetryKeepsOrder: a receiver that fails gets every event once it
// recovers, in order, none lost; failures are on record with a backoff
// that grows; an endpoint that fails does not hold another one back.
func TestRetryKeepsOrder(t *testing.T) {
	s := open(t, newWhere(t))
	down, ok := newReceiver(t), newReceiver(t)
	down.setFailing(true)
	cfg := eventsConfig(
		config.Webhook{Name: "down", URL: down.srv.URL, SecretEnv: "EVENTS_TEST_SECRET"},
		config.Webhook{Name: "ok", URL: ok.srv.URL, SecretEnv: "EVENTS_TEST_SECRET"},
	)
	start(t, s, cfg)
	var want []string
	for i := 0; i < 5; i++ {
		r := imageRef("library/retry", string(rune('a'+i)))
		move(t, s, r, state.StateAwaitingApproval, state.StateApproved)
		want = append(want, "dev.airlock.image.awaiting-approval "+r.String(), "dev.airlock.image.approved "+r.String())
	}
	if got := ok.waitN(len(want), 10*time.Second); !slices.Equal(typesOf(got), want) {
		t.Fatalf("healthy endpoint got %q", typesOf(got))
	}
	var failing state.EndpointStatus
	waitFor(t, "failures recorded", func() bool {
		st, _ := s.Outbox(0)
		for _, e := range st.Endpoints {
			if e.Name == "down" && e.Attempts >= 3 {
				failing = e
				return true
			}
		}
		return false
	})
	if failing.FailingSeq != 1 || !strings.Contains(failing.LastError, "503") || failing.NextAttempt.IsZero() || failing.Pending != uint64(len(want)) {
		t.Fatalf("failing endpoint: %+v", failing)
	}
	down.setFailing(false)
	got := down.waitN(len(want), 10*time.Second)
	if !slices.Equal(typesOf(got), want) {
		t.Fatalf("recovered endpoint got %q", typesOf(got))
	}
	if backoff(time.Second, 5*time.Minute, 1) != time.Second || backoff(time.Second, 5*time.Minute, 4) != 8*time.Second || backoff(time.Second, 5*time.Minute, 40) != 5*time.Minute {
		t.Error("backoff is not min·2^(n-1) capped at max")
	}
}

// TestRestartDeliversEverything: the receiver is down, Airlock stops and a
// new process opens the same store; once the receiver is back every
// event arrives, in order, duplicates only with the same ID.
func TestRestartDeliversEverything(t *testing.T) {
	where := newWhere(t)
	rcv := newReceiver(t)
	cfg := eventsConfig(config.Webhook{URL: rcv.srv.URL, SecretEnv: "EVENTS_TEST_SECRET"})
	s1 := open(t, where)
	_, stop1 := start(t, s1, cfg)
	a := imageRef("library/restart", "a")
	move(t, s1, a, state.StateAwaitingApproval)
	rcv.waitN(1, 10*time.Second)
	rcv.setFailing(true)
	move(t, s1, a, state.StateApproved, state.StateRevoked)
	waitFor(t, "a failed attempt", func() bool { rcv.mu.Lock(); defer rcv.mu.Unlock(); return rcv.requests >= 2 })
	stop1()
	s1.Close()

	s2 := open(t, where)
	_, _ = start(t, s2, cfg)
	move(t, s2, a, state.StatePending, state.StateRejected)
	rcv.setFailing(false)
	want := []string{"awaiting-approval", "approved", "revoked", "rejected"}
	got := rcv.waitN(len(want), 10*time.Second)
	var types []string
	ids := map[string]string{}
	for _, r := range got {
		if prev, dup := ids[r.event.ID]; dup && prev != r.event.Type {
			t.Fatalf("ID %s reused for another event", r.event.ID)
		}
		if _, dup := ids[r.event.ID]; !dup {
			types = append(types, strings.TrimPrefix(r.event.Type, state.EventImagePrefix))
		}
		ids[r.event.ID] = r.event.Type
	}
	if !slices.Equal(types, want) {
		t.Fatalf("after restart the receiver got %q, want %q", types, want)
	}
}

// TestSlackFormat: format slack posts {"text": ...}, signed when a secret
// is set.
func TestSlackFormat(t *testing.T) {
	s := open(t, newWhere(t))
	rcv := newReceiver(t)
	start(t, s, eventsConfig(config.Webhook{URL: rcv.srv.URL, Format: config.FormatSlack, SecretEnv: "EVENTS_TEST_SECRET"}))
	a := imageRef("library/slack", "a")
	if _, _, err := s.Request(a, "pull"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(a, state.Change{To: state.StateRevoked, Actor: "admin:alice", Action: "revoke", Reason: "CVE-2026-1"}); err != nil {
		t.Fatal(err)
	}
	got := rcv.waitN(1, 10*time.Second)[0]
	var body map[string]string
	if err := json.Unmarshal(got.body, &body); err != nil || len(body) != 1 {
		t.Fatalf("slack body %s: %v", got.body, err)
	}
	text := body["text"]
	for _, want := range []string{a.String(), "*revoked*", "CVE-2026-1", "admin:alice"} {
		if !strings.Contains(text, want) {
			t.Errorf("slack text %q lacks %q", text, want)
		}
	}
	if !Verify([]byte(secret), got.body, got.header.Get(SignatureHeader)) || got.header.Get(EventIDHeader) == "" {
		t.Errorf("slack request not signed or without an event ID: %v", got.header)
	}
}

// TestFilters: types (exact and glob), upstreams and repository globs
// choose what an endpoint gets; the rest is skipped and counted.
func TestFilters(t *testing.T) {
	s := open(t, newWhere(t))
	approvals, team, all := newReceiver(t), newReceiver(t), newReceiver(t)
	start(t, s, eventsConfig(
		config.Webhook{Name: "approvals", URL: approvals.srv.URL, SecretEnv: "EVENTS_TEST_SECRET", Types: []string{"dev.airlock.image.approved", "dev.airlock.vulndb.*"}},
		config.Webhook{Name: "team", URL: team.srv.URL, SecretEnv: "EVENTS_TEST_SECRET", Upstreams: []string{"ghcr.io"}, Repositories: []string{"team/**"}, Types: []string{"dev.airlock.image.*"}},
		config.Webhook{Name: "all", URL: all.srv.URL, SecretEnv: "EVENTS_TEST_SECRET"},
	))
	hub := imageRef("library/x", "x")
	gh := state.Ref{Upstream: "ghcr.io", Repository: "team/app/api", Digest: digest.FromString("g")}
	other := state.Ref{Upstream: "ghcr.io", Repository: "other/app", Digest: digest.FromString("o")}
	move(t, s, hub, state.StateAwaitingApproval, state.StateApproved)
	move(t, s, gh, state.StateRejected)
	move(t, s, other, state.StateApproved)
	if _, _, err := s.EmitEvent(state.EventVulnDBUpdated, "", state.EventData{}); err != nil {
		t.Fatal(err)
	}
	all.waitN(5, 10*time.Second)
	waitFor(t, "every endpoint done", func() bool {
		st, _ := s.Outbox(0)
		return st.Kept == 0
	})
	want := map[*receiver][]string{
		approvals: {"dev.airlock.image.approved " + hub.String(), "dev.airlock.image.approved " + other.String(), "dev.airlock.vulndb.updated "},
		team:      {"dev.airlock.image.rejected " + gh.String()},
	}
	for r, w := range want {
		if got := typesOf(r.received()); !slices.Equal(got, w) {
			t.Errorf("got %q, want %q", got, w)
		}
	}
	st, _ := s.Outbox(0)
	for _, e := range st.Endpoints {
		if e.Name == "team" && (e.Sent != 1 || e.Skipped != 4) {
			t.Errorf("team endpoint counts: %+v", e)
		}
	}
}

// TestNewChecksConfig: a secret_env that is not set and a type pattern
// that matches nothing are errors at start, naming the field.
func TestNewChecksConfig(t *testing.T) {
	s := open(t, newWhere(t))
	t.Setenv("EVENTS_UNSET_SECRET", "")
	_, err := New(s, eventsConfig(config.Webhook{URL: "http://127.0.0.1:1", SecretEnv: "EVENTS_UNSET_SECRET"}))
	if err == nil || !strings.Contains(err.Error(), "events.webhooks[0].secret_env") || !strings.Contains(err.Error(), "EVENTS_UNSET_SECRET") {
		t.Fatalf("unset secret: %v", err)
	}
	t.Setenv("EVENTS_TEST_SECRET", secret)
	_, err = New(s, eventsConfig(config.Webhook{URL: "http://127.0.0.1:1", SecretEnv: "EVENTS_TEST_SECRET", Types: []string{"dev.airlock.image.aproved"}}))
	if err == nil || !strings.Contains(err.Error(), "types[0]") {
		t.Fatalf("misspelt type: %v", err)
	}
	d, err := New(s, eventsConfig(config.Webhook{URL: "https://hooks.example.com/services/T/B/SECRET", Format: config.FormatSlack}))
	if err != nil {
		t.Fatal(err)
	}
	if eps := d.Endpoints(); len(eps) != 1 || eps[0].Host != "hooks.example.com" || eps[0].Signed || strings.Contains(eps[0].Name, "SECRET") {
		t.Fatalf("endpoints: %+v", eps)
	}
}

// TestRetryAfterAndRedirect: a redirect is a failure (the event is not
// posted elsewhere), and Retry-After lengthens the backoff.
func TestRetryAfterAndRedirect(t *testing.T) {
	s := open(t, newWhere(t))
	var hits sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	start(t, s, eventsConfig(
		config.Webhook{Name: "redirect", URL: srv.URL + "/redirect", SecretEnv: "EVENTS_TEST_SECRET"},
		config.Webhook{Name: "busy", URL: srv.URL + "/busy", SecretEnv: "EVENTS_TEST_SECRET"},
	))
	move(t, s, imageRef("library/r", "r"), state.StateApproved)
	waitFor(t, "both failed", func() bool {
		st, _ := s.Outbox(0)
		n := 0
		for _, e := range st.Endpoints {
			if e.Attempts > 0 {
				n++
			}
		}
		return n == 2
	})
	if _, ok := hits.Load("/elsewhere"); ok {
		t.Fatal("the redirect was followed")
	}
	st, _ := s.Outbox(0)
	for _, e := range st.Endpoints {
		if e.Name == "busy" && e.NextAttempt.Sub(e.LastErrorAt) < 190*time.Millisecond {
			// max_backoff is 200ms in these tests: Retry-After 1s is capped there.
			t.Errorf("busy endpoint: next attempt %s after the error", e.NextAttempt.Sub(e.LastErrorAt))
		}
		if e.Name == "redirect" && !strings.Contains(e.LastError, "307") {
			t.Errorf("redirect endpoint error: %q", e.LastError)
		}
	}
}
