package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

const eventsSecret = "e2e-webhook-secret-7d2b"

// hookReceiver is a webhook endpoint on 127.0.0.1 that can go down (its
// listener closed: connections are refused) and come back on the same
// address.
type hookReceiver struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	srv    *http.Server
	events []hookEvent
}

// hookEvent is one request the receiver accepted. The CloudEvent fields
// are declared here, not borrowed from the events package, so the test
// pins the wire format.
type hookEvent struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Subject         string `json:"subject"`
	Time            string `json:"time"`
	DataContentType string `json:"datacontenttype"`
	Data            struct {
		State  string `json:"state"`
		From   string `json:"from"`
		Reason string `json:"reason"`
		Flag   string `json:"flag"`
		Actor  string `json:"actor"`
	} `json:"data"`
	signatureOK bool
	contentType string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{t: t, addr: ln.Addr().String()}
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *hookReceiver) url() string { return "http://" + r.addr + "/hooks/airlock" }

func (r *hookReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (r *hookReceiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var ev hookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m := hmac.New(sha256.New, []byte(eventsSecret))
	m.Write(body)
	ev.signatureOK = req.Header.Get("X-Airlock-Signature") == "sha256="+hex.EncodeToString(m.Sum(nil))
	ev.contentType = req.Header.Get("Content-Type")
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// down closes the listener and every connection.
func (r *hookReceiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up listens again on the same address.
func (r *hookReceiver) up() {
	var (
		ln  net.Listener
		err error
	)
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			r.serve(ln)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("receiver: listen again on %s: %v", r.addr, err)
}

func (r *hookReceiver) received() []hookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// distinct returns the events by first delivery, dropping redeliveries
// (same ID); it fails the test if an ID was reused for another event.
func (r *hookReceiver) distinct() []hookEvent {
	r.t.Helper()
	seen := map[string]hookEvent{}
	var out []hookEvent
	for _, ev := range r.received() {
		if prev, dup := seen[ev.ID]; dup {
			if prev.Type != ev.Type || prev.Subject != ev.Subject || prev.Time != ev.Time {
				r.t.Fatalf("event ID %s delivered for two different events: %+v and %+v", ev.ID, prev, ev)
			}
			continue
		}
		seen[ev.ID] = ev
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until the receiver has n distinct events.
func (r *hookReceiver) waitEvents(n int, timeout time.Duration) []hookEvent {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.distinct()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver has %d events after %s, want %d: %v", len(got), timeout, n, eventNames(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventNames returns "type subject" of each event.
func eventNames(evs []hookEvent) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type+" "+ev.Subject)
	}
	return out
}

// TestEvents runs a scripted scenario through the real binary with a
// webhook receiver on 127.0.0.1: every state change (approved, rejected,
// an admin's approval, a rescan's flag, revocations, a new vulnerability
// DB) arrives exactly once, in order, as a signed CloudEvents request.
// Then the receiver goes down, more changes happen, Airlock is stopped and
// started again on the same state, more changes happen; once the receiver
// is back it gets every event, in order, none lost (a redelivery only
// with the same ID).
func TestEvents(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	clean := []registrytest.Pkg{{Name: "openssl", Version: "3.0.2-r0"}, {Name: "zlib", Version: "1.3-r0"}, {Name: "busybox", Version: "1.37.0-r0"}, {Name: "musl", Version: "1.2.5-r0"}}
	dClean := up.PushImage(t, "events/clean:1", registrytest.AlpineImage(t, "3.20.3", clean...)).String()
	dVuln := up.PushImage(t, "events/vuln:1", registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"})).String()
	dLater := up.PushImage(t, "events/later:1", registrytest.AlpineImage(t, "3.20.3", append(clean[:3:3], registrytest.Pkg{Name: "musl", Version: "1.2.5-r1"})...)).String()
	keyClean, keyVuln, keyLater := "docker.io/events/clean@"+dClean, "docker.io/events/vuln@"+dVuln, "docker.io/events/later@"+dLater
	dbDir := t.TempDir()
	vulndbtest.Build(t, dbDir, baseVulns...)

	rcv := newHookReceiver(t)
	opts := options{
		DataDir: t.TempDir(), Policy: "scan", NoHold: true,
		Env: []string{"EVENTS_E2E_SECRET=" + eventsSecret},
		Extra: "scan:\n  db_dir: " + dbDir + "\n  max_db_age: 0s\n  on_rescan_fail: flag\n" +
			"events:\n  min_backoff: 100ms\n  max_backoff: 1s\n  webhooks:\n" +
			"    - url: " + rcv.url() + "\n      name: e2e\n      secret_env: EVENTS_E2E_SECRET\n      timeout: 2s\n",
	}
	al := startAirlock(t, up, opts)

	// Phase 1: the receiver is up; each step's event arrives before the next step.
	var want []string
	expect := func(typ, subject string) {
		t.Helper()
		want = append(want, "dev.airlock."+typ+" "+subject)
		got := rcv.waitEvents(len(want), 60*time.Second)
		if names := eventNames(got); !slices.Equal(names, want) {
			t.Fatalf("events:\n got %q\nwant %q", names, want)
		}
	}
	_, _ = pull(al.Ref(t, "events/clean:1"))
	al.waitState(t, keyClean, 60*time.Second, "approved")
	expect("image.approved", keyClean)

	_, _ = pull(al.Ref(t, "events/vuln:1"))
	al.waitState(t, keyVuln, 60*time.Second, "rejected")
	expect("image.rejected", keyVuln)

	al.action(t, "approve", keyVuln, "e2e: risk accepted")
	expect("image.approved", keyVuln)

	al.action(t, "rescan", keyVuln, "e2e: check again")
	expect("image.flagged", keyVuln)

	al.action(t, "revoke", keyVuln, "e2e: withdrawn")
	expect("image.revoked", keyVuln)
	al.action(t, "revoke", keyClean, "e2e: withdrawn too")
	expect("image.revoked", keyClean)

	if out, err := al.cli(t, "db", "import", vulndbtest.Archive(t, baseVulns...)); err != nil {
		t.Fatalf("airlock db import: %v\n%s", err, out)
	}
	expect("vulndb.updated", "")

	got := rcv.distinct()
	for i, ev := range got {
		if !ev.signatureOK {
			t.Errorf("event %d (%s): X-Airlock-Signature does not verify", i, ev.Type)
		}
		if ev.SpecVersion != "1.0" || ev.ID == "" || ev.Source == "" || ev.Time == "" || ev.DataContentType != "application/json" ||
			!strings.HasPrefix(ev.contentType, "application/cloudevents+json") {
			t.Errorf("event %d is not a structured CloudEvent: %+v", i, ev)
		}
	}
	if d := got[3].Data; !strings.Contains(d.Flag, "rescan would reject") || d.State != "approved" {
		t.Errorf("flagged event data: %+v", d)
	}
	if d := got[4].Data; d.State != "revoked" || d.From != "approved" || d.Reason != "e2e: withdrawn" || !strings.HasPrefix(d.Actor, "admin") {
		t.Errorf("revoked event data: %+v", d)
	}
	if n := len(rcv.received()); n != len(want) {
		t.Errorf("the receiver got %d requests for %d events with no failure in between", n, len(want))
	}

	// Phase 2: the receiver is down; a change, a restart, more changes.
	rcv.down()
	al.action(t, "approve", keyClean, "e2e: approved again")
	want = append(want, "dev.airlock.image.approved "+keyClean)
	waitFor(t, 30*time.Second, "a failed delivery in airlock events", func() bool {
		out, err := al.cli(t, "events", "--json")
		return err == nil && strings.Contains(out, `"last_error"`) && strings.Contains(out, "refused")
	})
	al.Stop(t)

	al = startAirlock(t, up, opts)
	_, _ = pull(al.Ref(t, "events/later:1"))
	al.waitState(t, keyLater, 60*time.Second, "approved")
	al.action(t, "revoke", keyLater, "e2e: while the receiver is down")
	want = append(want, "dev.airlock.image.approved "+keyLater, "dev.airlock.image.revoked "+keyLater)
	out, err := al.cli(t, "events")
	if err != nil || !strings.Contains(out, "e2e") || !strings.Contains(out, "refused") || !strings.Contains(out, "dev.airlock.image.revoked") {
		t.Fatalf("airlock events while the receiver is down: %v\n%s", err, out)
	}
	var status struct {
		Endpoints []struct {
			Name     string `json:"name"`
			Pending  int    `json:"pending"`
			Attempts int    `json:"attempts"`
		} `json:"endpoints"`
	}
	if r := al.admin(t, http.MethodGet, "/api/v1/events", nil); r.Status != http.StatusOK || json.Unmarshal(r.Body, &status) != nil ||
		len(status.Endpoints) != 1 || status.Endpoints[0].Pending != 3 || status.Endpoints[0].Attempts == 0 {
		t.Fatalf("GET /api/v1/events while the receiver is down: %d %s", r.Status, r.Body)
	}

	// The receiver comes back: everything arrives, in order.
	rcv.up()
	got = rcv.waitEvents(len(want), 60*time.Second)
	if names := eventNames(got); !slices.Equal(names, want) {
		t.Fatalf("after the outage:\n got %q\nwant %q", names, want)
	}
	for i, ev := range got {
		if !ev.signatureOK {
			t.Errorf("event %d (%s): X-Airlock-Signature does not verify", i, ev.Type)
		}
	}
	waitFor(t, 30*time.Second, "an empty outbox", func() bool {
		r := al.admin(t, http.MethodGet, "/api/v1/events", nil)
		return r.Status == http.StatusOK && json.Unmarshal(r.Body, &status) == nil && len(status.Endpoints) == 1 && status.Endpoints[0].Pending == 0
	})
}
