package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultOIDCGroupsClaim is admin.oidc.groups_claim when unset: the claim
// most providers (Keycloak, Okta, Dex, Authentik) name the groups in.
const DefaultOIDCGroupsClaim = "groups"

// callbackPath is what the path of admin.oidc.redirect_url may be: under
// /ui/login/ (the console's sign-in, where no other page is), so that the
// console serves it among its routes and it takes no page's place.
var callbackPath = regexp.MustCompile(`^/ui/login/[A-Za-z0-9._~/-]+$`)

// OIDCRoles are the roles admin.oidc.roles may map a group to, lowest
// first. They are admin.Role's values (admin/roles.go); admin imports
// config, so they are spelled out here, and package sso's tests check
// that the two lists agree.
var OIDCRoles = []string{"viewer", "approver", "admin"}

// OIDC configures single sign-on to the web console through an OpenID
// Connect provider (config `admin.oidc`; package sso): the authorization
// code flow with PKCE. A person gets the highest role any of their groups
// maps to in Roles; a person none of whose groups is mapped is refused.
// Everything is off while Issuer is empty.
type OIDC struct {
	// Issuer is the provider's issuer URL, exactly as its discovery
	// document (<issuer>/.well-known/openid-configuration) states it,
	// e.g. https://login.example.com/realms/airlock. https only, or
	// http on a loopback address (tests, a provider on the same host).
	Issuer string `yaml:"issuer"`
	// ClientID is Airlock's client ID at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecretEnv names the environment variable holding the client
	// secret (never in the file). Empty for a public client, which then
	// relies on PKCE alone.
	ClientSecretEnv string `yaml:"client_secret_env"`
	// RedirectURL is the console's callback URL registered at the
	// provider, e.g. https://airlock.example.com:8081/ui/login/oidc/callback;
	// the console serves the callback at its path.
	RedirectURL string `yaml:"redirect_url"`
	// GroupsClaim is the claim listing the person's groups (a string
	// array or a single string); default "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// Roles maps a group name (as the provider spells it in the groups
	// claim) to an Airlock role: viewer, approver or admin.
	Roles map[string]string `yaml:"roles"`
	// SessionTTL is how long a console session started through single
	// sign-on lasts (default 8h, 5m..24h). Its role is the one the
	// provider's groups gave at sign-in: a person removed from a group
	// at the provider keeps the role until the session ends, so this is
	// how long such a change may take to reach the console.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// Bounds of admin.oidc.session_ttl.
const (
	DefaultOIDCSessionTTL = 8 * time.Hour
	MinOIDCSessionTTL     = 5 * time.Minute
	MaxOIDCSessionTTL     = 24 * time.Hour
)

// SessionLifetime is SessionTTL, or its default when unset.
func (o OIDC) SessionLifetime() time.Duration {
	if o.SessionTTL == 0 {
		return DefaultOIDCSessionTTL
	}
	return o.SessionTTL
}

// Enabled reports whether single sign-on is configured.
func (o OIDC) Enabled() bool { return o.Issuer != "" }

// envName is what client_secret_env may name: a portable environment
// variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks admin.oidc; errors name the key below admin.oidc.
func (o OIDC) validate() error {
	if !o.Enabled() {
		// A half-written block without an issuer would silently leave
		// SSO off: say so instead.
		if o.ClientID != "" || o.ClientSecretEnv != "" || o.RedirectURL != "" || o.GroupsClaim != "" || len(o.Roles) > 0 || o.SessionTTL != 0 {
			return errors.New("issuer: required when any other admin.oidc key is set")
		}
		return nil
	}
	if err := secureURL(o.Issuer); err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if u, _ := url.Parse(o.Issuer); u.RawQuery != "" || u.Fragment != "" {
		// OpenID Connect Discovery 1.0, section 2: an issuer has neither.
		return fmt.Errorf("issuer: %q must not have a query or fragment", o.Issuer)
	}
	if o.ClientID == "" {
		return errors.New("client_id: required when issuer is set")
	}
	if o.ClientSecretEnv != "" && !envName.MatchString(o.ClientSecretEnv) {
		return fmt.Errorf("client_secret_env: %q is not an environment variable name", o.ClientSecretEnv)
	}
	if o.RedirectURL == "" {
		return errors.New("redirect_url: required when issuer is set (the console's callback URL registered at the provider)")
	}
	if err := secureURL(o.RedirectURL); err != nil {
		return fmt.Errorf("redirect_url: %w", err)
	}
	if u, _ := url.Parse(o.RedirectURL); u.Fragment != "" || u.Path == "" || u.Path == "/" {
		return fmt.Errorf("redirect_url: %q needs a path for the callback and no fragment", o.RedirectURL)
	} else if u.RawPath != "" || u.RawQuery != "" || !callbackPath.MatchString(u.Path) || path.Clean(u.Path) != u.Path || u.Path == "/ui/login/oidc" {
		return fmt.Errorf("redirect_url: the callback path %q must be a path of its own under /ui/login/ (the console's sign-in), e.g. /ui/login/oidc/callback, without a query", u.Path)
	}
	if o.GroupsClaim != "" && strings.TrimSpace(o.GroupsClaim) != o.GroupsClaim {
		return fmt.Errorf("groups_claim: %q has surrounding spaces", o.GroupsClaim)
	}
	if o.SessionTTL != 0 && (o.SessionTTL < MinOIDCSessionTTL || o.SessionTTL > MaxOIDCSessionTTL) {
		return fmt.Errorf("session_ttl: %v is not between %v and %v", o.SessionTTL, MinOIDCSessionTTL, MaxOIDCSessionTTL)
	}
	if len(o.Roles) == 0 {
		// Without a mapping nobody could sign in.
		return fmt.Errorf("roles: map at least one group to a role (%s)", strings.Join(OIDCRoles, ", "))
	}
	for group, role := range o.Roles {
		if group == "" {
			return errors.New("roles: a group name must not be empty")
		}
		if !slices.Contains(OIDCRoles, role) {
			return fmt.Errorf("roles.%s: %q is not one of %s", group, role, strings.Join(OIDCRoles, ", "))
		}
	}
	return nil
}

// secureURL accepts an absolute https URL, or an http URL whose host is
// a loopback address: anything else would carry codes, tokens and the
// login cookie in clear text.
func secureURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return fmt.Errorf("%q is not an absolute http(s) URL without user info", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only on localhost or a loopback address; use https", s)
	}
	return fmt.Errorf("%q is not an http(s) URL", s)
}
