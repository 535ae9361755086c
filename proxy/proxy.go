// Package proxy is Airlock's Registry V2 read API. It routes each request
// to an upstream repository and serves a manifest or blob only when an
// approved image covers it; anything else starts the quarantine pipeline
// (through the gate, never itself) and is answered DENIED with the
// image's state.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/proxy/route"
	"github.com/airlockproxy/airlock/pullrec"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// ActorPull is the audit actor for pipeline runs a pull started.
const ActorPull = "pull"

var (
	pulls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_pulls_total",
		Help: "Manifest and blob requests by kind and result (served, denied, error).",
	}, []string{"kind", "result"})
	requests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_http_requests_total",
		Help: "Registry API requests by method and status code.",
	}, []string{"method", "code"})
)

// Gate is what the proxy needs of the quarantine pipeline: start it for an
// image, and wait a little for its outcome.
type Gate interface {
	Request(ref state.Ref, actor string) (state.Image, error)
	Wait(ctx context.Context, ref state.Ref, d time.Duration) (state.Image, error)
}

// Server serves the registry API.
type Server struct {
	store     *state.Store
	content   *content.Store
	gate      Gate
	upstreams *upstream.Set
	router    *route.Router
	cfg       config.Gate
	allow     map[string]config.Upstream
	log       *slog.Logger
	// redirect is how long presigned blob URLs last; 0: blobs are streamed.
	redirect time.Duration
	// pullRec gathers pull records (nil: off); see recordPull.
	pullRec *pullrec.Recorder
	// auth checks credentials (nil: anonymous pulls); see auth.go.
	auth Authenticator

	tagMu    sync.Mutex
	tagCache map[string]cachedTag
}

type cachedTag struct {
	desc    v1.Descriptor
	expires time.Time
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the request logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// New returns the registry API server.
func New(cfg *config.Config, store *state.Store, cs *content.Store, g Gate, ups *upstream.Set, opts ...Option) *Server {
	s := &Server{
		store: store, content: cs, gate: g, upstreams: ups,
		router:   route.NewRouter(cfg.Upstreams),
		cfg:      cfg.Gate,
		allow:    map[string]config.Upstream{},
		log:      slog.Default(),
		tagCache: map[string]cachedTag{},
	}
	for _, u := range cfg.Upstreams {
		s.allow[u.Name] = u
	}
	if cfg.Storage.Redirect {
		s.redirect = cfg.Storage.RedirectTTL
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Handler returns the HTTP handler of the registry API.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	// Paths are validated, never cleaned: a cleaned "../" would turn into
	// a different repository instead of an error.
	r.SkipClean(true)
	r.HandleFunc("/v2/", s.base).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v2", s.base).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v2/{name:.+}/manifests/{reference}", s.manifest).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v2/{name:.+}/blobs/{digest}", s.blob).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v2/{name:.+}/tags/list", s.tags).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/v2/{name:.+}/referrers/{digest}", s.referrers).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	if s.auth != nil {
		r.HandleFunc("/token", s.auth.ServeToken).Methods(http.MethodGet, http.MethodHead)
	}
	r.MethodNotAllowedHandler = http.HandlerFunc(unsupported)
	r.NotFoundHandler = http.HandlerFunc(notFound)
	return s.middleware(r)
}

// middleware adds the headers every registry response carries, logs one
// line per request and counts it.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		rec.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		queryErr := checkQuery(r)
		if ns := r.URL.Query().Get("ns"); ns != "" && queryErr == "" {
			// OCI distribution spec, registry proxying: echo the namespace honoured.
			rec.Header().Set("OCI-Namespace", sanitizeHeader(ns))
		}
		user := ""
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", v)
				if !rec.wrote {
					writeError(rec, r, http.StatusInternalServerError, CodeUnavailable, "internal error")
				}
			}
			requests.WithLabelValues(methodLabel(r.Method), strconv.Itoa(rec.status)).Inc()
			s.log.Info("request", "method", r.Method, "path", r.URL.Path, "ns", r.URL.Query().Get("ns"),
				"status", rec.status, "bytes", rec.bytes, "duration", time.Since(start).Round(time.Microsecond),
				"remote", r.RemoteAddr, "ua", r.UserAgent(), "user", user)
		}()
		if queryErr != "" {
			writeError(rec, r, http.StatusBadRequest, CodeUnsupported, queryErr)
			return
		}
		var ok bool
		if user, ok = s.authorize(rec, r); !ok {
			return
		}
		next.ServeHTTP(rec, r)
	})
}

