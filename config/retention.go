package config

import (
	"errors"
	"fmt"
	"time"
)

// DefaultGCGrace is retention.gc_grace when it is not set.
const DefaultGCGrace = time.Hour

// Retention says which images' content Airlock releases (state purged)
// and how the content garbage collector runs. Every rule is off unless
// set: unset or 0 disables it.
type Retention struct {
	// UnpulledAfter purges approved images not pulled for this long
	// (counted from their approval when they were never pulled).
	UnpulledAfter time.Duration `yaml:"unpulled_after"`
	// DeniedAfter purges rejected, revoked and failed images this long
	// after they entered that state.
	DeniedAfter time.Duration `yaml:"denied_after"`
	// KeepPerTag keeps at most this many approved digests of each tag's
	// history (the newest); older approved digests are purged.
	KeepPerTag int `yaml:"keep_per_tag"`
	// MaxBytes is a quota on the content kept images reference: beyond
	// it, the least recently pulled approved images are purged first.
	MaxBytes Size `yaml:"max_bytes"`
	// Interval runs retention and the content garbage collector on a
	// schedule; 0 runs them only on `airlock gc`.
	Interval time.Duration `yaml:"interval"`
	// GCGrace protects fresh content: a blob written less than this long
	// ago is never deleted (an in-flight fetch may not have recorded it
	// yet), and an image pulled less than this long ago is never purged.
	// It must be longer than the longest image fetch. Default 1h.
	GCGrace time.Duration `yaml:"gc_grace"`
}

// validate checks the retention rules.
func (r Retention) validate() error {
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"unpulled_after", r.UnpulledAfter}, {"denied_after", r.DeniedAfter}, {"interval", r.Interval}} {
		if f.v < 0 {
			return fmt.Errorf("retention.%s: must not be negative (0s disables it)", f.name)
		}
	}
	if r.KeepPerTag < 0 {
		return errors.New("retention.keep_per_tag: must not be negative (0 disables it)")
	}
	if r.MaxBytes < 0 {
		return errors.New("retention.max_bytes: must not be negative (0 disables it)")
	}
	if r.Interval > 0 && r.Interval < time.Second {
		return fmt.Errorf("retention.interval: %s is under 1s", r.Interval)
	}
	if r.GCGrace < time.Second {
		return fmt.Errorf("retention.gc_grace: %s is under 1s; fresh blobs of in-flight fetches need it", r.GCGrace)
	}
	return nil
}

// Enabled reports whether any purge rule is set.
func (r Retention) Enabled() bool {
	return r.UnpulledAfter > 0 || r.DeniedAfter > 0 || r.KeepPerTag > 0 || r.MaxBytes > 0
}
