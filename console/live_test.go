package console

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// sse is one server-sent event.
type sse struct{ id, event, data string }

// stream is an open GET /ui/live read by a client, as EventSource would.
type stream struct {
	resp   *http.Response
	events chan sse
}

// openStream opens GET /ui/live; hdr adds headers (Last-Event-ID). A
// refused stream is returned with its status and no events.
func (b *browser) openStream(t *testing.T, hdr map[string]string) *stream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.e.srv.URL+"/ui/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &stream{resp: resp, events: make(chan sse, 100)}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		close(s.events)
		return s
	}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					s.events <- ev
				}
				ev = sse{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next waits for the next event that match accepts; it fails the test
// after timeout or when the stream ends first.
func (s *stream) next(t *testing.T, timeout time.Duration, match func(sse) bool) sse {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("the stream ended before the event")
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatal("no event in time")
		}
	}
}

// stateEvent matches the state event of image into st.
func stateEvent(t *testing.T, image string, st state.State) func(sse) bool {
	return func(ev sse) bool {
		if ev.event != "state" {
			return false
		}
		var d liveEvent
		if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
			t.Errorf("event data %q: %v", ev.data, err)
			return false
		}
		return d.Image == image && d.State == st
	}
}

// TestLiveStream: a state change, by a person through the console or by
// the pipeline in the store, reaches an open stream as `event: state`
// with the image, state, actor, reason and time; a reconnect with
// Last-Event-ID gets what it missed.
func TestLiveStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateAwaitingApproval, reason: "manual policy"})
	img := ref.String()
	arno := e.browser(t).signIn(t, e.token(t, "arno", admin.RoleApprover))
	vera := e.browser(t).signIn(t, e.token(t, "vera", admin.RoleViewer))

	s := vera.openStream(t, nil)
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /ui/live: %d %s", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	if p := arno.act(t, img, "approve", "reviewed <b>all</b>", nil); p.status != http.StatusSeeOther {
		t.Fatalf("approve: %d %s", p.status, p.body)
	}
	ev := s.next(t, 5*time.Second, stateEvent(t, img, state.StateApproved))
	var d liveEvent
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		t.Fatal(err)
	}
	if d.Actor != "arno" || d.Reason != "reviewed <b>all</b>" || d.Action != "approve" || time.Since(d.Time) > time.Minute || ev.id == "" {
		t.Errorf("event %+v (id %q): want actor arno, the reason, action approve, a recent time and an id", d, ev.id)
	}

	// The pipeline's change, made in the store.
	other := e.image(t, imageSpec{repo: "library/busybox", state: state.StateScanning, reason: "scanning"})
	if _, err := e.store.Transition(other, state.Change{To: state.StateRejected, Actor: state.ActorPipeline, Action: "step:policy", Reason: "policy: critical"}); err != nil {
		t.Fatal(err)
	}
	s.next(t, 5*time.Second, stateEvent(t, other.String(), state.StateRejected))

	// A reconnect resumes after the last event it saw.
	again := vera.openStream(t, map[string]string{"Last-Event-ID": fmt.Sprint(mustUint(t, ev.id) - 1)})
	again.next(t, 5*time.Second, stateEvent(t, img, state.StateApproved))
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("event id %q: %v", s, err)
	}
	return n
}

