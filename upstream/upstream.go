// Package upstream talks to the registries Airlock pulls from: tag
// resolution, manifest and blob fetches with each upstream's credentials.
// Concurrent identical requests share one upstream round trip.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/airlockproxy/airlock/config"
)

// ErrNotFound means the upstream answered that the manifest, tag or blob does not exist.
var ErrNotFound = errors.New("not found upstream")

// ErrTooLarge means a manifest is larger than the configured limit.
var ErrTooLarge = errors.New("manifest exceeds the size limit")

// ErrUnreachable means the upstream could not be reached at all: its name
// does not resolve, or nothing accepts connections at its address.
var ErrUnreachable = errors.New("upstream unreachable")

// resolveTimeout bounds one tag resolution; a client waiting on it gets the
// last approved digest instead when it runs out.
const resolveTimeout = 15 * time.Second

// Registry is one configured upstream.
type Registry struct {
	cfg     config.Upstream
	reg     name.Registry
	puller  *remote.Puller
	opts    []remote.Option
	flights singleflight.Group
	// polite applies rate_limit and 429 cool-downs to every request (ratelimit.go).
	polite *politeTransport
}

// Option configures a Registry.
type Option func(*options)

type options struct {
	transport http.RoundTripper
	userAgent string
}

// WithTransport sets the base HTTP transport (tests count or break requests with it).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithUserAgent sets the User-Agent sent upstream.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// New returns the client of one upstream.
func New(cfg config.Upstream, opts ...Option) (*Registry, error) {
	o := options{userAgent: "airlock"}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: url: %w", cfg.Name, err)
	}
	var nameOpts []name.Option
	if cfg.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	if o.transport == nil {
		o.transport = defaultTransport(cfg.Insecure)
	}
	polite := newPoliteTransport(cfg.Name, cfg.RateLimit, o.transport)
	auth := authn.Anonymous
	if cfg.Username != "" {
		pw, err := cfg.Password()
		if err != nil {
			return nil, err
		}
		auth = authn.FromConfig(authn.AuthConfig{Username: cfg.Username, Password: pw})
	}
	// The Puller caches one authenticated fetcher per repository, so a
	// token handshake happens once per repository, not once per blob.
	ropts := []remote.Option{
		remote.WithAuth(auth),
		remote.WithTransport(polite),
		remote.WithRetryStatusCodes(retryStatusCodes...),
		remote.WithUserAgent(o.userAgent),
		remote.WithRetryPredicate(retryable),
	}
	p, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	return &Registry{cfg: cfg, reg: reg, puller: p, opts: append(ropts, remote.Reuse(p)), polite: polite}, nil
}

func defaultTransport(insecure bool) http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = 30 * time.Second
	t.MaxIdleConnsPerHost = 16
	if insecure && t.TLSClientConfig != nil {
		t.TLSClientConfig.InsecureSkipVerify = true
	}
	return t
}

// Name returns the upstream's configured name.
func (r *Registry) Name() string { return r.cfg.Name }

// Config returns the upstream's configuration.
func (r *Registry) Config() config.Upstream { return r.cfg }

// Repository returns repo on this upstream as go-containerregistry names it.
func (r *Registry) Repository(repo string) name.Repository { return r.reg.Repo(repo) }

// RemoteOptions returns go-containerregistry options that reach this
// upstream with its credentials, sharing its authenticated connections.
func (r *Registry) RemoteOptions() []remote.Option { return r.opts }

// Resolve asks the upstream what reference (a tag or digest) points to,
// with a HEAD request. Concurrent resolutions of the same reference share
// one request.
func (r *Registry) Resolve(ctx context.Context, repo, reference string) (v1.Descriptor, error) {
	ch := r.flights.DoChan("head\x00"+repo+"\x00"+reference, func() (any, error) {
		// The shared request must not die with the first caller's context.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resolveTimeout)
		defer cancel()
		var ref name.Reference
		if d, err := digest.Parse(reference); err == nil {
			ref = r.Repository(repo).Digest(d.String())
		} else {
			ref = r.Repository(repo).Tag(reference)
		}
		desc, err := r.puller.Head(ctx, ref)
		if err != nil {
			return nil, classify(fmt.Sprintf("resolve %s/%s:%s", r.cfg.Name, repo, reference), err)
		}
		return *desc, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return v1.Descriptor{}, res.Err
		}
		return res.Val.(v1.Descriptor), nil
	case <-ctx.Done():
		// The caller gives up (e.g. to serve the last approved digest);
		// the shared request finishes for the others.
		return v1.Descriptor{}, fmt.Errorf("resolve %s/%s:%s: %w", r.cfg.Name, repo, reference, ctx.Err())
	}
}

