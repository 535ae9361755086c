// Package pullauth is Airlock's optional pull authentication
// (registry.auth): the registry token flow docker, containerd and podman
// speak. The rule:
//
//   - Off unless registry.auth.htpasswd is set. Then every request to the
//     registry API but /healthz and /token needs credentials, checked
//     before routing (package proxy), so an anonymous client learns
//     nothing about which images or repositories exist: it gets 401 with
//     the OCI error UNAUTHORIZED and a challenge, Bearer
//     realm="<scheme>://<host>/token",service="airlock",
//     scope="repository:<name>:pull".
//   - Who may pull: a user of the htpasswd file (bcrypt entries only), or
//     an active API token of any role (the role puller exists for nodes
//     that only pull; it is refused by every admin API route), with the
//     token's name as user and its secret as password.
//   - How: GET /token with HTTP Basic credentials answers a bearer token
//     for the repositories the scope parameters name, pull only (push and
//     other resource types are never granted), valid for TokenTTL (less if
//     the API token expires sooner). HTTP Basic straight on the API works
//     too. Bearer tokens are HMAC-SHA256-signed with a key kept in the
//     state store (state.Store.Secret), so every replica verifies what any
//     replica issued. A bearer token names the credential it was issued
//     for, and that credential must still be valid at every use: a revoked
//     or expired API token, a removed htpasswd user or a changed password
//     stops its bearer tokens at once. (While the state database is
//     unreachable an API token's bearer token is accepted until it
//     expires, as fail-static serving keeps serving.)
//   - Logins cost bounded CPU and no stored state: bcrypt checks run at
//     most Concurrency at a time with a bounded queue behind them (more
//     waiting logins are answered 429); a login with an unknown user or a
//     wrong password does the same bcrypt work as a right one (against a
//     dummy hash of the file's highest cost); nothing is remembered about
//     failures. Successful htpasswd logins are remembered (bounded, for
//     TokenTTL) so that HTTP Basic on every request does not mean bcrypt
//     on every request.
//   - Authentication decides who may pull, never what: the gate still
//     serves approved content only, to everyone alike. A bearer token
//     covers only the repositories it was issued for (the name in the
//     request path), but any valid credential may ask /token for any
//     repository: scopes exist because clients expect them, not to divide
//     images among users.
package pullauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// Service is the service name of the challenge and the token endpoint.
const Service = "airlock"

// TokenTTL is how long a bearer token lasts (Docker Hub's is as long).
// Clients fetch a new one when it expires.
const TokenTTL = 5 * time.Minute

// secretName is the state store key that signs bearer tokens.
const secretName = "pullauth-hmac"

// tokenPrefix starts the API token secrets of package admin
// (admin.TokenPrefix); only such passwords are looked up as API tokens,
// so that htpasswd logins cost no database read.
const tokenPrefix = "alk_"

// pullRoles are the roles of package admin whose tokens may pull: all.
var pullRoles = []string{"puller", "viewer", "approver", "admin"}

// Limits on what a client sends: longer input is refused without work.
const (
	maxPasswordLen = 1024
	maxBearerLen   = 16 << 10
	maxScopes      = 16
	maxRepoLen     = 255
	// maxQueued bounds the logins waiting for a bcrypt slot.
	maxQueued = 64
	// maxWait bounds how long a login waits for a bcrypt slot.
	maxWait = 10 * time.Second
	// maxRemembered bounds the successful logins remembered.
	maxRemembered = 1024
	// keyRetry is how long a failed read of the signing key is not tried again.
	keyRetry = time.Second
	// clockSkew is how far in the future a token's issue time may be
	// (replicas' clocks differ a little).
	clockSkew = time.Minute
)

// repoName is the OCI distribution grammar of a repository name.
var repoName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// Store is what pull authentication reads from the state store.
type Store interface {
	// TokenByHash returns the API token whose secret has this SHA-256.
	TokenByHash(hash [32]byte) (state.Token, error)
	// Secret returns the named random key, shared by every replica.
	Secret(name string) ([]byte, error)
}

