package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/proxy/route"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// manifest serves GET/HEAD /v2/<name>/manifests/<tag|digest>.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request) {
	rt, ok := s.route(w, r)
	if !ok {
		return
	}
	tag, dgst, err := route.ParseReference(mux.Vars(r)["reference"])
	if err != nil {
		code := CodeManifestInvalid
		if strings.Contains(mux.Vars(r)["reference"], ":") {
			code = CodeDigestInvalid
		}
		writeError(w, r, http.StatusBadRequest, code, err.Error())
		return
	}
	if tag != "" {
		if s.signatureTag(w, r, rt, tag) {
			return
		}
		s.manifestByTag(w, r, rt, tag)
		return
	}
	s.manifestByDigest(w, r, rt, dgst)
}

// manifestByDigest serves a manifest by digest only if it is approved.
func (s *Server) manifestByDigest(w http.ResponseWriter, r *http.Request, rt route.Route, d digest.Digest) {
	ref := state.Ref{Upstream: rt.Upstream, Repository: rt.Repository, Digest: d}
	dec, done := s.tryServe(w, r, ref)
	if done {
		return
	}
	if dec.Image == nil && dec.Known {
		// A platform manifest of an index, or a signature Airlock made:
		// it is served with the image it belongs to, and has no pipeline
		// of its own.
		pulls.WithLabelValues("manifest", "denied").Inc()
		writeError(w, r, http.StatusForbidden, CodeDenied, blockedMessage(ref.String(), "manifest", dec))
		return
	}
	if !dec.Known {
		// Only digests the upstream has get a record: garbage digests
		// must not fill the state store or the queue.
		reg, _ := s.upstreams.Get(rt.Upstream)
		if _, err := reg.Resolve(r.Context(), rt.Repository, string(d)); err != nil {
			s.upstreamError(w, r, ref.String(), err)
			return
		}
	}
	s.quarantined(w, r, ref)
}

// maxRanges is the most byte ranges one blob request may ask for; more get
// the whole blob.
const maxRanges = 16

// zeroSuffixRange matches a request for the last zero bytes.
var zeroSuffixRange = regexp.MustCompile(`^bytes=\s*-0+\s*$`)

// resolveBudget is how long a tag pull waits for the upstream to resolve the tag.
const resolveBudget = 5 * time.Second

// manifestByTag resolves the tag upstream and serves its digest if it is
// approved, or (tag_mode last-approved) the tag's last approved digest.
func (s *Server) manifestByTag(w http.ResponseWriter, r *http.Request, rt route.Route, tag string) {
	reg, _ := s.upstreams.Get(rt.Upstream)
	// A slow upstream must not stall pulls of approved tags: past the
	// budget the last approved digest is served.
	ctx, cancel := context.WithTimeout(r.Context(), resolveBudget)
	defer cancel()
	desc, err := s.resolveTag(ctx, reg, rt, tag)
	if err != nil {
		if errors.Is(err, upstream.ErrNotFound) {
			s.upstreamError(w, r, rt.Upstream+"/"+rt.Repository+":"+tag, err)
			return
		}
		// Upstream unreachable: the last approved digest keeps clients working.
		t, terr := s.store.Tag(rt.Upstream, rt.Repository, tag)
		if terr == nil {
			if img, ok, aerr := s.store.LastApproved(t); aerr == nil && ok {
				s.log.Warn("upstream tag resolution failed; serving the last approved digest", "upstream", rt.Upstream, "repo", rt.Repository, "tag", tag, "digest", string(img.Digest), "err", err)
				s.serveApproved(w, r, img.Ref)
				return
			}
		}
		s.upstreamError(w, r, rt.Upstream+"/"+rt.Repository+":"+tag, err)
		return
	}
	d := digest.Digest(desc.Digest.String())
	t, err := s.store.RecordTag(rt.Upstream, rt.Repository, tag, d, string(desc.MediaType))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ref := state.Ref{Upstream: rt.Upstream, Repository: rt.Repository, Digest: d}
	if _, done := s.tryServe(w, r, ref); done {
		return
	}
	if s.cfg.TagMode == config.TagModeLastApproved {
		if img, ok, err := s.store.LastApproved(t); err == nil && ok {
			// Quarantine the new digest, keep serving the one that passed,
			// and say that a newer one waits.
			pending, err := s.gate.Request(ref, ActorPull)
			if err != nil {
				s.log.Error("request pipeline", "image", ref.String(), "err", err)
			} else {
				w.Header().Set("Airlock-Pending-Digest", string(ref.Digest))
				w.Header().Set("Airlock-Pending-State", string(pending.State))
			}
			s.serveApproved(w, r, img.Ref)
			return
		}
	}
	s.quarantined(w, r, ref)
}

