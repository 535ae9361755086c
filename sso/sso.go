// Package sso signs people in to the console through an OpenID Connect
// provider: authorization code flow with PKCE.
//
// The console calls Start for GET /ui/login/oidc, which redirects the
// browser to the provider, and Callback at the path of
// admin.oidc.redirect_url, which returns the signed-in person (Login) or
// why not. Package sso keeps no state on the server per login attempt, so
// anonymous clients starting logins cannot make it grow: the state, the
// nonce and the PKCE code verifier travel in one short-lived, encrypted and
// authenticated cookie (see cookie.go). The protocol is done by
// github.com/zitadel/oidc/v3's relying party (an OpenID certified library):
// discovery, the token request and ID token verification (signature
// against the provider's published keys, issuer, audience, authorized
// party, expiry, issue time, nonce, at_hash).
//
// A person's role is the highest one that admin.oidc.roles maps any of
// their groups to (the groups claim, a string array or a single string); a
// person with no mapped group is refused with ErrNoRole. Their name, the
// audit actor, is "oidc:" followed by their preferred_username, else
// their email (unless the provider says it is unverified), else their
// subject. That name is also the identity four-eyes approvals count
// (gate.approvals_required), and OpenID Connect does not promise that
// preferred_username or email stay the same (only sub does, which is
// rarely readable): the provider must not let people change them
// themselves, or one person could sign in under two names and approve
// twice.
package sso

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/airlockproxy/airlock/config"
)

// NamePrefix starts every Login.Name, so that an audit entry made through
// single sign-on can be told from one made with an API token (token names
// have no colon).
const NamePrefix = "oidc:"

// MaxNameLen bounds the claim a Login.Name is made of, in bytes.
const MaxNameLen = 128

// scopes are requested from the provider: openid for an ID token,
// profile and email for preferred_username and email. No "groups" scope:
// providers that do not know it (Azure AD, for one) refuse the request,
// and those that list groups do so through a claim mapping.
var scopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail}

// roleRank orders the roles a group may map to, as admin.Role does
// (admin/roles.go): config.OIDCRoles is lowest first.
func roleRank(role string) int { return slices.Index(config.OIDCRoles, role) + 1 }

// ErrNoRole is why Callback refuses a person the provider signed in but
// none of whose groups admin.oidc.roles maps to a role: the console
// answers 403 for it (any other Callback error is a failed sign-in).
var ErrNoRole = errors.New("none of your groups at the identity provider is mapped to an Airlock role (admin.oidc.roles)")

// Login is the person Callback signed in.
type Login struct {
	// Name is the audit actor: NamePrefix followed by preferred_username,
	// email or sub (the first present; see the package doc).
	Name string
	// Role is viewer, approver or admin.
	Role string
	// Groups are the person's groups that admin.oidc.roles maps, sorted
	// (other groups are not kept).
	Groups []string
}

// Provider is one configured OpenID Connect provider. It is safe for
// concurrent use.
type Provider struct {
	rp           rp.RelyingParty
	roles        map[string]string
	groupsClaim  string
	callbackPath string
	cookie       *cookieCodec
	now          func() time.Time
}

// Option adjusts New.
type Option func(*options)

type options struct {
	httpClient   *http.Client
	cookieSecret []byte
	now          func() time.Time
}

// WithHTTPClient sets the client used to reach the provider (discovery,
// keys, token and userinfo endpoints), e.g. one trusting a private CA.
// Default: the system's roots and a 10 s timeout.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithCookieSecret sets the secret the login cookie's key is derived from.
// Every replica behind one console URL must get the same one, so that a
// login started on one replica can finish on another. Default: the client
// secret (which every replica has); a public client without a secret gets
// a random key per process, and then a login must finish on the replica
// that started it.
func WithCookieSecret(secret []byte) Option {
	return func(o *options) { o.cookieSecret = slices.Clone(secret) }
}

