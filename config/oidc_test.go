package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestOIDC covers admin.oidc: off by default, a full block loaded as
// written, and each wrong key refused with an error naming it.
func TestOIDC(t *testing.T) {
	noEnvToken(t)
	if Default().Admin.OIDC.Enabled() {
		t.Fatal("admin.oidc is enabled by default")
	}
	const full = `admin:
  oidc:
    issuer: https://login.example.com/realms/airlock
    client_id: airlock
    client_secret_env: AIRLOCK_OIDC_SECRET
    redirect_url: https://airlock.example.com:5001/ui/login/oidc/callback
    groups_claim: roles
    roles: {registry-viewers: viewer, security: approver, platform: admin}
    session_ttl: 1h
`
	c, err := Load(writeConfig(t, full))
	if err != nil {
		t.Fatal(err)
	}
	want := OIDC{
		Issuer:          "https://login.example.com/realms/airlock",
		ClientID:        "airlock",
		ClientSecretEnv: "AIRLOCK_OIDC_SECRET",
		RedirectURL:     "https://airlock.example.com:5001/ui/login/oidc/callback",
		GroupsClaim:     "roles",
		Roles:           map[string]string{"registry-viewers": "viewer", "security": "approver", "platform": "admin"},
		SessionTTL:      time.Hour,
	}
	if !reflect.DeepEqual(c.Admin.OIDC, want) {
		t.Errorf("admin.oidc = %+v, want %+v", c.Admin.OIDC, want)
	}
	if got := c.Admin.OIDC.SessionLifetime(); got != time.Hour {
		t.Errorf("session lifetime %v, want 1h", got)
	}
	if got := (OIDC{}).SessionLifetime(); got != DefaultOIDCSessionTTL {
		t.Errorf("default session lifetime %v, want %v", got, DefaultOIDCSessionTTL)
	}

	// block builds an admin.oidc block from a valid one with the named
	// line replaced (or dropped when repl is empty).
	block := func(key, repl string) string {
		lines := map[string]string{
			"issuer":            "issuer: https://idp.example.com",
			"client_id":         "client_id: airlock",
			"client_secret_env": "client_secret_env: OIDC_SECRET",
			"redirect_url":      "redirect_url: https://airlock.example.com/ui/login/oidc/callback",
			"roles":             "roles: {ops: admin}",
		}
		if key != "" {
			lines[key] = repl
		}
		var b strings.Builder
		b.WriteString("admin:\n  oidc:\n")
		for _, k := range []string{"issuer", "client_id", "client_secret_env", "redirect_url", "groups_claim", "roles", "session_ttl"} {
			if l := lines[k]; l != "" {
				b.WriteString("    " + l + "\n")
			}
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"valid", block("", ""), ""},
		{"public client", block("client_secret_env", ""), ""},
		{"http loopback issuer", block("issuer", "issuer: http://127.0.0.1:9998"), ""},
		{"http localhost issuer", block("issuer", "issuer: http://localhost:9998/realms/x"), ""},
		{"http ipv6 loopback", block("redirect_url", "redirect_url: http://[::1]:5001/ui/login/oidc/callback"), ""},
		{"default groups claim", block("groups_claim", ""), ""},
		{"http issuer", block("issuer", "issuer: http://idp.example.com"), "admin.oidc.issuer: \"http://idp.example.com\": plain http is allowed only on localhost"},
		{"relative issuer", block("issuer", "issuer: idp.example.com"), "admin.oidc.issuer: \"idp.example.com\" is not an absolute"},
		{"ftp issuer", block("issuer", "issuer: ftp://idp.example.com"), "admin.oidc.issuer: \"ftp://idp.example.com\" is not an http(s) URL"},
		{"issuer with query", block("issuer", "issuer: https://idp.example.com/?tenant=x"), "admin.oidc.issuer: \"https://idp.example.com/?tenant=x\" must not have a query"},
		{"issuer with user info", block("issuer", "issuer: https://u:p@idp.example.com"), "admin.oidc.issuer:"},
		{"no issuer", block("issuer", ""), "admin.oidc.issuer: required when any other admin.oidc key is set"},
		{"no client id", block("client_id", ""), "admin.oidc.client_id: required"},
		{"bad secret env", block("client_secret_env", "client_secret_env: 'MY SECRET'"), "admin.oidc.client_secret_env: \"MY SECRET\" is not an environment variable name"},
		{"no redirect", block("redirect_url", ""), "admin.oidc.redirect_url: required"},
		{"http redirect", block("redirect_url", "redirect_url: http://airlock.example.com/ui/login/oidc/callback"), "admin.oidc.redirect_url: \"http://airlock.example.com/ui/login/oidc/callback\": plain http"},
		{"redirect without path", block("redirect_url", "redirect_url: https://airlock.example.com"), "admin.oidc.redirect_url: \"https://airlock.example.com\" needs a path"},
		// The console serves the callback: a path of its own under /ui/login/.
		{"callback outside the console", block("redirect_url", "redirect_url: https://a.example/oidc/callback"), "under /ui/login/"},
		{"callback at the console's root", block("redirect_url", "redirect_url: https://a.example/ui/"), "under /ui/login/"},
		{"callback at the start path", block("redirect_url", "redirect_url: https://a.example/ui/login/oidc"), "path of its own"},
		{"callback a pattern", block("redirect_url", "redirect_url: https://a.example/ui/login/{x}"), "under /ui/login/"},
		{"callback with dot segments", block("redirect_url", "redirect_url: https://a.example/ui/login/../images/x"), "under /ui/login/"},
		{"groups claim spaces", block("groups_claim", "groups_claim: ' groups'"), "admin.oidc.groups_claim: \" groups\" has surrounding spaces"},
		{"no roles", block("roles", ""), "admin.oidc.roles: map at least one group"},
		{"empty roles", block("roles", "roles: {}"), "admin.oidc.roles: map at least one group"},
		{"unknown role", block("roles", "roles: {ops: root}"), "admin.oidc.roles.ops: \"root\" is not one of viewer, approver, admin"},
		{"role case", block("roles", "roles: {ops: Admin}"), "admin.oidc.roles.ops: \"Admin\" is not one of"},
		{"empty group", block("roles", "roles: {'': admin}"), "admin.oidc.roles: a group name must not be empty"},
		{"session ttl", block("session_ttl", "session_ttl: 30m"), ""},
		{"session ttl at its bounds", block("session_ttl", "session_ttl: 24h"), ""},
		{"session ttl too short", block("session_ttl", "session_ttl: 1m"), "admin.oidc.session_ttl: 1m0s is not between 5m0s and 24h0m0s"},
		{"session ttl too long", block("session_ttl", "session_ttl: 168h"), "admin.oidc.session_ttl: 168h0m0s is not between"},
		{"session ttl not a duration", block("session_ttl", "session_ttl: 8 hours"), "session_ttl"},
		{"unknown key", block("roles", "roles: {ops: admin}\n    scopes: [openid]"), "scopes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := loadYAML(t, tc.yaml, tc.wantErr); c != nil && !c.Admin.OIDC.Enabled() {
				t.Error("admin.oidc not enabled")
			}
		})
	}
}
