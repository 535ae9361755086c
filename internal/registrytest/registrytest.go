// Package registrytest runs a real OCI distribution registry in-process for
// tests, with request accounting and simple fault injection in front of it.
//
// The registry is distribution v3's own HTTP handler backed by the inmemory
// storage driver, so tests exercise real registry semantics (content
// negotiation, digest verification, index completeness checks, 404s) rather
// than a hand-written fake.
package registrytest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // registers the "inmemory" storage driver
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"
)

// Upstream is a real distribution v3 registry running in-process on 127.0.0.1.
//
// Every request is recorded by a middleware in front of the distribution
// handler; see Requests, Count and CountBlobGETs. All methods are safe for
// concurrent use.
type Upstream struct {
	srv *httptest.Server
	app *handlers.App

	mu   sync.Mutex
	reqs []*Request

	blobRate   atomic.Int64 // bytes per second for blob GET bodies; 0 = unlimited
	blobServed atomic.Int64 // body bytes written for blob GETs
	inFlight   atomic.Int64 // requests currently inside serveHTTP

	stopOnce sync.Once
}

// Request is one HTTP request observed by an Upstream.
//
// Status and Bytes are filled in as the response is written, so for a
// request that is still in flight they reflect progress so far. Status is 0
// until the handler writes a header or body.
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Status   int
	Bytes    int64 // response body bytes handed to the connection
}

// silenceLogs mutes distribution's logging. It logs through the logrus
// standard logger (every 404 at ERROR, plus per-request access lines), which
// would otherwise drown test output. This is process-global by necessity:
// distribution exposes no way to inject a logger from outside its module.
var silenceLogs sync.Once

// NewUpstream starts a registry listening on 127.0.0.1 and registers a
// t.Cleanup that stops it.
//
// The first call discards all output of the process-wide logrus standard
// logger, which is where distribution writes its logs.
func NewUpstream(t testing.TB) *Upstream {
	t.Helper()

	silenceLogs.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.PanicLevel)
	})

	cfg := &configuration.Configuration{
		Version: configuration.MajorMinorVersion(0, 1),
		Storage: configuration.Storage{
			"inmemory": configuration.Parameters{},
			// The upload purger is a background goroutine that is
			// pointless for a registry that lives for one test.
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
			},
		},
	}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	// A fixed secret avoids a warning and a crypto/rand read per instance;
	// it only signs upload state, which never leaves this process.
	cfg.HTTP.Secret = "registrytest"
	// Debug server, prometheus and health checks are only wired up by
	// registry.NewRegistry, which we bypass; these zero values make that
	// explicit for the handler-level prometheus instrumentation.
	cfg.HTTP.Debug.Prometheus.Enabled = false

	u := &Upstream{
		app: handlers.NewApp(context.Background(), cfg),
	}

	// Bind explicitly to loopback: httptest.NewServer honours the
	// -httptest.serve flag, which could expose the registry elsewhere.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registrytest: listen: %v", err)
	}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serveHTTP))
	u.srv.Listener.Close()
	u.srv.Listener = l
	u.srv.Start()

	t.Cleanup(func() {
		u.Stop()
		_ = u.app.Shutdown()
	})
	return u
}

// URL returns the registry's base URL, e.g. "http://127.0.0.1:PORT".
func (u *Upstream) URL() string { return u.srv.URL }

// Host returns the registry's host and port, e.g. "127.0.0.1:PORT".
func (u *Upstream) Host() string { return u.srv.Listener.Addr().String() }

// Ref parses s ("repo:tag" or "repo@sha256:...") as a reference in this
// registry. The reference is marked insecure so go-containerregistry talks
// plain HTTP to it.
func (u *Upstream) Ref(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(u.Host()+"/"+s, name.Insecure)
	if err != nil {
		t.Fatalf("registrytest: parse reference %q: %v", s, err)
	}
	return ref
}

// Requests returns a copy of every request seen since start or the last Reset.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Request, len(u.reqs))
	for i, r := range u.reqs {
		out[i] = *r
	}
	return out
}

// Count returns the number of requests with the given method whose URL path
// equals path exactly, e.g. Count("GET", "/v2/library/alpine/blobs/sha256:abc").
func (u *Upstream) Count(method, path string) int {
	return u.count(func(r *Request) bool { return r.Method == method && r.Path == path })
}

// CountBlobGETs returns the number of GET requests for blob d in any repository.
func (u *Upstream) CountBlobGETs(d v1.Hash) int {
	suffix := "/blobs/" + d.String()
	return u.count(func(r *Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, suffix)
	})
}

func (u *Upstream) count(match func(*Request) bool) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.reqs {
		if match(r) {
			n++
		}
	}
	return n
}

// Reset forgets all recorded requests. It does not reset BlobBytesServed.
func (u *Upstream) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = nil
}

// SetBlobRate throttles the body of blob GET responses to roughly
// bytesPerSecond, so a test can interrupt a client part-way through a blob.
// Zero or negative means unlimited. It takes effect immediately, including
// for transfers already in progress.
func (u *Upstream) SetBlobRate(bytesPerSecond int64) { u.blobRate.Store(bytesPerSecond) }

// BlobBytesServed returns the total number of body bytes written in response
// to blob GETs so far, including partial transfers. Once a client has read n
// bytes of a blob, the total already includes them.
func (u *Upstream) BlobBytesServed() int64 { return u.blobServed.Load() }

