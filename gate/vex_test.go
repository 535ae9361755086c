package gate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestVEXSuppresses: a critical CVE rejects the image; an OpenVEX
// statement not_affected for that image's digest lets it be approved, with
// the suppression on the record; a statement for another image, or for
// another package, does not apply; an unreadable document fails the
// image instead of deciding without it.
func TestVEXSuppresses(t *testing.T) {
	up := registrytest.NewUpstream(t)
	sc := newScanner(t, opensslCVE)
	vexDoc := func(t *testing.T, product, sub string) string {
		subs := ""
		if sub != "" {
			subs = `,"subcomponents":[{"@id":"` + sub + `"}]`
		}
		p := filepath.Join(t.TempDir(), "app.openvex.json")
		body := `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1","author":"security",
		  "statements":[{"vulnerability":{"name":"CVE-2026-3001"},"products":[{"@id":"` + product + `"` + subs + `}],
		  "status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name  string
		vex   func(d string) string // the VEX file for image digest d ("" for none)
		state state.State
		want  string
	}{
		{"no VEX", func(string) string { return "" }, state.StateRejected, "CVE-2026-3001"},
		{"not_affected for this image", func(d string) string {
			return vexDoc(t, "pkg:oci/app@"+strings.Replace(d, ":", "%3A", 1), "")
		}, state.StateApproved, ""},
		{"for this image's openssl", func(d string) string {
			return vexDoc(t, "docker.io/library/app@"+d, "pkg:apk/alpine/openssl@3.0.1-r0")
		}, state.StateApproved, ""},
		{"for another image", func(string) string {
			return vexDoc(t, "pkg:oci/app@"+digest.FromString("other").String(), "")
		}, state.StateRejected, "CVE-2026-3001"},
		{"for another package", func(d string) string {
			return vexDoc(t, "pkg:oci/app@"+d, "pkg:apk/alpine/zlib@1.3")
		}, state.StateRejected, "CVE-2026-3001"},
		{"unreadable document", func(string) string {
			p := filepath.Join(t.TempDir(), "broken.json")
			os.WriteFile(p, []byte("{not json"), 0o644)
			return p
		}, state.StateFailed, "policy.vex"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := "library/vex" + string(rune('a'+i))
			d := up.PushImage(t, repo+":1", registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"}))
			file := tc.vex(d.String())
			p := buildPipeline(t, up, t.TempDir(), nil, sc, func(c *config.Config) {
				scanConfig(config.RescanRevoke)(c)
				if file != "" {
					c.Policy.VEX = []string{file}
				}
			})
			ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(d.String())}
			if _, err := p.engine.Request(ref, "test"); err != nil {
				t.Fatal(err)
			}
			img := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == tc.state })
			if !strings.Contains(img.Reason, tc.want) {
				t.Errorf("reason %q does not contain %q", img.Reason, tc.want)
			}
			if tc.state == state.StateApproved {
				if img.Policy == nil || len(img.Policy.Suppressed) != 1 || !strings.Contains(img.Policy.Suppressed[0], "not_affected: vulnerable_code_not_in_execute_path") {
					t.Errorf("suppression not on the record: %+v", img.Policy)
				}
			}
		})
	}
}