// Errors of a login or token check; Status maps them to HTTP statuses.
var (
	// ErrUnauthorized: no, bad, expired or revoked credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBusy: too many logins are waiting for a bcrypt check.
	ErrBusy = errors.New("too many logins at once; retry later")
	// ErrUnavailable: the state database could not be reached to check
	// an API token or read the signing key.
	ErrUnavailable = errors.New("cannot check credentials now; retry later")
)

// authError is an error of a kind above with a message of its own (the
// kind's text is left out: clients show the OCI code beside the message).
type authError struct {
	kind error
	msg  string
}

func (e *authError) Error() string { return e.msg }
func (e *authError) Unwrap() error { return e.kind }

// refuse returns an error of kind with the formatted message.
func refuse(kind error, format string, args ...any) error {
	return &authError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Status is the HTTP status for an error of Authenticate or a login.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrBusy):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusUnauthorized
}

// Authenticator checks registry API credentials and serves /token.
type Authenticator struct {
	store Store
	users *htpasswd
	realm string
	log   *slog.Logger
	now   func() time.Time

	// sem holds one slot per bcrypt check running; queued counts the
	// logins running or waiting (bounded by cap(sem)+maxQueued).
	sem    chan struct{}
	queued atomic.Int32

	keyMu sync.Mutex
	key   []byte
	// keyFailed is when reading the key last failed: requests meanwhile
	// fail at once instead of queueing on keyMu behind database timeouts.
	keyFailed time.Time

	// rememberKey keys the remembered logins (a process-local random key:
	// neither user names nor passwords are kept in memory).
	rememberKey []byte
	rememberMu  sync.Mutex
	remembered  map[[32]byte]remembered
}

// remembered is a successful htpasswd login: whose, the hash it matched,
// until when.
type remembered struct {
	user, fp string
	until    time.Time
}

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *Authenticator) { a.log = l } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// WithConcurrency sets how many bcrypt checks run at once (default: half
// the CPUs, at least one).
func WithConcurrency(n int) Option {
	return func(a *Authenticator) {
		if n > 0 {
			a.sem = make(chan struct{}, n)
		}
	}
}

// New returns the authenticator of cfg, which must be enabled. The
// htpasswd file is read now: an invalid one is an error.
func New(cfg config.RegistryAuth, store Store, opts ...Option) (*Authenticator, error) {
	if !cfg.Enabled() {
		return nil, errors.New("registry.auth: pull authentication is not configured (set registry.auth.htpasswd)")
	}
	a := &Authenticator{
		store: store, realm: cfg.Realm, log: slog.Default(), now: time.Now,
		sem:         make(chan struct{}, max(1, runtime.NumCPU()/2)),
		rememberKey: make([]byte, 32),
		remembered:  map[[32]byte]remembered{},
	}
	for _, o := range opts {
		o(a)
	}
	if _, err := rand.Read(a.rememberKey); err != nil {
		return nil, fmt.Errorf("registry.auth: %w", err)
	}
	users, err := openHtpasswd(cfg.Htpasswd, a.log, a.now)
	if err != nil {
		return nil, err
	}
	a.users = users
	// Read the key now, so the first logins do not wait for it; a failure
	// here is retried at the first use.
	_, _ = a.signingKey()
	return a, nil
}

// principal is who logged in: an htpasswd user or an API token, and the
// fingerprint of the credential (hash of the user's bcrypt entry; the
// token's SHA-256).
type principal struct {
	name, src, fp string
	// expires is when an API token expires (zero: never, or htpasswd).
	expires time.Time
}

// Sources of a principal.
const (
	srcHtpasswd = "htpasswd"
	srcToken    = "token"
)

func (p principal) String() string { return p.src + ":" + p.name }