// TestLiveStreamBounds: a session may open MaxLiveStreamsPerSession
// streams (then 429), an identity MaxLiveStreamsPerIdentity over its
// sessions (then 429) and the process MaxLiveStreams (then 503); a closed
// stream frees its slot. Without a session the stream is not served.
func TestLiveStreamBounds(t *testing.T) {
	e := newEnv(t, envOptions{})
	// Each identity signs in as many sessions as it may fill.
	sessions := MaxLiveStreamsPerIdentity / MaxLiveStreamsPerSession
	identities := MaxLiveStreams / MaxLiveStreamsPerIdentity
	var open []*stream
	for id := range identities {
		tok := e.token(t, fmt.Sprintf("vera%d", id), admin.RoleViewer)
		for i := range sessions {
			b := e.browser(t).signIn(t, tok)
			for range MaxLiveStreamsPerSession {
				s := b.openStream(t, nil)
				if s.resp.StatusCode != http.StatusOK {
					t.Fatalf("stream %d: %d", len(open)+1, s.resp.StatusCode)
				}
				open = append(open, s)
			}
			if id == 0 && i == 0 {
				if s := b.openStream(t, nil); s.resp.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("stream %d of one session: %d, want 429", MaxLiveStreamsPerSession+1, s.resp.StatusCode)
				}
			}
		}
		if id == 0 {
			// Another session of the same identity: over its bound.
			b := e.browser(t).signIn(t, tok)
			if s := b.openStream(t, nil); s.resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("stream %d of one identity: %d, want 429", MaxLiveStreamsPerIdentity+1, s.resp.StatusCode)
			}
		}
	}
	extra := e.browser(t).signIn(t, e.token(t, "walt", admin.RoleViewer))
	if s := extra.openStream(t, nil); s.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %d, want 503", MaxLiveStreams+1, s.resp.StatusCode)
	}
	open[0].resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := extra.openStream(t, nil)
		if s.resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream's slot was not freed: %d", s.resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}

	anon := e.browser(t)
	if s := anon.openStream(t, nil); s.resp.StatusCode != http.StatusSeeOther {
		t.Errorf("stream without a session: %d, want 303 to the sign-in page", s.resp.StatusCode)
	}
}

// TestLiveStreamEnds: a stream ends with `event: end` when its token is
// revoked, when its session signs out, and when the console closes.
func TestLiveStreamEnds(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.con.streams.sessionCheck = 50 * time.Millisecond
	ended := func(t *testing.T, s *stream) {
		t.Helper()
		if s.resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /ui/live: %d", s.resp.StatusCode)
		}
		s.next(t, 5*time.Second, func(ev sse) bool { return ev.event == "end" })
		select {
		case _, ok := <-s.events:
			if ok {
				t.Error("an event after the end")
			}
		case <-time.After(5 * time.Second):
			t.Error("the stream stayed open after its end")
		}
	}
	t.Run("token revoked", func(t *testing.T) {
		b := e.browser(t).signIn(t, e.token(t, "tom", admin.RoleViewer))
		s := b.openStream(t, nil)
		e.asAdmin(t, http.MethodDelete, "/api/v1/tokens/tom", nil, nil)
		ended(t, s)
	})
	t.Run("signed out", func(t *testing.T) {
		b := e.browser(t).signIn(t, e.token(t, "sam", admin.RoleViewer))
		s := b.openStream(t, nil)
		if p := b.post(t, "/ui/logout", map[string][]string{"csrf": {b.csrf}}, nil); p.status != http.StatusSeeOther {
			t.Fatalf("sign-out: %d", p.status)
		}
		ended(t, s)
	})
	t.Run("console closed", func(t *testing.T) {
		b := e.browser(t).signIn(t, bootstrapToken)
		s := b.openStream(t, nil)
		e.con.Close()
		ended(t, s)
	})
}

// TestLiveStreamFolds: the audit log folds a pipeline retry into the
// earlier entry of the same transition instead of appending one; the
// stream still reports the state change.
func TestLiveStreamFolds(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref := e.image(t, imageSpec{repo: "library/alpine", state: state.StateFetching, reason: "fetching"})
	img := ref.String()
	b := e.browser(t).signIn(t, bootstrapToken)
	s := b.openStream(t, nil)
	move := func(to state.State, reason string) {
		t.Helper()
		if _, err := e.store.Transition(ref, state.Change{To: to, Actor: state.ActorPipeline, Action: "step:fetch", Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	move(state.StateFailed, "fetch: 503 (attempt 1 of 8)")
	s.next(t, 5*time.Second, stateEvent(t, img, state.StateFailed))
	move(state.StateFetching, "retrying")
	s.next(t, 5*time.Second, stateEvent(t, img, state.StateFetching))
	before, err := e.store.AuditCount()
	if err != nil {
		t.Fatal(err)
	}
	move(state.StateFailed, "fetch: 503 (attempt 2 of 8)")
	if after, _ := e.store.AuditCount(); after != before {
		t.Fatalf("the retry was appended (%d → %d entries), not folded: the test needs a fold", before, after)
	}
	ev := s.next(t, 5*time.Second, stateEvent(t, img, state.StateFailed))
	var d liveEvent
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil || !strings.Contains(d.Reason, "attempt 2") {
		t.Errorf("folded event %+v: want the latest reason", d)
	}
}
