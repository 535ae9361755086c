// Package admin is Airlock's admin HTTP API: list and inspect images,
// approve, revoke and rescan them, read the audit log; plus the health,
// readiness and Prometheus endpoints. It listens apart from the registry
// API and requires a bearer token on /api/: the bootstrap admin token or
// an API token with a role (roles.go, tokens.go).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlockproxy/airlock/events"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/retention"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// maxBodyBytes bounds admin request bodies.
const maxBodyBytes = 64 << 10

// ActionRequest is the body of POST /api/v1/{approve,revoke,rescan}.
type ActionRequest struct {
	// Image is "<upstream>/<repo>@<digest>" or "<upstream>/<repo>:<tag>".
	Image string `json:"image"`
	// Reason is recorded in the audit log and shown to clients.
	Reason string `json:"reason"`
	// Actor is accepted for compatibility and ignored: the audit actor is
	// the authenticated identity (the token's name, or "admin").
	//
	// Deprecated: authenticate with a token of your own instead.
	Actor string `json:"actor,omitempty"`
	// AllowFallback (revoke by tag only) lets the tag fall back to its
	// previous approved digest. Without it a revoke by tag refuses the tag
	// until a digest newer than the revoked one is approved.
	AllowFallback bool `json:"allow_fallback,omitempty"`
}

// ActionResult is the answer of POST /api/v1/{approve,revoke,rescan}: the
// image record as it is now, plus what happened to a tag, in words.
type ActionResult struct {
	state.Image
	// Message says what a revoke by tag did to the tag, e.g. "tag latest is
	// refused until a digest newer than sha256:… is approved"; or, for an
	// approval that needs more approvers (answered 202 Accepted), what was
	// recorded: "approval 1 of 2 recorded (alice); pending a second approver".
	Message string `json:"message,omitempty"`
	// ApprovalsRequired is gate.approvals_required, set on approve answers.
	ApprovalsRequired int `json:"approvals_required,omitempty"`
}

// ListedImage is one image of GET /api/v1/images: the record plus, for
// each of its tags, how the tag relates to this digest now.
type ListedImage struct {
	state.Image
	// TagStatus maps each tag in Tags to TagCurrent, TagUpstream or TagOlder.
	TagStatus map[string]string `json:"tag_status,omitempty"`
}

// The values of ListedImage.TagStatus.
const (
	// TagCurrent: a pull of the tag gets this digest now.
	TagCurrent = "current"
	// TagUpstream: the tag points to this digest upstream, but a pull gets
	// another digest (the last approved one) or is refused.
	TagUpstream = "upstream"
	// TagOlder: an earlier digest of the tag, not what a pull gets now.
	TagOlder = "older"
)

// ImageDetail is the answer of GET /api/v1/images/<image>.
type ImageDetail struct {
	Image state.Image   `json:"image"`
	Job   *state.Job    `json:"job,omitempty"`
	Audit []state.Entry `json:"audit"`
	// ApprovalsRequired is how many different approvers an approval needs
	// (gate.approvals_required); Image.Approvals lists those pending.
	ApprovalsRequired int `json:"approvals_required"`
}

// VulnDB is the vulnerability database the admin API reports on and imports into.
type VulnDB interface {
	Status() (scan.DBStatus, error)
	Import(path string) (scan.DBStatus, error)
}

// Server is the admin API.
type Server struct {
	engine  *gate.Engine
	store   *state.Store
	content *content.Store
	vulndb  VulnDB
	token   [32]byte
	ready   func() error
	log     *slog.Logger
	tmpDir  string
	pubKey  []byte
	// settings is the redacted configuration (WithSettings), nil without.
	settings []byte

	// upstreams maps configured upstream names and aliases to names;
	// nil when WithUpstreams was not given. See checkUpstream.
	upstreams     map[string]string
	upstreamNames []string
	dbMaxSize     int64 // upload bound of DB imports; see WithDBMaxSize
	// reloadMalware has the malware scanner load its signatures again and
	// returns its engine and database version; nil without malware.clamd.
	reloadMalware func(context.Context) (string, error)
	// events describes the webhook endpoints (GET /api/v1/events); nil without WithEvents.
	events *events.Deliverer
	// gc runs retention and the content garbage collector (POST
	// /api/v1/gc); nil without WithGC.
	gc *retention.Collector
	// watches lists, adds and removes watched repositories (watch.go); nil without WithWatches.
	watches Watches
	// invokeState serves in-process calls (invoke.go).
	invokeState
}