// login checks a user name and password: an API token first when the
// password looks like one, then the htpasswd file. Every failure does one
// bcrypt check of the file's highest cost, whatever failed.
func (a *Authenticator) login(ctx context.Context, user, pass string) (principal, error) {
	if user == "" || pass == "" || len(user) > maxUserLen || len(pass) > maxPasswordLen {
		return principal{}, refuse(ErrUnauthorized, "invalid credentials")
	}
	var tokenErr error
	if strings.HasPrefix(pass, tokenPrefix) {
		p, err := a.tokenLogin(user, pass)
		if err == nil {
			return p, nil
		}
		tokenErr = err
	}
	hash, known := a.users.user(user)
	rk := a.rememberKeyOf(user, pass)
	if known && a.recall(rk, user, fingerprint(hash)) {
		return principal{name: user, src: srcHtpasswd, fp: fingerprint(hash)}, nil
	}
	ok, err := a.checkBcrypt(ctx, hash, pass)
	switch {
	case err != nil:
		return principal{}, err
	case ok && known:
		a.remember(rk, user, fingerprint(hash))
		return principal{name: user, src: srcHtpasswd, fp: fingerprint(hash)}, nil
	case tokenErr != nil:
		// A revoked or expired token says so to whoever holds its secret.
		return principal{}, tokenErr
	}
	return principal{}, refuse(ErrUnauthorized, "invalid credentials")
}

// tokenLogin checks an API token: its name must be user, and it must be
// active with a role that may pull.
func (a *Authenticator) tokenLogin(user, secret string) (principal, error) {
	sum := sha256.Sum256([]byte(secret))
	tok, err := a.store.TokenByHash(sum)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return principal{}, refuse(ErrUnauthorized, "invalid credentials")
		}
		a.log.Warn("registry login: cannot look up an API token", "user", user, "err", err)
		return principal{}, refuse(ErrUnavailable, "cannot check the API token now (state database unreachable); retry later")
	}
	want, _ := hex.DecodeString(tok.Hash)
	if !hmac.Equal(want, sum[:]) || tok.Name != user {
		return principal{}, refuse(ErrUnauthorized, "invalid credentials")
	}
	if err := a.tokenUsable(tok); err != nil {
		return principal{}, err
	}
	return principal{name: tok.Name, src: srcToken, fp: tok.Hash, expires: tok.Expires}, nil
}

// tokenUsable refuses revoked and expired tokens and roles that may not pull.
func (a *Authenticator) tokenUsable(tok state.Token) error {
	switch {
	case !tok.Revoked.IsZero():
		return refuse(ErrUnauthorized, "token %s was revoked", tok.Name)
	case !tok.Active(a.now()):
		return refuse(ErrUnauthorized, "token %s expired", tok.Name)
	case !slices.Contains(pullRoles, tok.Role):
		return refuse(ErrUnauthorized, "token %s has role %q, which may not pull", tok.Name, tok.Role)
	}
	return nil
}

// compareHash is bcrypt's comparison; tests wrap it to watch concurrency.
var compareHash = bcrypt.CompareHashAndPassword

// checkBcrypt compares pass with hash once a bcrypt slot is free. It
// answers ErrBusy when too many logins wait already or none became free
// within maxWait.
func (a *Authenticator) checkBcrypt(ctx context.Context, hash []byte, pass string) (bool, error) {
	if a.queued.Add(1) > int32(cap(a.sem)+maxQueued) {
		a.queued.Add(-1)
		return false, ErrBusy
	}
	defer a.queued.Add(-1)
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	select {
	case a.sem <- struct{}{}:
	case <-timer.C:
		return false, ErrBusy
	case <-ctx.Done():
		return false, refuse(ErrBusy, "login abandoned: %v", ctx.Err())
	}
	defer func() { <-a.sem }()
	return compareHash(hash, []byte(pass)) == nil, nil
}

func (a *Authenticator) rememberKeyOf(user, pass string) [32]byte {
	m := hmac.New(sha256.New, a.rememberKey)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pass))
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// recall reports whether this user and password logged in successfully
// within TokenTTL against the user's current hash.
func (a *Authenticator) recall(k [32]byte, user, fp string) bool {
	a.rememberMu.Lock()
	defer a.rememberMu.Unlock()
	r, ok := a.remembered[k]
	return ok && r.user == user && r.fp == fp && a.now().Before(r.until)
}

