package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditDefaultsAndValidation(t *testing.T) {
	d := Default().Audit
	if d.MaxAge != 90*24*time.Hour || d.MaxEntries != 1_000_000 || d.PruneInterval != time.Hour {
		t.Errorf("audit defaults = %+v, want 90 days, 1,000,000 entries, hourly", d)
	}
	tests := []struct {
		name  string
		audit Audit
		field string // "" means valid
	}{
		{"defaults", d, ""},
		{"no bounds", Audit{PruneInterval: time.Hour}, ""},
		{"age at the minimum", Audit{MaxAge: time.Hour, PruneInterval: time.Second}, ""},
		{"age under the minimum", Audit{MaxAge: 90 * time.Second, PruneInterval: time.Hour}, "audit.max_age:"},
		{"negative age", Audit{MaxAge: -time.Hour, PruneInterval: time.Hour}, "audit.max_age:"},
		{"negative count", Audit{MaxEntries: -1, PruneInterval: time.Hour}, "audit.max_entries:"},
		{"small count", Audit{MaxEntries: 1, PruneInterval: time.Hour}, ""},
		{"interval too short", Audit{MaxEntries: 10, PruneInterval: time.Millisecond}, "audit.prune_interval:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Audit = tt.audit
			err := c.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.field)
			}
		})
	}
}

func TestLoadAuditSection(t *testing.T) {
	noEnvToken(t)
	c, err := Load(writeConfig(t, "audit:\n  max_entries: 500\n  prune_interval: 10s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.MaxEntries != 500 || c.Audit.PruneInterval != 10*time.Second || c.Audit.MaxAge != 90*24*time.Hour {
		t.Errorf("audit = %+v; want max_entries 500, prune_interval 10s and the default max_age", c.Audit)
	}
	if _, err := Load(writeConfig(t, "audit:\n  max_age: 10m\n")); err == nil || !strings.Contains(err.Error(), "audit.max_age") {
		t.Errorf("Load with max_age 10m = %v, want an error naming audit.max_age", err)
	}
}