// WithClock sets the clock the login cookie's lifetime is measured with
// (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New discovers the provider at cfg.Issuer and returns it ready to sign
// people in. The client secret is read from the environment variable
// cfg.ClientSecretEnv. New fails if the provider cannot be reached or its
// discovery document names another issuer.
func New(ctx context.Context, cfg config.OIDC, opts ...Option) (*Provider, error) {
	if !cfg.Enabled() {
		return nil, errors.New("sso: admin.oidc.issuer is not set")
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.httpClient == nil {
		o.httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	var secret string
	if cfg.ClientSecretEnv != "" {
		secret = os.Getenv(cfg.ClientSecretEnv)
		if secret == "" {
			return nil, fmt.Errorf("sso: admin.oidc.client_secret_env: environment variable %s is empty or unset", cfg.ClientSecretEnv)
		}
	}
	redirect, err := url.Parse(cfg.RedirectURL)
	if err != nil || redirect.Path == "" {
		return nil, fmt.Errorf("sso: admin.oidc.redirect_url %q has no path", cfg.RedirectURL)
	}
	roles := make(map[string]string, len(cfg.Roles))
	for g, r := range cfg.Roles {
		if roleRank(r) == 0 {
			return nil, fmt.Errorf("sso: admin.oidc.roles.%s: %q is not one of %s", g, r, strings.Join(config.OIDCRoles, ", "))
		}
		roles[g] = r
	}
	cookieSecret := o.cookieSecret
	if cookieSecret == nil && secret != "" {
		cookieSecret = []byte(secret)
	}
	// The cookie is bound to this provider and client, so that a cookie
	// minted for another configuration sharing the secret never opens.
	codec, err := newCookieCodec(cookieSecret, cfg.Issuer+" "+cfg.ClientID)
	if err != nil {
		return nil, fmt.Errorf("sso: %w", err)
	}
	party, err := rp.NewRelyingPartyOIDC(ctx, cfg.Issuer, cfg.ClientID, secret, cfg.RedirectURL, scopes,
		rp.WithHTTPClient(o.httpClient),
		rp.WithVerifierOpts(
			rp.WithNonce(nonceFromContext),
			// The token was issued a moment ago for this very exchange:
			// refuse one issued before the login cookie could have been,
			// and tolerate 30 s of clock difference with the provider.
			rp.WithIssuedAtMaxAge(cookieLifetime+time.Minute),
			rp.WithIssuedAtOffset(30*time.Second),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sso: discover OpenID provider %s: %w", cfg.Issuer, err)
	}
	claim := cfg.GroupsClaim
	if claim == "" {
		claim = config.DefaultOIDCGroupsClaim
	}
	return &Provider{
		rp:           party,
		roles:        roles,
		groupsClaim:  claim,
		callbackPath: redirect.Path,
		cookie:       codec,
		now:          o.now,
	}, nil
}

// CallbackPath is the path of admin.oidc.redirect_url, where the console
// serves Callback.
func (p *Provider) CallbackPath() string { return p.callbackPath }

// Start begins a sign-in: it sets the login cookie (state, nonce and PKCE
// code verifier, fresh for this attempt) and redirects (302) to the
// provider's authorization endpoint. A later Start in the same browser
// replaces the cookie, so only the latest attempt can finish.
func (p *Provider) Start(w http.ResponseWriter, r *http.Request) {
	a := attempt{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		Expires:  p.now().Add(cookieLifetime).Unix(),
	}
	c, err := p.cookie.seal(a)
	if err != nil {
		http.Error(w, "sso: cannot start the sign-in", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, c)
	w.Header().Set("Cache-Control", "no-store")
	target := rp.AuthURL(a.State, p.rp,
		rp.WithCodeChallenge(oidc.NewSHACodeChallenge(a.Verifier)),
		rp.AuthURLOpt(rp.WithURLParam("nonce", a.Nonce)),
	)
	http.Redirect(w, r, target, http.StatusFound)
}

// Callback finishes a sign-in at the redirect URL: it checks the state
// against the login cookie, exchanges the code with the PKCE code
// verifier, verifies the ID token (signature, issuer, audience, expiry,
// nonce), reads the name and groups (from the ID token, or from the
// userinfo endpoint for claims the ID token leaves out) and maps the
// groups to the highest role. It clears the login cookie whatever the
// outcome (a callback can be tried once per Start) and writes nothing else
// to w: the console answers. ErrNoRole means the person signed in but may
// not use Airlock; any other error is a failed sign-in.
func (p *Provider) Callback(w http.ResponseWriter, r *http.Request) (Login, error) {
	http.SetCookie(w, p.cookie.clear())
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		// Both come from the URL, that is from whoever sent the browser
		// here: quoted and cut short.
		return Login{}, fmt.Errorf("sso: the identity provider refused the sign-in: %s (%s)", quoteShort(e), quoteShort(q.Get("error_description")))
	}
	a, err := p.cookie.open(r, p.now())
	if err != nil {
		return Login{}, fmt.Errorf("sso: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(a.State)) != 1 {
		return Login{}, errors.New("sso: the state parameter does not match this browser's sign-in (a forged or stale callback)")
	}
	code := q.Get("code")
	if code == "" {
		return Login{}, errors.New("sso: the callback has no authorization code")
	}
	ctx := context.WithValue(r.Context(), nonceKey{}, a.Nonce)
	tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](ctx, code, p.rp, rp.WithCodeVerifier(a.Verifier))
	if err != nil {
		return Login{}, fmt.Errorf("sso: exchange the authorization code: %w", err)
	}
	claims := []map[string]any{tokens.IDTokenClaims.Claims}
	if p.needsUserinfo(tokens.IDTokenClaims.Claims) {
		info, err := rp.Userinfo[*oidc.UserInfo](ctx, tokens.AccessToken, tokens.Type(), tokens.IDTokenClaims.Subject, p.rp)
		if err != nil {
			return Login{}, fmt.Errorf("sso: read the userinfo endpoint: %w", err)
		}
		claims = append(claims, info.Claims)
	}
	return p.login(claims, tokens.IDTokenClaims.Subject)
}

// needsUserinfo reports whether the ID token leaves out a claim the
// provider may return at the userinfo endpoint instead (OpenID Connect
// Core 1.0, section 5.4: with an access token, profile and email claims
// come from userinfo).
func (p *Provider) needsUserinfo(idToken map[string]any) bool {
	if p.rp.UserinfoEndpoint() == "" {
		return false
	}
	_, name := idToken["preferred_username"]
	_, groups := idToken[p.groupsClaim]
	return !name || !groups
}

// login makes the Login from claims (the ID token's first, then the
// userinfo endpoint's, each claim taken from the first that has it).
func (p *Provider) login(claims []map[string]any, subject string) (Login, error) {
	name, err := personName(claims, subject)
	if err != nil {
		return Login{}, err
	}
	raw, _ := lookup(claims, p.groupsClaim)
	groups, err := groupList(raw)
	if err != nil {
		return Login{}, fmt.Errorf("sso: claim %q: %w", p.groupsClaim, err)
	}
	l := Login{Name: NamePrefix + name}
	for _, g := range groups {
		role, ok := p.roles[g]
		if !ok || slices.Contains(l.Groups, g) {
			continue
		}
		l.Groups = append(l.Groups, g)
		if roleRank(role) > roleRank(l.Role) {
			l.Role = role
		}
	}
	if l.Role == "" {
		return Login{}, fmt.Errorf("sso: %s: %w", l.Name, ErrNoRole)
	}
	slices.Sort(l.Groups)
	return l, nil
}

// personName is the first of preferred_username, a not unverified email
// and sub, checked by safeName.
func personName(claims []map[string]any, subject string) (string, error) {
	type candidate struct{ claim, value string }
	var candidates []candidate
	if v, ok := lookup(claims, "preferred_username"); ok {
		s, isString := v.(string)
		if !isString {
			return "", errors.New("sso: claim preferred_username is not a string")
		}
		candidates = append(candidates, candidate{"preferred_username", s})
	}
	if v, src := lookupSource(claims, "email"); src != nil {
		s, isString := v.(string)
		if !isString {
			return "", errors.New("sso: claim email is not a string")
		}
		// An email the provider says it has not verified may be anyone's
		// (the person typed it); one without email_verified is taken, as
		// some providers (Azure AD) never send the claim.
		if verified, ok := src["email_verified"].(bool); !ok || verified {
			candidates = append(candidates, candidate{"email", s})
		}
	}
	candidates = append(candidates, candidate{"sub", subject})
	for _, c := range candidates {
		if c.value == "" {
			continue
		}
		if err := safeName(c.value); err != nil {
			return "", fmt.Errorf("sso: claim %s: %w", c.claim, err)
		}
		return c.value, nil
	}
	return "", errors.New("sso: the ID token has no subject")
}

// safeName refuses a name that would be misleading or harmful in the audit
// log, in logs and on pages: the provider may let people choose it. It
// allows letters, marks and digits of any script and printable ASCII, no
// surrounding spaces, at most MaxNameLen bytes. A refused name is not
// replaced by the next claim: the person would otherwise appear under an
// identity they did not choose.
func safeName(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s is longer than %d bytes", quoteShort(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", quoteShort(s))
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("%s has surrounding spaces", quoteShort(s))
	}
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || (r < utf8.RuneSelf && unicode.IsPrint(r)) {
			continue
		}
		return fmt.Errorf("%s contains %U, which a name may not (control, format or non-ASCII symbol characters)", quoteShort(s), r)
	}
	return nil
}

// groupList reads a groups claim: a list of strings or a single string
// (one group); absent is no group.
func groupList(v any) ([]string, error) {
	switch g := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{g}, nil
	case []any:
		out := make([]string, 0, len(g))
		for i, e := range g {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d is a %T, not a string", i, e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("is a %T, not a string or a list of strings", v)
}

func lookup(claims []map[string]any, key string) (any, bool) {
	v, src := lookupSource(claims, key)
	return v, src != nil
}

// lookupSource returns the claim key from the first set of claims that has
// it, and that set.
func lookupSource(claims []map[string]any, key string) (any, map[string]any) {
	for _, c := range claims {
		if v, ok := c[key]; ok {
			return v, c
		}
	}
	return nil, nil
}

// quoteShort quotes an untrusted string for an error message, cut to 64
// bytes.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

type nonceKey struct{}

// nonceFromContext is the nonce the ID token must carry: the one Callback
// read from the login cookie. Never empty there (open refuses a cookie
// without one).
func nonceFromContext(ctx context.Context) string {
	n, _ := ctx.Value(nonceKey{}).(string)
	return n
}
