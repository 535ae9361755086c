package vulndbtest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	v6dist "github.com/anchore/grype/grype/db/v6/distribution"
)

// UpdateServer serves grype database listings and archives over HTTP on
// 127.0.0.1, the way grype's update server does, for tests of online
// database updates. Until the first Publish the listing answers 404.
type UpdateServer struct {
	srv       *httptest.Server
	downloads atomic.Int64

	mu      sync.Mutex
	listing []byte
	archive string // URL path of the current archive
	file    string // archive on disk
	built   time.Time
}

// NewUpdateServer starts an UpdateServer and registers a t.Cleanup that
// stops it.
func NewUpdateServer(t testing.TB) *UpdateServer {
	t.Helper()
	u := &UpdateServer{}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

// URL is the listing URL to update from: <server>/databases/v6/latest.json.
func (u *UpdateServer) URL() string {
	return u.srv.URL + "/databases/v6/" + v6dist.LatestFileName
}

// BaseURL is the listing's base URL (<server>/databases), which grype
// completes with "/v6/latest.json".
func (u *UpdateServer) BaseURL() string { return u.srv.URL + "/databases" }

// Downloads returns how many times an archive was fetched.
func (u *UpdateServer) Downloads() int { return int(u.downloads.Load()) }

// Publish builds a database holding vulns and makes the listing offer it.
// Each published database is built at least one second after the previous
// one (database build times have one-second resolution), so a client
// always sees it as newer. It returns the build time.
func (u *UpdateServer) Publish(t testing.TB, vulns ...Vuln) time.Time {
	t.Helper()
	u.mu.Lock()
	built := time.Now().UTC().Truncate(time.Second)
	if !built.After(u.built) {
		built = u.built.Add(time.Second)
	}
	u.mu.Unlock()

	file := ArchiveAt(t, built, vulns...)
	a, err := v6dist.NewArchive(file, built, v6.ModelVersion, v6.Revision, v6.Addition)
	if err != nil {
		t.Fatalf("vulndbtest: listing entry: %v", err)
	}
	var buf bytes.Buffer
	if err := v6dist.NewLatestDocument(*a).Write(&buf); err != nil {
		t.Fatalf("vulndbtest: write listing: %v", err)
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	u.listing, u.file, u.built = buf.Bytes(), file, built
	u.archive = path.Join("/databases/v6", a.Path)
	return built
}

func (u *UpdateServer) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	listing, archive, file := u.listing, u.archive, u.file
	u.mu.Unlock()
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case listing != nil && r.URL.Path == "/databases/v6/"+v6dist.LatestFileName:
		w.Header().Set("Content-Type", "application/json")
		w.Write(listing) //nolint:errcheck // the client sees a short body
	case archive != "" && r.URL.Path == archive:
		u.downloads.Add(1)
		f, err := os.Open(file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, path.Base(archive), time.Time{}, f)
	default:
		http.NotFound(w, r)
	}
}