// remember notes a successful htpasswd login; full, it drops expired
// entries, then an arbitrary one.
func (a *Authenticator) remember(k [32]byte, user, fp string) {
	a.rememberMu.Lock()
	defer a.rememberMu.Unlock()
	now := a.now()
	if len(a.remembered) >= maxRemembered {
		for key, r := range a.remembered {
			if !now.Before(r.until) {
				delete(a.remembered, key)
			}
		}
		for key := range a.remembered {
			if len(a.remembered) < maxRemembered {
				break
			}
			delete(a.remembered, key)
		}
	}
	a.remembered[k] = remembered{user: user, fp: fp, until: now.Add(TokenTTL)}
}

// signingKey reads the bearer token key from the state store once.
func (a *Authenticator) signingKey() ([]byte, error) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	if a.key != nil {
		return a.key, nil
	}
	if now := a.now(); !a.keyFailed.IsZero() && now.Sub(a.keyFailed) < keyRetry && !now.Before(a.keyFailed) {
		return nil, refuse(ErrUnavailable, "cannot issue or check bearer tokens now (state database unreachable); retry later")
	}
	k, err := a.store.Secret(secretName)
	if err != nil {
		a.keyFailed = a.now()
		a.log.Warn("registry: cannot read the bearer token key", "err", err)
		return nil, refuse(ErrUnavailable, "cannot issue or check bearer tokens now (state database unreachable); retry later")
	}
	a.key = k
	return k, nil
}

// Authenticate checks r's credentials (a bearer token from /token, or
// HTTP Basic) for pulling repository ("": any valid credentials, e.g. the
// API version check /v2/). It returns who they stand for ("htpasswd:alice",
// "token:node1"), or an error for Status.
func (a *Authenticator) Authenticate(r *http.Request, repository string) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		return "", refuse(ErrUnauthorized, "authentication required: log in with an htpasswd user or an API token (docker login %s)", hostOf(r))
	case strings.EqualFold(scheme, "Bearer"):
		p, err := a.verify(strings.TrimSpace(cred), repository)
		if err != nil {
			if p.name != "" && !errors.Is(err, ErrUnavailable) {
				// A genuine token used beyond its scope or after its
				// credential was revoked: who. (Forged, expired and
				// malformed tokens name nobody and are not logged.)
				a.log.Warn("registry pull refused", "user", p.name, "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
			}
			return "", err
		}
		return p.String(), nil
	case strings.EqualFold(scheme, "Basic"):
		user, pass, ok := r.BasicAuth()
		if !ok {
			return "", refuse(ErrUnauthorized, "malformed Basic credentials")
		}
		p, err := a.login(r.Context(), user, pass)
		if err != nil {
			a.refused(r, user, err)
			return "", err
		}
		return p.String(), nil
	}
	return "", refuse(ErrUnauthorized, "unsupported authorization scheme; use Bearer or Basic")
}

// refused logs a refused login: who tried, from where, why (never the
// password).
func (a *Authenticator) refused(r *http.Request, user string, err error) {
	a.log.Warn("registry login refused", "user", user, "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
}

// Challenge is the WWW-Authenticate value of a 401 for repository.
func (a *Authenticator) Challenge(r *http.Request, repository string) string {
	c := fmt.Sprintf(`Bearer realm="%s",service="%s"`, a.realmOf(r), Service)
	if validRepo(repository) {
		c += fmt.Sprintf(`,scope="repository:%s:pull"`, repository)
	}
	return c
}

// realmOf is the token endpoint's URL: registry.auth.realm, or built from
// the request's Host and whether it came over TLS.
func (a *Authenticator) realmOf(r *http.Request) string {
	if a.realm != "" {
		return a.realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + hostOf(r) + "/token"
}

// hostOf is the request's Host with only the characters a host and port
// may have (net/http refuses others; this keeps the quote in Challenge
// closed whatever reaches here).
func hostOf(r *http.Request) string {
	b := make([]byte, 0, len(r.Host))
	for i := 0; i < len(r.Host) && len(b) < 255; i++ {
		c := r.Host[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]_", c) >= 0 {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "localhost"
	}
	return string(b)
}

func validRepo(name string) bool {
	return name != "" && len(name) <= maxRepoLen && repoName.MatchString(name)
}

// Status is the HTTP status of an error of Authenticate (the package
// function, as a method for proxy.Authenticator).
func (a *Authenticator) Status(err error) int { return Status(err) }