// resolveTag returns the tag's upstream descriptor, cached for gate.tag_ttl.
func (s *Server) resolveTag(ctx context.Context, reg *upstream.Registry, rt route.Route, tag string) (v1.Descriptor, error) {
	key := rt.Upstream + "/" + rt.Repository + ":" + tag
	now := time.Now()
	if s.cfg.TagTTL > 0 {
		s.tagMu.Lock()
		c, ok := s.tagCache[key]
		s.tagMu.Unlock()
		if ok && now.Before(c.expires) {
			return c.desc, nil
		}
	}
	desc, err := reg.Resolve(ctx, rt.Repository, tag)
	if err != nil {
		return desc, err
	}
	if s.cfg.TagTTL > 0 {
		s.tagMu.Lock()
		for k, c := range s.tagCache {
			// Expired entries go on every write, so the cache stays as
			// large as the set of tags pulled within one TTL.
			if now.After(c.expires) {
				delete(s.tagCache, k)
			}
		}
		s.tagCache[key] = cachedTag{desc: desc, expires: now.Add(s.cfg.TagTTL)}
		s.tagMu.Unlock()
	}
	return desc, nil
}

// quarantined starts the pipeline for ref, holds the request for up to
// gate.hold, then serves the image if it was approved meanwhile or answers
// DENIED with its state.
func (s *Server) quarantined(w http.ResponseWriter, r *http.Request, ref state.Ref) {
	img, err := s.gate.Request(ref, ActorPull)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if img.State.InPipeline() && s.cfg.Hold > 0 {
		if img, err = s.gate.Wait(r.Context(), ref, s.cfg.Hold); err != nil {
			s.internal(w, r, err)
			return
		}
	}
	if img.State == state.StateApproved {
		s.serveApproved(w, r, ref)
		return
	}
	pulls.WithLabelValues("manifest", "denied").Inc()
	writeError(w, r, http.StatusForbidden, CodeDenied, DeniedMessage(img))
}

// DeniedMessage is what a client sees for an image that is not approved.
func DeniedMessage(img state.Image) string {
	reason := shorten(img.Reason, 300)
	switch img.State {
	case state.StateRejected:
		return fmt.Sprintf("%s was rejected by policy: %s", img.Ref, reason)
	case state.StateRevoked:
		return fmt.Sprintf("%s was revoked: %s", img.Ref, reason)
	case state.StateFailed:
		if img.Permanent {
			return fmt.Sprintf("%s is in quarantine (failed: %s); it will not be retried unless an admin rescans it", img.Ref, reason)
		}
		return fmt.Sprintf("%s is in quarantine (failed: %s); retry later", img.Ref, reason)
	case state.StateAwaitingApproval:
		return fmt.Sprintf("%s is in quarantine (awaiting-approval: %s)", img.Ref, reason)
	}
	return fmt.Sprintf("%s is in quarantine (%s); retry later", img.Ref, img.State)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// serveApproved serves ref after re-checking, in the same read, that it
// is still approved.
func (s *Server) serveApproved(w http.ResponseWriter, r *http.Request, ref state.Ref) {
	if _, done := s.tryServe(w, r, ref); done {
		return
	}
	img, err := s.store.Image(ref)
	if err != nil {
		img = state.Image{Ref: ref, State: state.StatePending}
	}
	pulls.WithLabelValues("manifest", "denied").Inc()
	writeError(w, r, http.StatusForbidden, CodeDenied, DeniedMessage(img))
}

// tryServe serves manifest ref when an approved image covers it. It
// returns the decision and whether the request has been answered (served,
// or failed with an internal error).
func (s *Server) tryServe(w http.ResponseWriter, r *http.Request, ref state.Ref) (state.Decision, bool) {
	changed := s.store.Changed() // before the decision: see watch
	dec, err := s.store.ManifestDecision(ref.Upstream, ref.Repository, ref.Digest)
	if err != nil {
		s.internal(w, r, err)
		return dec, true
	}
	if dec.Serve {
		s.serveManifest(w, r, ref, dec, changed)
		return dec, true
	}
	return dec, false
}

// serveManifest writes an approved manifest from the content store.
func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, ref state.Ref, dec state.Decision, changed <-chan struct{}) {
	mt := dec.MediaType
	if dec.Image != nil && dec.Image.MediaType != "" {
		mt = dec.Image.MediaType
	}
	raw, err := s.content.Get(r.Context(), ref.Digest)
	if err != nil {
		pulls.WithLabelValues("manifest", "error").Inc()
		s.internal(w, r, fmt.Errorf("approved manifest %s missing from the content store: %w", ref, err))
		return
	}
	if mt == "" {
		var m struct {
			MediaType string `json:"mediaType"`
		}
		_ = json.Unmarshal(raw, &m)
		mt = m.MediaType
	}
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Docker-Content-Digest", string(ref.Digest))
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	h.Set("ETag", `"`+string(ref.Digest)+`"`)
	pulls.WithLabelValues("manifest", "served").Inc()
	if r.Method == http.MethodHead {
		s.recordPull(r, ref, dec)
		return
	}
	defer s.watch(w, changed, ref.String(), func() bool {
		d, err := s.store.ManifestDecision(ref.Upstream, ref.Repository, ref.Digest)
		return err == nil && d.Serve
	})()
	if _, err := w.Write(raw); err == nil {
		s.recordPull(r, ref, dec)
	}
}

