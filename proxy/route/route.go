// Package route maps the repository names registry clients ask for to
// upstream repositories: containerd's ?ns=<host>, a /v2/<upstream name or
// alias>/<repo> prefix, and the default upstream for bare names (with
// Docker Hub's library/ rule). It also validates names, tags and digests
// against the distribution spec.
package route

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
)

// maxNameLength is the distribution spec's limit on a repository name.
const maxNameLength = 255

var (
	// nameRegexp is the distribution spec's repository name grammar.
	nameRegexp = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	// tagRegexp is the distribution spec's tag grammar.
	tagRegexp = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// Routing errors.
var (
	ErrNameInvalid      = errors.New("invalid repository name")
	ErrUnknownUpstream  = errors.New("unknown upstream")
	ErrReferenceInvalid = errors.New("invalid tag or digest")
)

// Route is where a registry request goes: an upstream and a repository on it.
type Route struct {
	// Upstream is the configured upstream name.
	Upstream string
	// Repository is the repository on the upstream ("library/alpine").
	Repository string
}

// Router maps the names clients ask for to upstream repositories, three ways:
// containerd's ?ns=<host>, a /v2/<upstream-name-or-alias>/<repo> prefix,
// and the default upstream for bare names.
type Router struct {
	byKey     map[string]string // name or alias -> upstream name
	names     map[string]bool   // upstream names (what ns may say)
	aliasOf   map[string]string // upstream name -> alias
	def       string
	dockerHub map[string]bool
}

// NewRouter builds the router for the configured upstreams.
func NewRouter(ups []config.Upstream) *Router {
	rt := &Router{byKey: map[string]string{}, names: map[string]bool{}, aliasOf: map[string]string{}, dockerHub: map[string]bool{}}
	for _, u := range ups {
		rt.byKey[u.Name] = u.Name
		rt.names[u.Name] = true
		if u.Alias != "" {
			rt.byKey[u.Alias] = u.Name
			rt.aliasOf[u.Name] = u.Alias
		}
		if u.Default {
			rt.def = u.Name
		}
		if u.Name == config.DockerHubName {
			rt.dockerHub[u.Name] = true
		}
	}
	return rt
}

// Route resolves the repository name of a request and the ns query value
// (empty when the client sent none).
func (rt *Router) Route(name, ns string) (Route, error) {
	if err := ValidateName(name); err != nil {
		return Route{}, err
	}
	first, rest, hasRest := strings.Cut(name, "/")
	var r Route
	switch {
	case ns != "":
		if !rt.names[ns] {
			return Route{}, fmt.Errorf("ns %q: %w", ns, ErrUnknownUpstream)
		}
		r = Route{Upstream: ns, Repository: name}
		// containerd with override_path sends /v2/<alias>/<repo>?ns=<host>.
		if hasRest && (first == ns || first == rt.aliasOf[ns]) {
			r.Repository = rest
		}
	case hasRest && rt.byKey[first] != "":
		r = Route{Upstream: rt.byKey[first], Repository: rest}
	case rt.def != "":
		r = Route{Upstream: rt.def, Repository: name}
	default:
		return Route{}, fmt.Errorf("%q names no configured upstream and there is no default upstream: %w", name, ErrUnknownUpstream)
	}
	if rt.dockerHub[r.Upstream] && !strings.Contains(r.Repository, "/") {
		// Docker Hub's official images live under library/.
		r.Repository = "library/" + r.Repository
	}
	return r, nil
}

// ValidateName checks a repository name against the distribution spec.
func ValidateName(name string) error {
	if name == "" || len(name) > maxNameLength {
		return fmt.Errorf("name of %d characters (1..%d allowed): %w", len(name), maxNameLength, ErrNameInvalid)
	}
	if !nameRegexp.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrNameInvalid)
	}
	return nil
}

// ParseReference splits a manifest reference into a tag or a digest.
func ParseReference(ref string) (tag string, dgst digest.Digest, err error) {
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return "", "", fmt.Errorf("%q: %w: %v", ref, ErrReferenceInvalid, err)
		}
		return "", d, nil
	}
	if !tagRegexp.MatchString(ref) {
		return "", "", fmt.Errorf("%q: %w", ref, ErrReferenceInvalid)
	}
	return ref, "", nil
}