// Option configures the admin API.
type Option func(*Server)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithMalwareReload enables POST /api/v1/malware/reload: reload has the
// malware scanner (clamd) load its signature database again and returns
// the scanner's version line.
func WithMalwareReload(reload func(context.Context) (string, error)) Option {
	return func(s *Server) { s.reloadMalware = reload }
}

// WithReady sets the readiness check behind /readyz.
func WithReady(fn func() error) Option { return func(s *Server) { s.ready = fn } }

// WithScanning enables the SBOM, vulnerability and DB endpoints. Uploaded
// DB archives are spooled in tmpDir.
func WithScanning(cs *content.Store, db VulnDB, tmpDir string) Option {
	return func(s *Server) { s.content, s.vulndb, s.tmpDir = cs, db, tmpDir }
}

// WithPublicKey serves the enterprise signing public key at /airlock.pub
// (no token: it is public) and /api/v1/keys/public.
func WithPublicKey(pem []byte) Option { return func(s *Server) { s.pubKey = pem } }

// New returns the admin API. token must not be empty.
func New(engine *gate.Engine, store *state.Store, token string, opts ...Option) (*Server, error) {
	if token == "" {
		return nil, errors.New("admin API: no token configured (set admin.token or AIRLOCK_ADMIN_TOKEN)")
	}
	s := &Server{engine: engine, store: store, token: sha256.Sum256([]byte(token)), log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Handler returns the admin HTTP handler.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true)
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.HandleFunc("/readyz", s.readyz)
	r.Handle("/metrics", promhttp.Handler())
	r.HandleFunc("/airlock.pub", s.publicKey).Methods(http.MethodGet)
	api := r.PathPrefix("/api/v1").Subrouter()
	api.Use(s.auth)
	api.HandleFunc("/images", s.listImages).Methods(http.MethodGet)
	api.HandleFunc("/images/{image:.+}/vulnerabilities", s.vulnerabilities).Methods(http.MethodGet)
	api.HandleFunc("/images/{image:.+}/sbom", s.sbom).Methods(http.MethodGet)
	api.HandleFunc("/images/{image:.+}/pulls", s.pulls).Methods(http.MethodGet)
	api.HandleFunc("/images/{image:.+}", s.showImage).Methods(http.MethodGet)
	api.HandleFunc("/vulnerabilities/{id}", s.whereIs).Methods(http.MethodGet)
	api.HandleFunc("/db", s.dbStatus).Methods(http.MethodGet)
	api.HandleFunc("/db/import", s.dbImport).Methods(http.MethodPost)
	api.HandleFunc("/malware/reload", s.malwareReload).Methods(http.MethodPost)
	api.HandleFunc("/approve", s.action(byRef(s.engine.Approve))).Methods(http.MethodPost)
	api.HandleFunc("/revoke", s.action(s.revoke)).Methods(http.MethodPost)
	api.HandleFunc("/rescan", s.action(byRef(s.engine.Rescan))).Methods(http.MethodPost)
	api.HandleFunc("/audit", s.audit).Methods(http.MethodGet)
	api.HandleFunc("/jobs", s.jobs).Methods(http.MethodGet)
	api.HandleFunc("/events", s.eventsStatus).Methods(http.MethodGet)
	api.HandleFunc("/watches", s.listWatches).Methods(http.MethodGet)
	api.HandleFunc("/watches", s.addWatch).Methods(http.MethodPost)
	api.HandleFunc("/watches/{image:.+}", s.removeWatch).Methods(http.MethodDelete)
	api.HandleFunc("/keys/public", s.publicKey).Methods(http.MethodGet)
	api.HandleFunc("/settings", s.settingsYAML).Methods(http.MethodGet)
	api.HandleFunc("/tokens", s.listTokens).Methods(http.MethodGet)
	api.HandleFunc("/tokens", s.createToken).Methods(http.MethodPost)
	api.HandleFunc("/tokens/{name}", s.revokeToken).Methods(http.MethodDelete)
	s.retentionRoutes(api) // retention.go: /gc, /pin, /unpin
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeErr(w, http.StatusNotFound, errors.New("no such endpoint"))
	})
	notAllowed := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeErr(w, http.StatusMethodNotAllowed, errors.New("method not allowed"))
	})
	// gorilla/mux reports method mismatches per router, so the
	// subrouter needs its own handler.
	r.MethodNotAllowedHandler = notAllowed
	api.MethodNotAllowedHandler = notAllowed
	return r
}