// blockedMessage says why content that Airlock knows is not served: which
// image stands in the way, and in what state.
func blockedMessage(name, kind string, dec state.Decision) string {
	b := dec.Blocked
	switch {
	case b == nil:
		return name + " belongs to no approved image in this repository"
	case dec.Image != nil && b.Digest == dec.Image.Digest:
		return DeniedMessage(*b)
	}
	return name + " is a " + kind + " of " + DeniedMessage(*b)
}

// blob serves GET/HEAD /v2/<name>/blobs/<digest> (with Range) only when the
// serving rule (storage/state) allows it in this repository: a config or
// layer of a servable manifest, or a blob of Airlock's current artifact.
func (s *Server) blob(w http.ResponseWriter, r *http.Request) {
	rt, d, ok := s.routeDigest(w, r)
	if !ok {
		return
	}
	changed := s.store.Changed() // before the decision: see watch
	dec, err := s.store.BlobDecision(rt.Upstream, rt.Repository, d)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	name := rt.Upstream + "/" + rt.Repository + "@" + string(d)
	switch {
	case !dec.Known:
		writeError(w, r, http.StatusNotFound, CodeBlobUnknown, name+" is not a blob of any approved image in this repository")
		return
	case !dec.Serve:
		pulls.WithLabelValues("blob", "denied").Inc()
		writeError(w, r, http.StatusForbidden, CodeDenied, blockedMessage(name, "blob", dec))
		return
	}
	if s.redirect > 0 && r.Method == http.MethodGet {
		// Decided above like any download; the URL is as short-lived
		// as storage.redirect_ttl says, and is only handed out now.
		u, err := s.content.RedirectURL(d, s.redirect)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if u != "" {
			pulls.WithLabelValues("blob", "redirected").Inc()
			w.Header().Set("Docker-Content-Digest", string(d))
			http.Redirect(w, r, u, http.StatusTemporaryRedirect)
			return
		}
	}
	rc, size, err := s.content.Open(r.Context(), d)
	if errors.Is(err, content.ErrNotFound) {
		pulls.WithLabelValues("blob", "error").Inc()
		s.log.Error("approved blob missing from the content store", "blob", name)
		writeError(w, r, http.StatusNotFound, CodeBlobUnknown, name+" is missing from airlock's content store")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Docker-Content-Digest", string(d))
	h.Set("ETag", `"`+string(d)+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	h.Set("Content-Type", "application/octet-stream")
	pulls.WithLabelValues("blob", "served").Inc()
	if rh := r.Header.Get("Range"); rh != "" {
		switch {
		case zeroSuffixRange.MatchString(rh):
			// "the last 0 bytes" cannot be satisfied (RFC 9110 14.1.2);
			// net/http would answer an empty 206.
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		case strings.Count(rh, ",") >= maxRanges:
			// Many small ranges make a multipart answer far larger than
			// the blob; the whole blob is the cheaper, allowed answer.
			r.Header.Del("Range")
		}
	}
	if r.Method != http.MethodHead {
		defer s.watch(w, changed, name, func() bool {
			d, err := s.store.BlobDecision(rt.Upstream, rt.Repository, d)
			return err == nil && d.Serve
		})()
	}
	// ServeContent answers Range, If-None-Match and HEAD correctly.
	http.ServeContent(w, r, "", time.Time{}, rc)
}

// upstreamError answers for an upstream that said no or could not be reached.
func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, upstream.ErrNotFound) {
		writeError(w, r, http.StatusNotFound, CodeManifestUnknown, what+" does not exist upstream")
		return
	}
	pulls.WithLabelValues("manifest", "error").Inc()
	s.log.Warn("upstream unavailable", "image", what, "err", err)
	status := http.StatusServiceUnavailable
	if errors.Is(err, upstream.ErrUnreachable) {
		// The upstream's name does not resolve or nothing listens at its
		// address. Clients retry a 503 (crane and cosign wait 1s, then
		// 3s) and would show this after ~4s for nothing: 424 Failed
		// Dependency is not retried, and says the failure is upstream.
		status = http.StatusFailedDependency
	}
	// The cause (DNS failure, refused connection, the registry's own
	// error) tells the client's operator what to fix; upstream.Cause
	// keeps credentials and signed URLs out of it.
	writeError(w, r, status, CodeUnavailable, what+": upstream unavailable: "+upstream.Cause(err))
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	writeJSONAs(w, r, v)
}

// writeJSONAs writes v with the Content-Type already set.
func writeJSONAs(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, CodeUnavailable, "encode response")
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
