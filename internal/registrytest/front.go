package registrytest

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Front is a hostile publisher's view of an Upstream: an HTTP front on
// 127.0.0.1 that passes every request through to the registry, except for
// tags told to answer HEAD with one manifest and GET with another (a tag
// "moved" between a client's HEAD and its GET). Point the system under test
// at Front.URL and push content to the Upstream itself.
//
// Split tags need not exist in the registry: a HEAD or GET of
// /v2/<repo>/manifests/<tag> is answered as the same request for the
// configured digest would be, so the Docker-Content-Digest, Content-Type and
// body are the registry's own for that digest.
type Front struct {
	srv *httptest.Server
	up  *Upstream

	mu     sync.Mutex
	splits map[string][2]v1.Hash // "<repo>:<tag>" -> {HEAD digest, GET digest}
	counts map[string]int        // "<METHOD> <repo>:<tag>" -> rewritten requests
}

// NewFront starts a Front for up and registers a t.Cleanup that stops it.
func NewFront(t testing.TB, up *Upstream) *Front {
	t.Helper()
	target, err := url.Parse(up.URL())
	if err != nil {
		t.Fatalf("registrytest: front: %v", err)
	}
	f := &Front{up: up, splits: map[string][2]v1.Hash{}, counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	// Stream blob bodies as they come; a buffered proxy would hide a
	// throttled or cut transfer.
	rp.FlushInterval = -1
	// A client that hangs up mid-blob is routine in these tests.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	base := rp.Director
	rp.Director = func(r *http.Request) {
		base(r)
		f.rewrite(r)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registrytest: front: listen: %v", err)
	}
	f.srv = httptest.NewUnstartedServer(rp)
	f.srv.Listener.Close()
	f.srv.Listener = l
	f.srv.Start()
	t.Cleanup(func() {
		f.srv.Listener.Close()
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// URL returns the front's base URL, e.g. "http://127.0.0.1:PORT".
func (f *Front) URL() string { return f.srv.URL }

// Host returns the front's host and port.
func (f *Front) Host() string { return f.srv.Listener.Addr().String() }

// SplitTag makes repo:tag answer HEAD as manifest head and GET as manifest
// get. Both must exist in repo. It replaces an earlier split of the tag.
func (f *Front) SplitTag(repo, tag string, head, get v1.Hash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.splits[repo+":"+tag] = [2]v1.Hash{head, get}
}

// ClearTag removes a split: repo:tag is passed through again.
func (f *Front) ClearTag(repo, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.splits, repo+":"+tag)
}

// Rewritten returns how many requests with method for repo:tag the front
// answered from a split so far.
func (f *Front) Rewritten(method, repo, tag string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[method+" "+repo+":"+tag]
}

// rewrite points a manifest request for a split tag at the digest for its method.
func (f *Front) rewrite(r *http.Request) {
	p := r.URL.Path
	i := strings.LastIndex(p, "/manifests/")
	if !strings.HasPrefix(p, "/v2/") || i < 0 {
		return
	}
	repo, tag := p[len("/v2/"):i], p[i+len("/manifests/"):]
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.splits[repo+":"+tag]
	if !ok {
		return
	}
	d := s[1]
	if r.Method == http.MethodHead {
		d = s[0]
	}
	f.counts[r.Method+" "+repo+":"+tag]++
	r.URL.Path = p[:i] + "/manifests/" + d.String()
	r.URL.RawPath = ""
}