// auth authenticates and authorizes every /api/ request. The bearer
// token is the bootstrap admin.token (identity "admin", role admin) or an
// API token, looked up by its SHA-256 (identity: the token's name). The
// bootstrap comparison is constant-time over hashes, so neither content
// nor length leaks; an API token's hash is the lookup key. An unknown,
// expired or revoked token is 401, a role below the route's (routeRoles)
// 403; both are logged with who tried (never the token) and the path.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, status, err := s.authenticate(r)
		if inv, ok := r.Context().Value(invokedKey{}).(Identity); ok {
			// An in-process call (Invoke) for an identity the caller
			// authenticated; remote requests cannot carry this value.
			id, status, err = inv, 0, nil
		}
		if err == nil {
			if err = allowed(id, r); err != nil {
				status = http.StatusForbidden
			}
		}
		if err != nil {
			who := id.Name
			if who == "" {
				who = "anonymous"
			}
			s.log.Warn("admin API: request denied", "identity", who, "role", string(id.Role),
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", status, "error", err)
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="airlock-admin"`)
			}
			writeErr(w, status, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	})
}

// authenticate returns the identity the request's bearer token stands
// for, or the status and error to answer. On an expired or revoked token
// the identity names it, so the refusal is logged with who tried.
func (s *Server) authenticate(r *http.Request) (Identity, int, error) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || got == "" {
		return Identity{}, http.StatusUnauthorized, errors.New("a valid bearer token is required")
	}
	return s.AuthenticateHash(sha256.Sum256([]byte(got)))
}

// AuthenticateHash returns the identity of the token whose secret has the
// SHA-256 sum: the bootstrap admin or an active API token; otherwise the
// status and error to answer (see auth).
func (s *Server) AuthenticateHash(sum [32]byte) (Identity, int, error) {
	if subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1 {
		return Identity{Name: BootstrapIdentity, Role: RoleAdmin}, 0, nil
	}
	tok, err := s.store.TokenByHash(sum)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return Identity{}, http.StatusUnauthorized, errors.New("a valid bearer token is required")
	case err != nil:
		return Identity{}, http.StatusServiceUnavailable, fmt.Errorf("cannot check the token: %w", err)
	}
	want, _ := hex.DecodeString(tok.Hash)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Identity{}, http.StatusUnauthorized, errors.New("a valid bearer token is required")
	}
	id := Identity{Name: tok.Name, Role: Role(tok.Role)}
	now := time.Now()
	switch {
	case !tok.Revoked.IsZero():
		return id, http.StatusUnauthorized, fmt.Errorf("token %s was revoked at %s", tok.Name, tok.Revoked.Format(time.RFC3339))
	case !tok.Active(now):
		return id, http.StatusUnauthorized, fmt.Errorf("token %s expired at %s", tok.Name, tok.Expires.Format(time.RFC3339))
	case !id.Role.Valid():
		return id, http.StatusForbidden, fmt.Errorf("token %s has no valid role (%q)", tok.Name, tok.Role)
	}
	return id, 0, nil
}

func (s *Server) publicKey(w http.ResponseWriter, _ *http.Request) {
	if len(s.pubKey) == 0 {
		writeErr(w, http.StatusNotFound, errors.New("signing is not enabled (no signing.key)"))
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(s.pubKey)
}

// ErrDegraded marks a readiness error under which the process still
// serves: /readyz answers 200 with "degraded: ..." so a load balancer
// keeps the replica, and monitoring sees the reason.
var ErrDegraded = errors.New("degraded")

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.ready != nil {
		if err := s.ready(); errors.Is(err, ErrDegraded) {
			w.Header().Set("Airlock-Degraded", "true")
			_, _ = w.Write([]byte(err.Error() + "\n"))
			return
		} else if err != nil {
			writeErr(w, http.StatusServiceUnavailable, err)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	st := state.State(r.URL.Query().Get("state"))
	if st != "" && !st.Valid() {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown state %q", st))
		return
	}
	imgs, err := s.store.Images(st)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	// ?repo=<upstream>/<repository> keeps one repository's images: the
	// tag status below reads every listed tag's record, and a page about
	// one image (the console's) needs only its repository's.
	if repo := r.URL.Query().Get("repo"); repo != "" {
		imgs = slices.DeleteFunc(imgs, func(i state.Image) bool { return i.Repo() != repo })
	}
	// ?flagged=true keeps the images a rescan flagged (false: the others):
	// the console's queue looks for flagged ones among every approved image.
	if v := r.URL.Query().Get("flagged"); v != "" {
		flagged, err := strconv.ParseBool(v)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("flagged: %q is not true or false", v))
			return
		}
		imgs = slices.DeleteFunc(imgs, func(i state.Image) bool { return (i.Flag != "") != flagged })
	}
	out, err := s.tagStatus(imgs)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": out})
}

// tagStatus marks, for every tag of every image, whether a pull of the tag
// gets that digest now; each tag's record is read once.
func (s *Server) tagStatus(imgs []state.Image) ([]ListedImage, error) {
	type resolved struct {
		upstream, serves digest.Digest
	}
	tags := map[string]resolved{}
	out := make([]ListedImage, 0, len(imgs))
	for _, img := range imgs {
		li := ListedImage{Image: img}
		li.Approvals = img.PendingApprovals(time.Now())
		for _, name := range img.Tags {
			key := img.Repo() + ":" + name
			res, ok := tags[key]
			if !ok {
				t, err := s.store.Tag(img.Upstream, img.Repository, name)
				if errors.Is(err, state.ErrNotFound) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("tag %s: %w", key, err)
				}
				if cur, ok := t.Current(); ok {
					res.upstream = cur.Digest
				}
				served, ok, err := s.engine.TagServes(t)
				if err != nil {
					return nil, fmt.Errorf("tag %s: %w", key, err)
				}
				if ok {
					res.serves = served.Digest
				}
				tags[key] = res
			}
			if li.TagStatus == nil {
				li.TagStatus = map[string]string{}
			}
			switch img.Digest {
			case res.serves:
				li.TagStatus[name] = TagCurrent
			case res.upstream:
				li.TagStatus[name] = TagUpstream
			default:
				li.TagStatus[name] = TagOlder
			}
		}
		out = append(out, li)
	}
	return out, nil
}

// imageRef reads the image the URL names ({image}): its upstream must be
// configured and its reference valid. On failure it has answered.
func (s *Server) imageRef(w http.ResponseWriter, r *http.Request) (state.Ref, bool) {
	image := mux.Vars(r)["image"]
	if err := s.checkUpstream(image); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return state.Ref{}, false
	}
	ref, err := s.engine.ParseImage(image)
	if err != nil {
		writeErr(w, statusOf(err), err)
		return state.Ref{}, false
	}
	return ref, true
}

func (s *Server) showImage(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.imageRef(w, r)
	if !ok {
		return
	}
	img, err := s.store.Image(ref)
	if errors.Is(err, state.ErrNotFound) {
		// A platform manifest of an index has no record of its own until
		// an admin decides on it: show the state it follows.
		if idx, link, cerr := s.store.ChildOf(ref); cerr == nil {
			img, err = idx, nil
			img.Ref, img.MediaType, img.Size, img.ContentSize = ref, link.MediaType, link.Size, 0
			img.Reason = fmt.Sprintf("platform manifest of %s; follows its state (%s: %s)", idx.Ref, idx.State, idx.Reason)
			img.Manifests, img.Blobs, img.Tags, img.Signed = nil, nil, nil, nil
		}
	}
	if err != nil {
		writeErr(w, statusOf(err), fmt.Errorf("%s: %w", ref, err))
		return
	}
	// An expired pending approval no longer counts: do not show it.
	img.Approvals = img.PendingApprovals(time.Now())
	d := ImageDetail{Image: img, ApprovalsRequired: s.engine.ApprovalsRequired()}
	if job, err := s.store.Job(ref); err == nil {
		d.Job = &job
	}
	if d.Audit, err = s.store.Audit(ref.String(), 200); err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// actionFunc is one admin decision on the image an ActionRequest names;
// the string is what it did to a tag, in words, if anything.
type actionFunc func(t gate.Target, req ActionRequest, actor string) (state.Image, string, error)

// byRef adapts a decision that acts on the digest alone (approve, rescan);
// allow_fallback means nothing to it and is refused rather than ignored.
func byRef(do func(state.Ref, string, string) (state.Image, error)) actionFunc {
	return func(t gate.Target, req ActionRequest, actor string) (state.Image, string, error) {
		if req.AllowFallback {
			return state.Image{}, "", errors.New("allow_fallback applies to revoke by tag only")
		}
		img, err := do(t.Ref, actor, req.Reason)
		return img, "", err
	}
}

// revoke revokes by digest, or by tag: then, unless allow_fallback, the tag
// is refused until a newer digest is approved (gate.Engine.RevokeTarget).
func (s *Server) revoke(t gate.Target, req ActionRequest, actor string) (state.Image, string, error) {
	if req.AllowFallback && t.Tag == "" {
		return state.Image{}, "", errors.New("allow_fallback applies to revoke by tag only: a revoke by digest always lets its tags fall back")
	}
	return s.engine.RevokeTarget(t, req.AllowFallback, actor, req.Reason)
}

// actionRequest reads and checks the body of an action (approve, revoke,
// rescan, pin, unpin): the request, the image it names and the audit
// actor. On failure it has answered the client.
func (s *Server) actionRequest(w http.ResponseWriter, r *http.Request) (ActionRequest, gate.Target, string, bool) {
	var req ActionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return req, gate.Target{}, "", false
	}
	if err := s.checkAction(req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return req, gate.Target{}, "", false
	}
	target, err := s.engine.ParseTarget(req.Image)
	if err != nil {
		writeErr(w, statusOf(err), err)
		return req, gate.Target{}, "", false
	}
	return req, target, IdentityOf(r).Name, true
}

func (s *Server) action(do actionFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, target, actor, ok := s.actionRequest(w, r)
		if !ok {
			return
		}
		ref := target.Ref
		img, msg, err := do(target, req, actor)
		if errors.Is(err, gate.ErrApprovalPending) {
			// Recorded, not yet approved (gate.approvals_required).
			img.Approvals = img.PendingApprovals(time.Now())
			writeJSON(w, http.StatusAccepted, ActionResult{Image: img, Message: err.Error(), ApprovalsRequired: s.engine.ApprovalsRequired()})
			return
		}
		if err != nil {
			err = s.describeConflict(r, ref, err)
			status := statusOf(err)
			if status < http.StatusInternalServerError {
				// A refused decision (the same approver again, an image
				// in the wrong state) is a denied action: who tried.
				s.log.Warn("admin API: action refused", "identity", actor, "method", r.Method, "path", r.URL.Path,
					"image", ref.String(), "status", status, "error", err)
			}
			writeErr(w, status, err)
			return
		}
		res := ActionResult{Image: img, Message: msg}
		if strings.HasSuffix(r.URL.Path, "/approve") {
			res.ApprovalsRequired = s.engine.ApprovalsRequired()
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a whole number", v))
			return
		}
		limit = n
	}
	entries, err := s.store.Audit(r.URL.Query().Get("image"), limit)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	if entries == nil {
		entries = []state.Entry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}

func (s *Server) jobs(w http.ResponseWriter, _ *http.Request) {
	jobs, err := s.store.Jobs()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	if jobs == nil {
		jobs = []state.Job{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": jobs, "time": time.Now().UTC()})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, state.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, state.ErrConflict), errors.Is(err, gate.ErrNotFetched), errors.Is(err, state.ErrSameApprover):
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
