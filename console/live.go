package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// Bounds and rhythm of the live updates (GET /ui/live).
const (
	// MaxLiveStreams bounds the open live streams of one process: each is
	// a goroutine, a connection and an audit read per change. More are
	// answered 503 (EventSource then stops; the pages work without it).
	MaxLiveStreams = 64
	// MaxLiveStreamsPerSession bounds one session's streams (one per open
	// tab), so that one signed-in person cannot take every stream.
	MaxLiveStreamsPerSession = 16
	// MaxLiveStreamsPerIdentity bounds one identity's streams over all its
	// sessions, so that one token signed in many times cannot take every
	// stream either: half the process's.
	MaxLiveStreamsPerIdentity = MaxLiveStreams / 2
	// liveHeartbeat is how often an idle stream sends a comment, so that
	// proxies and load balancers do not time it out.
	liveHeartbeat = 15 * time.Second
	// livePoll is how often a stream reads the audit log without being
	// woken: state.Store.Changed fires for every committed change on
	// bbolt, and on PostgreSQL for other replicas' commits through
	// LISTEN/NOTIFY, but a notification can be lost (a dropped listener
	// connection) and some audit entries are written without waking
	// (state.Store.Record, e.g. a rescan of an approved image).
	livePoll = 5 * time.Second
	// liveMinGap spaces a stream's audit reads: a burst of changes (a busy
	// pipeline) costs one read per stream per gap, not one per commit.
	liveMinGap = 500 * time.Millisecond
	// liveSessionCheck is how often a stream reads even without a wake or
	// a poll; every read first checks that the session still exists
	// (sign-out, expiry) and its token still works (revoke), so nothing
	// is sent once the session has ended.
	liveSessionCheck = time.Minute
	// liveReadWindow is the number of newest audit entries a stream reads
	// first; it reads more only when all of them are new.
	liveReadWindow = 50
	// liveMaxRead bounds one read; a stream that fell further behind skips
	// the older entries (the pages still show the truth on reload).
	liveMaxRead = 1000
)

// liveState is the console's live streams: how many are open, in all,
// per session and per identity, and the signal that ends them (Close).
// The zero value applies the constants; tests set the fields.
type liveState struct {
	mu          sync.Mutex
	open        int
	perSession  map[string]int
	perIdentity map[string]int
	done        chan struct{}
	closed      bool

	// max and perMax bound the streams (MaxLiveStreams,
	// MaxLiveStreamsPerSession); poll and sessionCheck are livePoll and
	// liveSessionCheck. Zero means the constant.
	max, perMax        int
	poll, sessionCheck time.Duration
}

// acquire takes a stream slot for session of identity; 0 on success,
// else the status to refuse with: 503 when the process has
// MaxLiveStreams open, 429 when the session has MaxLiveStreamsPerSession
// or the identity MaxLiveStreamsPerIdentity.
func (l *liveState) acquire(session, identity string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perSession == nil {
		l.perSession, l.perIdentity = map[string]int{}, map[string]int{}
	}
	switch {
	case l.open >= orDefault(l.max, MaxLiveStreams):
		return http.StatusServiceUnavailable
	case l.perSession[session] >= orDefault(l.perMax, MaxLiveStreamsPerSession),
		l.perIdentity[identity] >= MaxLiveStreamsPerIdentity:
		return http.StatusTooManyRequests
	}
	l.open++
	l.perSession[session]++
	l.perIdentity[identity]++
	return 0
}

func (l *liveState) release(session, identity string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perSession[session]--; l.perSession[session] <= 0 {
		delete(l.perSession, session)
	}
	if l.perIdentity[identity]--; l.perIdentity[identity] <= 0 {
		delete(l.perIdentity, identity)
	}
}

// stopping returns the channel closed by Close.
func (l *liveState) stopping() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	return l.done
}

