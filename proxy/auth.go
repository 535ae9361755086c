package proxy

import (
	"net/http"
	"strings"
)

// CodeUnauthorized is the OCI error code of a request without valid
// credentials when pull authentication is on.
const CodeUnauthorized = "UNAUTHORIZED"

// Authenticator checks who pulls when pull authentication is on
// (registry.auth; package pullauth implements it).
type Authenticator interface {
	// Authenticate returns who r's credentials stand for when they may
	// pull repository ("" asks only for valid credentials), or an error.
	Authenticate(r *http.Request, repository string) (string, error)
	// Status is the HTTP status of an Authenticate error: 401, 429 or 503.
	Status(err error) int
	// Challenge is the WWW-Authenticate value of a 401 for repository.
	Challenge(r *http.Request, repository string) string
	// ServeToken serves GET /token, the registry token endpoint.
	ServeToken(w http.ResponseWriter, r *http.Request)
}

// WithAuth turns pull authentication on: every request but /healthz and
// /token needs credentials a, checked before routing, so that a client
// without them learns nothing (not even whether a repository exists).
func WithAuth(a Authenticator) Option { return func(s *Server) { s.auth = a } }

// authorize checks r's credentials when pull authentication is on, and
// otherwise answers the request. It returns who is pulling ("" when
// authentication is off) and whether to go on.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.auth == nil || r.URL.Path == "/healthz" || r.URL.Path == "/token" {
		return "", true
	}
	repo := repositoryOf(r.URL.Path)
	who, err := s.auth.Authenticate(r, repo)
	if err == nil {
		return who, true
	}
	switch status := s.auth.Status(err); status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		writeError(w, r, status, CodeTooManyRequests, err.Error())
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		writeError(w, r, status, CodeUnavailable, err.Error())
	default:
		w.Header().Set("WWW-Authenticate", s.auth.Challenge(r, repo))
		writeError(w, r, http.StatusUnauthorized, CodeUnauthorized, err.Error())
	}
	return "", false
}

// repositoryOf is the repository name of a registry API path, as the
// router reads it ({name:.+} before the last /manifests/<ref>,
// /blobs/<digest>, /referrers/<digest> or /tags/list), or "" for /v2/
// and paths that name none.
func repositoryOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	for _, kind := range []string{"/manifests/", "/blobs/", "/referrers/"} {
		i := strings.LastIndex(rest, kind)
		if i <= 0 {
			continue
		}
		if ref := rest[i+len(kind):]; ref != "" && !strings.Contains(ref, "/") {
			return rest[:i]
		}
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return name
	}
	return ""
}
