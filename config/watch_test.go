package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadWatchAndRateLimit(t *testing.T) {
	noEnvToken(t)
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	yaml := `
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    default: true
    rate_limit: {requests_per_second: 2.5, burst: 10}
  - name: ghcr.io
    alias: ghcr
    url: https://ghcr.io
    allow: ["team/*"]
watch:
  - image: docker.io/nginx
    tags: ["semver:>=1.27 <2", "latest"]
  - image: ghcr/team/app
    tags: ["regex:v[0-9]+"]
    interval: 5m
    max_new_per_run: 1
`
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if rl := c.Upstreams[0].RateLimit; rl.RequestsPerSecond != 2.5 || rl.Burst != 10 {
		t.Errorf("rate_limit %+v", rl)
	}
	if w := c.Watch[0]; w.Interval != DefaultWatchInterval || w.MaxNewPerRun != DefaultWatchMaxNewPerRun {
		t.Errorf("defaults not applied: %+v", w)
	}
	if w := c.Watch[1]; w.Interval != 5*time.Minute || w.MaxNewPerRun != 1 {
		t.Errorf("watch[1] %+v", w)
	}
	if k := c.WatchKey("docker.io/nginx"); k != "docker.io/library/nginx" {
		t.Errorf("key %q", k)
	}
	if k := c.WatchKey("ghcr/team/app"); k != "ghcr.io/team/app" {
		t.Errorf("key %q", k)
	}
}

func TestWatchValidation(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Watch = []Watch{{Image: "nginx", Tags: []string{"x"}}} }, "watch[0].image"},
		{func(c *Config) { c.Watch = []Watch{{Image: "quay.io/x/y", Tags: []string{"x"}}} }, "names no configured upstream"},
		{func(c *Config) { c.Watch = []Watch{{Image: "docker.io/nginx:1.27", Tags: []string{"x"}}} }, "without a tag"},
		{func(c *Config) { c.Watch = []Watch{{Image: "docker.io/nginx"}} }, "watch[0].tags"},
		{func(c *Config) { c.Watch = []Watch{{Image: "docker.io/nginx", Tags: []string{"regex:("}}} }, "watch[0].tags[0]"},
		{func(c *Config) { c.Watch = []Watch{{Image: "docker.io/nginx", Tags: []string{"semver:>>1"}}} }, "semver range"},
		{func(c *Config) {
			c.Watch = []Watch{{Image: "docker.io/nginx", Tags: []string{"x"}, Interval: time.Millisecond}}
		}, "watch[0].interval"},
		{func(c *Config) { c.Watch = []Watch{{Image: "docker.io/nginx", Tags: []string{"x"}, MaxNewPerRun: -1}} }, "max_new_per_run"},
		{func(c *Config) {
			c.Watch = []Watch{{Image: "docker.io/nginx", Tags: []string{"x"}}, {Image: "docker.io/library/nginx", Tags: []string{"y"}}}
		}, "already watched"},
		{func(c *Config) {
			c.Upstreams[0].Allow = []string{"myorg/*"}
			c.Watch = []Watch{{Image: "docker.io/nginx", Tags: []string{"x"}}}
		}, "allow list"},
		{func(c *Config) { c.Upstreams[0].RateLimit = RateLimit{RequestsPerSecond: -1} }, "upstreams[0].rate_limit.requests_per_second"},
		{func(c *Config) { c.Upstreams[0].RateLimit = RateLimit{Burst: 5} }, "rate_limit.burst"},
	} {
		c := Default()
		tc.edit(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want it to mention %q", err, tc.want)
		}
	}
}