// methodLabel is the method label of the request counter: the methods
// of HTTP itself, else "other". net/http accepts any token as a method,
// so a label per method would let anonymous clients add a time series
// (memory, and lines on /metrics) with every request.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// checkQuery refuses a query Airlock would have to guess at, and says why
// ("" when the query is fine). Go's URL parser drops every key=value pair
// holding a ';' (it is no longer a separator), so "?ns=a;ns=b" would
// arrive with no ns at all and be routed to the default upstream; two ns
// values leave open which upstream was meant. Both are the client's
// mistake or an attempt to smuggle a second routing decision past a
// front proxy that reads the query differently: 400, never a guess.
func checkQuery(r *http.Request) string {
	if strings.Contains(r.URL.RawQuery, ";") {
		return "the query contains ';', which is not a parameter separator: encode it as %3B or send separate parameters with '&'"
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "the query is malformed: " + err.Error()
	}
	if ns := q["ns"]; len(ns) > 1 {
		return fmt.Sprintf("the query names the upstream (ns) %d times; send ns once", len(ns))
	}
	return ""
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path for blobs served from files.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wrote = true
	n, err := io.Copy(r.ResponseWriter, src)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) base(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte("{}"))
	}
}

func unsupported(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusMethodNotAllowed, CodeUnsupported, "airlock is a read-only pull-through proxy: "+r.Method+" is not supported")
}

func notFound(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		unsupported(w, r)
		return
	}
	writeError(w, r, http.StatusNotFound, CodeUnsupported, "no such registry API endpoint: "+r.URL.Path)
}

// route resolves the request's repository and checks the upstream's allow list.
func (s *Server) route(w http.ResponseWriter, r *http.Request) (route.Route, bool) {
	rt, err := s.router.Route(mux.Vars(r)["name"], r.URL.Query().Get("ns"))
	switch {
	case errors.Is(err, route.ErrNameInvalid):
		writeError(w, r, http.StatusBadRequest, CodeNameInvalid, err.Error())
		return rt, false
	case err != nil:
		writeError(w, r, http.StatusNotFound, CodeNameUnknown, err.Error())
		return rt, false
	}
	if u := s.allow[rt.Upstream]; !u.Allows(rt.Repository) {
		writeError(w, r, http.StatusForbidden, CodeDenied, fmt.Sprintf("%s/%s is not in the allow list of upstream %s", rt.Upstream, rt.Repository, rt.Upstream))
		return rt, false
	}
	return rt, true
}

// tags lists the tags that have an approved digest; nothing about
// quarantined content is revealed.
func (s *Server) tags(w http.ResponseWriter, r *http.Request) {
	rt, ok := s.route(w, r)
	if !ok {
		return
	}
	recs, err := s.store.Tags(rt.Upstream, rt.Repository)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	var names []string
	for _, t := range recs {
		if _, ok, err := s.store.LastApproved(t); err == nil && ok {
			names = append(names, t.Name)
		}
	}
	sort.Strings(names)
	if last := r.URL.Query().Get("last"); last != "" {
		i := sort.SearchStrings(names, last)
		if i < len(names) && names[i] == last {
			i++
		}
		names = names[i:]
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n >= 0 && n < len(names) {
		names = names[:n]
		if n > 0 {
			w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, r.URL.Path, n, names[n-1]))
		}
	}
	if names == nil {
		names = []string{}
	}
	name := mux.Vars(r)["name"]
	writeJSON(w, r, map[string]any{"name": name, "tags": names})
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, state.ErrUnavailable) {
		// Not knowing is never serving: the client retries, and may
		// reach a replica that still reaches the database.
		s.log.Warn("state database unreachable", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, r, http.StatusServiceUnavailable, CodeUnavailable, "airlock cannot reach its state database; retry later")
		return
	}
	s.log.Error("internal error", "path", r.URL.Path, "err", err)
	writeError(w, r, http.StatusInternalServerError, CodeUnavailable, "internal error; see the airlock log")
}

// routeDigest resolves the repository and the {digest} of the URL.
func (s *Server) routeDigest(w http.ResponseWriter, r *http.Request) (route.Route, digest.Digest, bool) {
	rt, ok := s.route(w, r)
	if !ok {
		return rt, "", false
	}
	raw := mux.Vars(r)["digest"]
	d, err := digest.Parse(raw)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, CodeDigestInvalid, fmt.Sprintf("%q: %v", raw, err))
		return rt, "", false
	}
	return rt, d, true
}