// Manifest fetches manifest d of repo and returns its bytes and media type.
// The bytes are checked against d; manifests over max bytes are refused.
func (r *Registry) Manifest(ctx context.Context, repo string, d digest.Digest, max int64) ([]byte, string, error) {
	what := fmt.Sprintf("fetch manifest %s/%s@%s", r.cfg.Name, repo, d)
	desc, err := r.puller.Get(ctx, r.Repository(repo).Digest(d.String()))
	if err != nil {
		return nil, "", classify(what, err)
	}
	if int64(len(desc.Manifest)) > max {
		return nil, "", fmt.Errorf("%s: %d bytes: %w (limits.max_manifest_bytes is %d)", what, len(desc.Manifest), ErrTooLarge, max)
	}
	if got := digest.FromBytes(desc.Manifest); got != d {
		return nil, "", fmt.Errorf("%s: upstream sent content with digest %s", what, got)
	}
	return desc.Manifest, string(desc.MediaType), nil
}

// Blob opens a stream of blob d of repo. The stream is digest-verified by
// go-containerregistry as it is read; the content store verifies it again
// while writing.
func (r *Registry) Blob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	what := fmt.Sprintf("fetch blob %s/%s@%s", r.cfg.Name, repo, d)
	l, err := r.puller.Layer(ctx, r.Repository(repo).Digest(d.String()))
	if err != nil {
		return nil, classify(what, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, classify(what, err)
	}
	return rc, nil
}

// classify wraps err with what and marks "does not exist" answers with
// ErrNotFound and failures to reach the upstream with ErrUnreachable.
func classify(what string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %w: %v", what, ErrNotFound, err)
	}
	if unreachable(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// unreachable reports errors that say the upstream cannot be reached at
// all: a name that does not resolve, a refused connection, no route.
func unreachable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// retryable is go-containerregistry's retry rule for network errors minus
// the unreachable ones. Its default retries what claims to be temporary,
// which includes DNS lookups that time out or fail with "try again", and
// waits 1s and 3s between attempts: a pull from an upstream that cannot
// be reached took about 4s to fail, for nothing, since a retry a second
// later meets the same DNS or the same closed port. Such failures are
// answered at once; the pipeline retries failed jobs with its own backoff.
// Resets and truncated bodies of a reachable upstream are still retried.
func retryable(err error) bool {
	if err == nil || unreachable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// maxCause bounds the length of Cause's answer.
const maxCause = 300

// Cause says in a few words why a request to an upstream failed, for the
// message a client sees: the DNS or connection failure, the registry's
// error answer, or a timeout. It never carries credentials: URLs in it
// lose their user info and query (signed blob URLs carry tokens there).
func Cause(err error) string {
	if err == nil {
		return ""
	}
	var msg string
	var dns *net.DNSError
	var op *net.OpError
	var terr *transport.Error
	switch {
	case errors.As(err, &dns):
		// Not dns.Error(): it names the resolver, which is none of the
		// client's business.
		msg = fmt.Sprintf("lookup %s: %s", dns.Name, dns.Err)
	case errors.As(err, &op) && op.Op == "dial":
		msg = op.Error() // "dial tcp 10.0.0.1:443: connect: connection refused"
	case errors.As(err, &terr):
		if len(terr.Errors) > 0 {
			msg = fmt.Sprintf("the registry answered %d: %s", terr.StatusCode, terr.Errors[0].String())
		} else {
			msg = fmt.Sprintf("the registry answered %d %s", terr.StatusCode, http.StatusText(terr.StatusCode))
		}
	case errors.Is(err, context.DeadlineExceeded):
		msg = "no answer in time"
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg = err.Error()
	}
	msg = redactURLs(msg)
	if len(msg) > maxCause {
		msg = msg[:maxCause] + "…"
	}
	return msg
}

var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// redactURLs drops user info, query and fragment from every URL in s.
func redactURLs(s string) string {
	return urlInText.ReplaceAllStringFunc(s, func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			return "<url>"
		}
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		return u.String()
	})
}

// Set holds every configured upstream, looked up by name or alias.
type Set struct {
	list   []*Registry
	byKey  map[string]*Registry
	defaul *Registry
}

// NewSet builds the clients of every configured upstream.
func NewSet(cfgs []config.Upstream, opts ...Option) (*Set, error) {
	s := &Set{byKey: map[string]*Registry{}}
	for _, c := range cfgs {
		r, err := New(c, opts...)
		if err != nil {
			return nil, err
		}
		s.list = append(s.list, r)
		s.byKey[c.Name] = r
		if c.Alias != "" {
			s.byKey[c.Alias] = r
		}
		if c.Default {
			s.defaul = r
		}
	}
	return s, nil
}

// Get returns the upstream with that name or alias.
func (s *Set) Get(key string) (*Registry, bool) {
	r, ok := s.byKey[key]
	return r, ok
}

// Default returns the upstream for bare names, or nil if none is marked default.
func (s *Set) Default() *Registry { return s.defaul }

// All returns every upstream in configuration order.
func (s *Set) All() []*Registry { return s.list }
