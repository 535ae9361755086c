package config

import (
	"strings"
	"testing"
	"time"
)

// TestEventsConfig: defaults, per-webhook defaults, filters and the
// errors that name the field.
func TestEventsConfig(t *testing.T) {
	noEnvToken(t)
	c, err := Load(writeConfig(t, "events:\n  webhooks:\n    - url: https://hooks.example.com/a\n      secret_env: HOOK_SECRET\n      types: [\"dev.airlock.image.*\"]\n      repositories: [\"library/*\", \"team/**\"]\n      upstreams: [docker.io]\n    - url: https://hooks.example.com/services/T/B/XYZ\n      format: slack\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Events
	if e.MaxPending != 100_000 || e.MinBackoff != time.Second || e.MaxBackoff != 5*time.Minute || e.Source != "/airlock" {
		t.Fatalf("events defaults: %+v", e)
	}
	w := e.Webhooks[0]
	if w.Format != FormatCloudEvents || w.Timeout != 10*time.Second {
		t.Fatalf("webhook defaults: %+v", w)
	}
	if !w.MatchesType("dev.airlock.image.approved") || w.MatchesType("dev.airlock.vulndb.updated") {
		t.Error("type glob")
	}
	if !w.MatchesImage("docker.io", "library/alpine") || !w.MatchesImage("docker.io", "team/a/b") ||
		w.MatchesImage("docker.io", "library/a/b") || w.MatchesImage("ghcr.io", "library/alpine") {
		t.Error("upstream and repository filters")
	}
	slack := e.Webhooks[1].EndpointName()
	if !strings.HasPrefix(slack, "hooks.example.com#") || strings.Contains(slack, "XYZ") || slack == w.EndpointName() {
		t.Errorf("default names %q, %q", w.EndpointName(), slack)
	}
	for body, want := range map[string]string{
		"events:\n  webhooks:\n    - url: ftp://x/\n      secret_env: S\n":                                             "events.webhooks[0].url",
		"events:\n  webhooks:\n    - url: http://x/\n":                                                                 "events.webhooks[0].secret_env",
		"events:\n  webhooks:\n    - url: http://x/\n      format: xml\n":                                              "events.webhooks[0].format",
		"events:\n  webhooks:\n    - url: http://x/\n      secret_env: S\n      types: [approved]\n":                   "events.webhooks[0].types[0]",
		"events:\n  webhooks:\n    - url: http://x/\n      secret_env: S\n      timeout: 1ms\n":                        "events.webhooks[0].timeout",
		"events:\n  webhooks:\n    - {url: \"http://x/\", secret_env: S}\n    - {url: \"http://x/\", secret_env: S}\n": "events.webhooks[1]: name",
		"events:\n  max_pending: 5\n":                     "events.max_pending",
		"events:\n  min_backoff: 2s\n  max_backoff: 1s\n": "max_backoff",
	} {
		_, err := Load(writeConfig(t, body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to name %s", body, err, want)
		}
	}
}