// Close ends the open live streams (each gets `event: end`) and any
// opened later. http.Server.Shutdown waits for open requests, and a live
// stream never ends by itself: register Close with RegisterOnShutdown.
func (c *Console) Close() {
	l := &c.streams
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	if !l.closed {
		l.closed = true
		close(l.done)
	}
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// liveEvent is the data of an `event: state` of GET /ui/live.
type liveEvent struct {
	Image  string      `json:"image"`
	State  state.State `json:"state"`
	From   state.State `json:"from,omitempty"`
	Action string      `json:"action"`
	Actor  string      `json:"actor"`
	Reason string      `json:"reason,omitempty"`
	Time   time.Time   `json:"time"`
}

// liveCursor remembers what a stream has sent: the newest audit sequence
// number, and the fold count of the entries of the last read (the audit
// log folds a pipeline retry into an earlier entry instead of appending
// one, see state's appendAudit: a new fold is a change to send too).
type liveCursor struct {
	last    uint64
	repeats map[uint64]int
}

// live is GET /ui/live: server-sent events of state changes, read from
// the audit log through the admin API as the session's identity (so the
// API's role table applies), one `event: state` per entry with a state:
//
//	id: <audit seq>
//	event: state
//	data: {"image":REF,"state":STATE,"actor":...,"reason":...,"time":...}
//
// A reconnecting EventSource sends Last-Event-ID and gets what it missed
// (up to liveMaxRead entries). The stream ends with `event: end` when
// the session ends (checked before every read of the audit log, so no
// change is sent after a sign-out or a token's revocation), and when the
// console shuts down (Close).
func (c *Console) live(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if status := c.streams.acquire(sess.Hash, sess.id.Name); status != 0 {
		c.log.Warn("console: live stream refused", "identity", sess.id.Name, "status", status, "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", "60")
		http.Error(w, "too many live update streams", status)
		return
	}
	defer c.streams.release(sess.Hash, sess.id.Name)
	done := c.streams.stopping()

	// Where the stream starts: after the newest entry, or after the last
	// event a reconnecting EventSource saw (Last-Event-ID).
	cur := liveCursor{}
	entries, err := c.auditSince(r, 0, liveReadWindow)
	if err != nil {
		c.apiFail(w, r, err)
		return
	}
	cur.remember(entries)
	if len(entries) > 0 {
		cur.last = entries[0].Seq
	}
	if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id < cur.last {
		// A reconnect: send what happened since its last event.
		cur.last = id
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Every write has a deadline (sendRaw), cleared at the end: without
	// one, a client that stops reading would hold its slot for ever.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	// retry: how long EventSource waits before reconnecting after a
	// dropped connection.
	if sendRaw(w, rc, "retry: 10000\n: connected\n\n") != nil {
		return
	}

	heartbeat := time.NewTicker(liveHeartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(orDefault(c.streams.poll, livePoll))
	defer poll.Stop()
	check := time.NewTicker(orDefault(c.streams.sessionCheck, liveSessionCheck))
	defer check.Stop()
	var (
		lastRead time.Time
		changed  <-chan struct{}
	)
	// base is the request's context without a session: each check below
	// derives the session's context from it, not from the last one, so
	// that a long stream does not grow a chain of contexts.
	base := r.Context()
	read := true // the first round sends what a reconnect missed
	for {
		if read {
			if wait := liveMinGap - time.Since(lastRead); wait > 0 {
				select {
				case <-time.After(wait):
				case <-r.Context().Done():
					return
				case <-done:
					c.endStream(w, rc, "the console is shutting down")
					return
				}
			}
			// Take the channel before reading, so that no change between
			// the read and the wait is missed.
			changed = c.store.Changed()
			lastRead = time.Now()
			// Every read first checks that the session still exists and
			// its token still works: a stream of a session signed out
			// (on any replica) or of a revoked token must not carry one
			// more change. The identity the API reads as is the
			// session's now (the token's role may have changed). A
			// session that cannot be checked now (state database
			// unreachable) sends nothing this round and keeps the stream.
			s, err := c.checkSession(r)
			switch {
			case errors.Is(err, errNoSession):
				c.log.Info("console: live stream ended with its session", "identity", sess.id.Name)
				c.endStream(w, rc, "your session has ended; sign in again")
				return
			case err == nil:
				sess = s
				r = r.WithContext(withSession(base, s))
				if err := c.sendNew(w, rc, r, &cur); err != nil {
					c.log.Debug("console: live stream ended", "identity", sess.id.Name, "error", err)
					return
				}
			}
			read = false
		}
		select {
		case <-r.Context().Done():
			return
		case <-done:
			c.endStream(w, rc, "the console is shutting down")
			return
		case <-changed:
			read = true
		case <-poll.C:
			read = true
		case <-heartbeat.C:
			if sendRaw(w, rc, ": keep-alive\n\n") != nil {
				return
			}
		case <-check.C:
			// A read checks the session first (above).
			read = true
		}
	}
}

// endStream tells the page why its stream ends (`event: end`); the
// script then stops reconnecting.
func (c *Console) endStream(w http.ResponseWriter, rc *http.ResponseController, why string) {
	b, _ := json.Marshal(map[string]string{"reason": why})
	_ = sendRaw(w, rc, "event: end\ndata: "+string(b)+"\n\n")
}

// liveWriteTimeout bounds one write to a stream.
const liveWriteTimeout = 10 * time.Second

// sendRaw writes s to the stream and flushes it, within liveWriteTimeout.
func sendRaw(w http.ResponseWriter, rc *http.ResponseController, s string) error {
	// Not every ResponseWriter supports deadlines (then the write is
	// unbounded, as any other answer's).
	_ = rc.SetWriteDeadline(time.Now().Add(liveWriteTimeout))
	if _, err := io.WriteString(w, s); err != nil {
		return err
	}
	return rc.Flush()
}

// sendNew sends the audit entries with a state that are newer than the
// cursor (or were folded again), oldest first, and advances the cursor.
// A write error (the client left) ends the stream.
func (c *Console) sendNew(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, cur *liveCursor) error {
	entries, err := c.auditSince(r, cur.last, liveReadWindow)
	var ae *admin.APIError
	switch {
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		// The identity may no longer read the audit log (its role changed).
		c.endStream(w, rc, "your role may no longer read the audit log")
		return fmt.Errorf("audit log refused: %w", err)
	case err != nil:
		// E.g. the state database is unreachable: keep the stream and
		// try again at the next wake.
		c.log.Warn("console: live stream cannot read the audit log", "error", err)
		return nil
	}
	var buf strings.Builder
	for _, e := range slices.Backward(entries) {
		prev, seen := cur.repeats[e.Seq]
		folded := e.Seq <= cur.last && seen && e.Repeats > prev
		if e.To == "" || (e.Seq <= cur.last && !folded) {
			continue
		}
		t := e.Time
		if folded && !e.Last.IsZero() {
			t = e.Last
		}
		b, err := json.Marshal(liveEvent{Image: e.Image, State: e.To, From: e.From, Action: e.Action, Actor: e.Actor, Reason: e.Reason, Time: t})
		if err != nil {
			return fmt.Errorf("encode live event: %w", err)
		}
		fmt.Fprintf(&buf, "id: %d\nevent: state\ndata: %s\n\n", e.Seq, b)
	}
	if buf.Len() > 0 {
		// Check the session again between the read and the send: it may
		// have ended (on any replica) after the check before the read,
		// and a change committed after that end must not go out. What
		// was read is sent only if the session outlived the read.
		switch _, err := c.checkSession(r); {
		case errors.Is(err, errNoSession):
			c.endStream(w, rc, "your session has ended; sign in again")
			return errors.New("the session ended")
		case err != nil:
			return nil // unchecked: send nothing, read again next round
		}
	}
	cur.remember(entries)
	if len(entries) > 0 && entries[0].Seq > cur.last {
		cur.last = entries[0].Seq
	}
	if buf.Len() == 0 {
		return nil
	}
	return sendRaw(w, rc, buf.String())
}

// remember keeps the fold counts of the entries just read.
func (cur *liveCursor) remember(entries []state.Entry) {
	cur.repeats = make(map[uint64]int, len(entries))
	for _, e := range entries {
		cur.repeats[e.Seq] = e.Repeats
	}
}

// auditSince reads the newest audit entries through GET /api/v1/audit,
// newest first: at least window of them, and more (up to liveMaxRead)
// while all of them are newer than since.
func (c *Console) auditSince(r *http.Request, since uint64, window int) ([]state.Entry, error) {
	for limit := window; ; limit *= 4 {
		limit = min(limit, liveMaxRead)
		var out struct {
			Entries []state.Entry `json:"entries"`
		}
		if err := c.call(r, http.MethodGet, "/api/v1/audit?limit="+strconv.Itoa(limit), nil, &out); err != nil {
			return nil, err
		}
		n := len(out.Entries)
		if since == 0 || n < limit || out.Entries[n-1].Seq <= since || limit == liveMaxRead {
			return out.Entries, nil
		}
	}
}
