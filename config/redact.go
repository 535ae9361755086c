package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted is what stands in for a secret in Config.Redacted.
const Redacted = "REDACTED"

// secretParam matches storage parameter names that hold credentials
// (accesskey, secretkey, sessiontoken, password, ...).
var secretParam = regexp.MustCompile(`(?i)key|secret|password|token|credential|session`)

// dsnPassword matches the password of a key=value PostgreSQL DSN.
var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redacted returns a copy of c fit to show to an admin (GET
// /api/v1/settings): every value that is a secret, or may carry one, is
// replaced. Secrets are the admin token, the password in the state DSN,
// credentials in storage parameters, user info in URLs, and the path and
// query of webhook URLs (a Slack webhook's path is its secret). Names of
// environment variables and files holding secrets stay: they are where to
// look, not what is there. config's tests list every field of Config as
// secret or not, so a new field must be classified before it can ship.
func (c Config) Redacted() Config {
	if c.Admin.Token != "" {
		c.Admin.Token = Redacted
	}
	c.State.DSN = redactDSN(c.State.DSN)
	if c.Storage.Parameters != nil {
		c.Storage.Parameters = redactParams(c.Storage.Parameters)
	}
	c.Upstreams = append([]Upstream(nil), c.Upstreams...)
	for i := range c.Upstreams {
		c.Upstreams[i].URL = redactUserinfo(c.Upstreams[i].URL)
	}
	c.Scan.UpdateURL = redactUserinfo(c.Scan.UpdateURL)
	c.Events.Webhooks = append([]Webhook(nil), c.Events.Webhooks...)
	for i := range c.Events.Webhooks {
		c.Events.Webhooks[i].URL = redactWebhook(c.Events.Webhooks[i].URL)
	}
	return c
}

// redactParams copies driver parameters with the values of credential
// names hidden, in nested maps too.
func redactParams(in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		switch {
		case secretParam.MatchString(k):
			v = Redacted
		default:
			if m, ok := v.(map[string]any); ok {
				v = redactParams(m)
			}
		}
		out[k] = v
	}
	return out
}

// redactDSN hides the password of a URL or key=value DSN.
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return Redacted
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", Redacted)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return dsnPassword.ReplaceAllString(dsn, "${1}"+Redacted)
}

// redactUserinfo hides a URL's user info; an unparsable URL is hidden.
func redactUserinfo(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return Redacted
	}
	if u.User != nil {
		u.User = url.User(Redacted)
	}
	return u.String()
}

// redactWebhook keeps a webhook URL's scheme and host only.
func redactWebhook(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Redacted
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/" + Redacted
	}
	return out
}
