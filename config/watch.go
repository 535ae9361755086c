package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/watch/tagfilter"
)

// Watch defaults and bounds.
const (
	// DefaultWatchInterval is watch[].interval when unset.
	DefaultWatchInterval = time.Hour
	// MinWatchInterval is the shortest watch[].interval accepted.
	MinWatchInterval = time.Second
	// DefaultWatchMaxNewPerRun is watch[].max_new_per_run when unset.
	DefaultWatchMaxNewPerRun = 5
	// MaxWatchMaxNewPerRun bounds watch[].max_new_per_run.
	MaxWatchMaxNewPerRun = 1000
	// MaxWatchTags bounds how many tag patterns a watch may have.
	MaxWatchTags = 64
)

// Watch is one watched upstream repository (config `watch:` list): every
// Interval Airlock lists the repository's tags upstream, resolves those
// matching Tags (HEAD), and queues each new digest through the pipeline,
// so that a moved tag is already approved (or rejected) when the first
// client asks for it.
type Watch struct {
	// Image is "<upstream name or alias>/<repository>", e.g.
	// "docker.io/library/nginx" (on Docker Hub "docker.io/nginx" means
	// the same).
	Image string `yaml:"image"`
	// Tags are the tag patterns: a glob ("1.27.*", "latest"),
	// "regex:<anchored Go regexp>" or "semver:<range>" (">=1.27 <2").
	// See package watch/tagfilter.
	Tags []string `yaml:"tags"`
	// Interval is how often the upstream is checked (default 1h).
	Interval time.Duration `yaml:"interval"`
	// MaxNewPerRun bounds the pipelines this watch has running at once:
	// a run starts at most this many minus those still running (default
	// 5); the rest wait for the next run.
	MaxNewPerRun int `yaml:"max_new_per_run"`
}

// WithDefaults returns w with unset fields at their defaults.
func (w Watch) WithDefaults() Watch {
	if w.Interval == 0 {
		w.Interval = DefaultWatchInterval
	}
	if w.MaxNewPerRun == 0 {
		w.MaxNewPerRun = DefaultWatchMaxNewPerRun
	}
	return w
}

// Validate checks w (with its defaults applied) against the configured
// upstreams: the image must name one of them, and a repository its allow
// list admits.
func (w Watch) Validate(ups []Upstream) error {
	up, repo, ok := strings.Cut(w.Image, "/")
	if !ok || up == "" || repo == "" {
		return fmt.Errorf("image: %q is not <upstream>/<repository>", w.Image)
	}
	if strings.ContainsAny(repo, ":@") || strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") || strings.Contains(repo, "//") {
		return fmt.Errorf("image: %q: name a repository, without a tag or digest", w.Image)
	}
	var found *Upstream
	for i := range ups {
		if ups[i].Name == up || (ups[i].Alias != "" && ups[i].Alias == up) {
			found = &ups[i]
			break
		}
	}
	if found == nil {
		return fmt.Errorf("image: %q names no configured upstream (the first component must be an upstream's name or alias)", w.Image)
	}
	if found.Name == DockerHubName && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	if !found.Allows(repo) {
		return fmt.Errorf("image: %s/%s is not in the allow list of upstream %s", found.Name, repo, found.Name)
	}
	if len(w.Tags) == 0 {
		return errors.New("tags: at least one tag pattern is required")
	}
	if len(w.Tags) > MaxWatchTags {
		return fmt.Errorf("tags: %d patterns (at most %d)", len(w.Tags), MaxWatchTags)
	}
	if _, err := tagfilter.ParseSet(w.Tags); err != nil {
		return fmt.Errorf("tags%w", err)
	}
	if w.Interval < MinWatchInterval {
		return fmt.Errorf("interval: %s is under %s", w.Interval, MinWatchInterval)
	}
	if w.MaxNewPerRun < 1 || w.MaxNewPerRun > MaxWatchMaxNewPerRun {
		return fmt.Errorf("max_new_per_run: %d is outside 1..%d", w.MaxNewPerRun, MaxWatchMaxNewPerRun)
	}
	return nil
}

// RateLimit bounds the requests Airlock sends to one upstream
// (upstreams[].rate_limit). It applies to every request: tag resolution,
// manifest and blob fetches, signatures, referrers, watch listings and
// token exchanges. Unset (0 requests per second) means no bound; a 429
// answer's Retry-After is honoured either way.
type RateLimit struct {
	// RequestsPerSecond is the sustained request rate (may be fractional:
	// 0.5 is one request every two seconds).
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many requests may go at once after a quiet spell
	// (default 1 when a rate is set).
	Burst int `yaml:"burst"`
}

func (r RateLimit) validate() error {
	if r.RequestsPerSecond < 0 {
		return errors.New("rate_limit.requests_per_second: must not be negative (0 means no limit)")
	}
	if r.Burst < 0 {
		return errors.New("rate_limit.burst: must not be negative")
	}
	if r.Burst > 0 && r.RequestsPerSecond == 0 {
		return errors.New("rate_limit.burst: set requests_per_second too (burst alone limits nothing)")
	}
	return nil
}

// validateWatches applies the watch defaults and checks every watch and
// every upstream's rate_limit.
func (c *Config) validateWatches() error {
	for i, u := range c.Upstreams {
		if err := u.RateLimit.validate(); err != nil {
			return fmt.Errorf("upstreams[%d].%w", i, err)
		}
	}
	seen := map[string]int{}
	for i := range c.Watch {
		c.Watch[i] = c.Watch[i].WithDefaults()
		w := c.Watch[i]
		if err := w.Validate(c.Upstreams); err != nil {
			return fmt.Errorf("watch[%d].%w", i, err)
		}
		key := c.WatchKey(w.Image)
		if j, dup := seen[key]; dup {
			return fmt.Errorf("watch[%d]: %s is already watched by watch[%d]; list all its tag patterns in one entry", i, w.Image, j)
		}
		seen[key] = i
	}
	return nil
}

// WatchKey returns the canonical "<upstream name>/<repository>" of a
// watch's image: an alias replaced by the upstream's name, and Docker
// Hub's implicit "library/" added. It returns image unchanged when it
// names no configured upstream.
func (c *Config) WatchKey(image string) string {
	return CanonicalRepo(c.Upstreams, image)
}

// CanonicalRepo is Config.WatchKey for a list of upstreams.
func CanonicalRepo(ups []Upstream, image string) string {
	up, repo, ok := strings.Cut(image, "/")
	if !ok {
		return image
	}
	for _, u := range ups {
		if u.Name == up || (u.Alias != "" && u.Alias == up) {
			if u.Name == DockerHubName && !strings.Contains(repo, "/") {
				repo = "library/" + repo
			}
			return u.Name + "/" + repo
		}
	}
	return image
}
