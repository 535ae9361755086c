package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Registry configures the registry API (the listener itself is listen).
type Registry struct {
	// Auth turns on pull authentication; off (anonymous pulls) unless
	// auth.htpasswd is set.
	Auth RegistryAuth `yaml:"auth"`
}

// RegistryAuth configures pull authentication (package pullauth): clients
// log in with an htpasswd user or an API token (any active token; the
// puller role exists for this), get a short-lived bearer token from the
// registry's /token endpoint, and pull with it. Approval still decides
// what is served.
type RegistryAuth struct {
	// Htpasswd is an Apache htpasswd file of bcrypt entries (htpasswd -B);
	// it is read again when it changes. Setting it turns authentication
	// on; an empty file lets only API tokens in.
	Htpasswd string `yaml:"htpasswd"`
	// Realm is the token endpoint's URL sent to clients in the 401
	// challenge. Default "": built from the request's Host and whether it
	// came over TLS (<scheme>://<host>/token); set it behind a proxy that
	// terminates TLS or rewrites the host.
	Realm string `yaml:"realm"`
}

// Enabled reports whether pull authentication is on.
func (a RegistryAuth) Enabled() bool { return a.Htpasswd != "" }

// validate checks the registry section.
func (r Registry) validate() error {
	a := r.Auth
	if a.Htpasswd != "" && strings.TrimSpace(a.Htpasswd) != a.Htpasswd {
		return fmt.Errorf("registry.auth.htpasswd: %q has leading or trailing spaces", a.Htpasswd)
	}
	if a.Realm == "" {
		return nil
	}
	if !a.Enabled() {
		return fmt.Errorf("registry.auth.realm: set without registry.auth.htpasswd (pull authentication is off)")
	}
	u, err := url.Parse(a.Realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("registry.auth.realm: %q is not an http(s) URL without query (e.g. https://airlock.example.com/token)", a.Realm)
	}
	// The realm is quoted in a header: nothing may end the quote.
	if strings.ContainsAny(a.Realm, "\"\\ \t\r\n") {
		return fmt.Errorf("registry.auth.realm: %q contains a quote, backslash or space", a.Realm)
	}
	return nil
}
