package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Webhook payload formats accepted in events.webhooks[].format.
const (
	// FormatCloudEvents posts a CloudEvents 1.0 event in structured mode
	// (Content-Type: application/cloudevents+json).
	FormatCloudEvents = "cloudevents"
	// FormatSlack posts {"text": "..."}, what Slack and Microsoft Teams
	// incoming webhooks accept.
	FormatSlack = "slack"
)

// EventTypePrefix starts the type of every event Airlock emits.
const EventTypePrefix = "dev.airlock."

// Events configures webhooks on state changes, delivered from a
// persistent outbox in the state store.
type Events struct {
	// Webhooks lists the endpoints events are posted to; none (the
	// default) keeps no outbox.
	Webhooks []Webhook `yaml:"webhooks"`
	// Source is the CloudEvents source attribute of every event.
	Source string `yaml:"source"`
	// MaxPending bounds the events kept for endpoints that have not taken
	// them yet: beyond it the oldest undelivered events are dropped, with
	// a log line and a count in `airlock events`.
	MaxPending int `yaml:"max_pending"`
	// MinBackoff is the delay after an endpoint's first failed delivery;
	// it doubles with each further failure up to MaxBackoff.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the delay between delivery attempts.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Webhook is one endpoint events are posted to, in outbox order.
type Webhook struct {
	// Name identifies the endpoint's delivery progress in the state
	// store and in `airlock events`; default: the URL's host and a short
	// hash of the whole URL (a Slack URL's path is a secret).
	Name string `yaml:"name"`
	// URL is the http(s) URL events are POSTed to.
	URL string `yaml:"url"`
	// SecretEnv names the environment variable holding the HMAC-SHA256
	// key of the X-Airlock-Signature header. Required for the cloudevents
	// format; with slack, requests are signed when it is set.
	SecretEnv string `yaml:"secret_env"`
	// Types filters by event type: exact types or globs such as
	// "dev.airlock.image.*"; empty sends every type.
	Types []string `yaml:"types"`
	// Upstreams filters image events by upstream name; empty: any.
	Upstreams []string `yaml:"upstreams"`
	// Repositories filters image events by repository glob ("library/*",
	// "team/**"); empty: any.
	Repositories []string `yaml:"repositories"`
	// Format is "cloudevents" (default) or "slack".
	Format string `yaml:"format"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `yaml:"timeout"`
}

// EndpointName returns the webhook's name, or the default one.
func (w Webhook) EndpointName() string {
	if w.Name != "" {
		return w.Name
	}
	sum := sha256.Sum256([]byte(w.URL))
	host := w.URL
	if u, err := url.Parse(w.URL); err == nil && u.Host != "" {
		host = u.Host
	}
	return host + "#" + hex.EncodeToString(sum[:4])
}

// MatchesType reports whether events of type typ go to the webhook.
func (w Webhook) MatchesType(typ string) bool {
	if len(w.Types) == 0 {
		return true
	}
	for _, p := range w.Types {
		if ok, _ := path.Match(p, typ); ok {
			return true
		}
	}
	return false
}

// MatchesImage reports whether image events of upstream/repo go to the
// webhook (its upstream and repository filters).
func (w Webhook) MatchesImage(upstream, repo string) bool {
	if len(w.Upstreams) > 0 {
		found := false
		for _, u := range w.Upstreams {
			found = found || u == upstream
		}
		if !found {
			return false
		}
	}
	if len(w.Repositories) == 0 {
		return true
	}
	for _, pat := range w.Repositories {
		if globMatch(strings.Split(pat, "/"), strings.Split(repo, "/")) {
			return true
		}
	}
	return false
}

// validate checks the events section.
func (e Events) validate() error {
	if e.MaxPending < 100 {
		return fmt.Errorf("events.max_pending: %d is under 100", e.MaxPending)
	}
	if e.MinBackoff <= 0 || e.MaxBackoff < e.MinBackoff {
		return errors.New("events: min_backoff must be positive and max_backoff at least min_backoff")
	}
	if e.MaxBackoff > time.Hour {
		return fmt.Errorf("events.max_backoff: %s is over 1h", e.MaxBackoff)
	}
	if u, err := url.Parse(e.Source); err != nil || e.Source == "" {
		return fmt.Errorf("events.source: %q is not a URI reference", e.Source)
	} else if u.String() == "" {
		return errors.New("events.source: must not be empty")
	}
	names := map[string]int{}
	for i, w := range e.Webhooks {
		if err := w.validate(); err != nil {
			return fmt.Errorf("events.webhooks[%d].%w", i, err)
		}
		n := w.EndpointName()
		if j, dup := names[n]; dup {
			return fmt.Errorf("events.webhooks[%d]: name %q is already used by webhooks[%d]", i, n, j)
		}
		names[n] = i
	}
	return nil
}

func (w Webhook) validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("url: must be an http:// or https:// URL")
	}
	switch w.Format {
	case FormatCloudEvents:
		if w.SecretEnv == "" {
			return errors.New("secret_env: required with format cloudevents (names the variable holding the HMAC key)")
		}
	case FormatSlack:
	default:
		return fmt.Errorf("format: %q is not %q or %q", w.Format, FormatCloudEvents, FormatSlack)
	}
	if w.Name != "" && strings.TrimSpace(w.Name) != w.Name {
		return fmt.Errorf("name: %q has surrounding spaces", w.Name)
	}
	for i, p := range w.Types {
		if _, err := path.Match(p, ""); err != nil || !strings.HasPrefix(p, EventTypePrefix) {
			return fmt.Errorf("types[%d]: %q is not an event type or glob starting with %q", i, p, EventTypePrefix)
		}
	}
	for i, r := range w.Repositories {
		if _, err := path.Match(strings.ReplaceAll(r, "**", "*"), ""); err != nil || r == "" {
			return fmt.Errorf("repositories[%d]: %q is not a valid glob", i, r)
		}
	}
	for i, up := range w.Upstreams {
		if up == "" {
			return fmt.Errorf("upstreams[%d]: must not be empty", i)
		}
	}
	if w.Timeout < 100*time.Millisecond || w.Timeout > 5*time.Minute {
		return fmt.Errorf("timeout: %s is outside 100ms..5m", w.Timeout)
	}
	return nil
}

// applyDefaults fills what each webhook left unset (format, timeout):
// list entries get no defaults from Default().
func (e *Events) applyDefaults() {
	for i := range e.Webhooks {
		if e.Webhooks[i].Format == "" {
			e.Webhooks[i].Format = FormatCloudEvents
		}
		if e.Webhooks[i].Timeout == 0 {
			e.Webhooks[i].Timeout = 10 * time.Second
		}
	}
}
