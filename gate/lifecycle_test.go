package gate_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestEOLBaseOS: the scan detects alpine 3.17 (end of life 2024-11-22 in
// the shipped table); with policy.deny_eol_os the image is rejected naming
// the release and the date, without it approved with a note, and either
// way the record carries the base OS and its end of life.
func TestEOLBaseOS(t *testing.T) {
	up := registrytest.NewUpstream(t)
	sc := newScanner(t)
	on, off := true, false
	for i, deny := range []*bool{&on, &off} {
		repo := "library/old" + string(rune('a'+i))
		d := up.PushImage(t, repo+":1", registrytest.AlpineImage(t, "3.17.2", registrytest.Pkg{Name: "musl", Version: "1.2.3-r4"}))
		p := buildPipeline(t, up, t.TempDir(), nil, sc, func(c *config.Config) {
			scanConfig(config.RescanRevoke)(c)
			c.Policy.DenyEOLOS = deny
		})
		ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(d.String())}
		if _, err := p.engine.Request(ref, "test"); err != nil {
			t.Fatal(err)
		}
		img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
		if img.Policy == nil || len(img.Policy.BaseOS) != 1 {
			t.Fatalf("record without the base OS: %+v", img.Policy)
		}
		if b := img.Policy.BaseOS[0]; b.Name != "alpine" || b.Release != "3.17" || b.EOL.Format(time.DateOnly) != "2024-11-22" {
			t.Errorf("base OS %+v", b)
		}
		if *deny {
			if img.State != state.StateRejected || !strings.Contains(img.Reason, "alpine 3.17 reached its end of life on 2024-11-22") {
				t.Errorf("deny_eol_os: %s (%s)", img.State, img.Reason)
			}
			continue
		}
		if img.State != state.StateApproved || !strings.Contains(strings.Join(img.Policy.Notes, ";"), "reached its end of life") {
			t.Errorf("without deny_eol_os: %s (%s), notes %v", img.State, img.Reason, img.Policy.Notes)
		}
	}
}
