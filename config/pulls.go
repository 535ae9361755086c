package config

import (
	"fmt"
	"time"
)

// MaxPullsRecent bounds pulls.recent: each entry is stored per image.
const MaxPullsRecent = 1000

// Pulls configures pull records: every served manifest updates its image's
// last_pulled and pull_count and a bounded list of its recent pullers.
// Records are gathered in memory and written in one state transaction per
// FlushInterval, never one per request.
type Pulls struct {
	// Enabled turns pull records on (the default).
	Enabled bool `yaml:"enabled"`
	// Recent is how many recent pullers (client address and user agent)
	// are kept per image, newest first.
	Recent int `yaml:"recent"`
	// FlushInterval is how often the gathered records are written; what
	// `airlock images pulls` shows may lag by this much.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// defaultPulls is the pulls: section of Default.
func defaultPulls() Pulls {
	return Pulls{Enabled: true, Recent: 20, FlushInterval: 5 * time.Second}
}

func (p Pulls) validate() error {
	if !p.Enabled {
		return nil
	}
	if p.Recent < 1 || p.Recent > MaxPullsRecent {
		return fmt.Errorf("pulls.recent: %d is outside 1..%d", p.Recent, MaxPullsRecent)
	}
	if p.FlushInterval < 100*time.Millisecond || p.FlushInterval > time.Hour {
		return fmt.Errorf("pulls.flush_interval: %s is outside 100ms..1h", p.FlushInterval)
	}
	return nil
}