// InFlight returns the number of requests currently being handled. Tests
// can poll it to confirm that a cancelled client really released its
// upstream request.
func (u *Upstream) InFlight() int { return int(u.inFlight.Load()) }

// Stop takes the registry down: it closes the listener and every open
// connection, including ones mid-response, so later requests see
// "connection refused". Stop is idempotent and is called automatically at
// test cleanup.
func (u *Upstream) Stop() {
	u.stopOnce.Do(func() {
		// httptest.Server.Close alone waits for active requests to
		// finish, which could take arbitrarily long under SetBlobRate.
		// Close the listener first so no new connections slip in, then
		// sever the live ones, then let Close reap the handlers.
		u.srv.Listener.Close()
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
}

// PushImage uploads img to this registry at ref (e.g. "library/alpine:3.20")
// and returns its manifest digest.
func (u *Upstream) PushImage(t testing.TB, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r := u.Ref(t, ref)
	if err := remote.Write(r, img, remote.WithContext(testContext(t))); err != nil {
		t.Fatalf("registrytest: push image %s: %v", r, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("registrytest: image digest: %v", err)
	}
	return d
}

// PushIndex uploads idx and all of its children to this registry at ref and
// returns the index digest.
func (u *Upstream) PushIndex(t testing.TB, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	r := u.Ref(t, ref)
	if err := remote.WriteIndex(r, idx, remote.WithContext(testContext(t))); err != nil {
		t.Fatalf("registrytest: push index %s: %v", r, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("registrytest: index digest: %v", err)
	}
	return d
}

// testContext returns t.Context when available (testing.TB gained Context in
// Go 1.24), so pushes are cancelled if the test ends early.
func testContext(t testing.TB) context.Context {
	if c, ok := t.(interface{ Context() context.Context }); ok {
		return c.Context()
	}
	return context.Background()
}

// serveHTTP records the request, optionally throttles blob bodies, and hands
// off to distribution.
func (u *Upstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	u.inFlight.Add(1)
	defer u.inFlight.Add(-1)

	rec := &Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	// Record on arrival, not completion: a client can read the final byte
	// and return before this handler does, and tests count right after.
	u.mu.Lock()
	u.reqs = append(u.reqs, rec)
	u.mu.Unlock()

	rw := &recordingWriter{ResponseWriter: w, u: u, rec: rec}
	if r.Method == http.MethodGet && isBlobPath(r.URL.Path) {
		rw.blob = true
		rw.ctx = r.Context()
	}
	u.app.ServeHTTP(rw, r)
}

// isBlobPath reports whether p addresses a blob by digest, as opposed to an
// upload session.
func isBlobPath(p string) bool {
	i := strings.LastIndex(p, "/blobs/")
	return i >= 0 && !strings.HasPrefix(p[i:], "/blobs/uploads")
}

// recordingWriter fills in a Request's Status and Bytes and, for blob GETs,
// accounts for and throttles the body.
//
// It deliberately does not implement io.ReaderFrom: http.ServeContent would
// otherwise bypass Write (via sendfile/splice) and defeat the throttle.
type recordingWriter struct {
	http.ResponseWriter
	u    *Upstream
	rec  *Request
	blob bool
	ctx  context.Context // request context; only set for blob GETs

	wroteHeader bool // only touched by the handler goroutine
}

func (w *recordingWriter) WriteHeader(code int) {
	// 1xx responses are informational; the final status comes later.
	if !w.wroteHeader && code >= 200 {
		w.wroteHeader = true
		w.u.mu.Lock()
		w.rec.Status = code
		w.u.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.blob {
		return w.write(p)
	}
	var written int
	for len(p) > 0 {
		rate := w.u.blobRate.Load()
		chunk := len(p)
		if rate > 0 {
			chunk = min(chunk, chunkSize(rate))
		}
		n, err := w.write(p[:chunk])
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
		if rate <= 0 {
			continue
		}
		// Push the chunk onto the wire before sleeping so the client
		// actually observes a slow trickle rather than one late burst.
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		delay := time.Duration(int64(n) * int64(time.Second) / rate)
		if err := sleepCtx(w.ctx, delay); err != nil {
			// Client went away (or Stop severed it): stop writing.
			return written, err
		}
	}
	return written, nil
}

// write passes p through and accounts for it. Bytes are counted before the
// write and corrected after: a client can receive the last byte before the
// underlying Write returns, and a test that checks the counters as soon as
// its client finishes must not observe a stale total.
func (w *recordingWriter) write(p []byte) (int, error) {
	w.account(int64(len(p)))
	n, err := w.ResponseWriter.Write(p)
	if short := int64(len(p) - n); short > 0 {
		w.account(-short)
	}
	return n, err
}

func (w *recordingWriter) account(n int64) {
	if w.blob {
		w.u.blobServed.Add(n)
	}
	w.u.mu.Lock()
	w.rec.Bytes += n
	w.u.mu.Unlock()
}

// Flush forwards to the underlying writer so streaming handlers keep working.
func (w *recordingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// chunkSize picks a write size giving roughly 50 writes per second, so
// throttled transfers progress smoothly, bounded to keep syscalls sane.
func chunkSize(rate int64) int {
	return int(min(max(rate/50, 1), 64<<10))
}

// sleepCtx sleeps for d or until ctx is done, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
