package gate_test

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/clamdtest"
	"github.com/airlockproxy/airlock/internal/layertest"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// helmChart is an OCI artifact shaped like `helm push` makes: a Helm
// config media type and one chart layer (a gzip tar).
func helmChart(t *testing.T) v1.Image {
	t.Helper()
	chart := layertest.Gzip(t, layertest.Tar(t, layertest.File{Name: "demo/Chart.yaml", Body: []byte("apiVersion: v2\nname: demo\nversion: 0.1.0\n")}))
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.cncf.helm.config.v1+json")
	img, err := mutate.AppendLayers(img, static.NewLayer(chart, "application/vnd.cncf.helm.chart.content.v1.tar+gzip"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// wasmModule is an artifact whose one layer is not a tar; with content
// it carries the EICAR test file as the module's bytes.
func wasmModule(t *testing.T, body []byte) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), "application/vnd.wasm.config.v0+json")
	img, err := mutate.AppendLayers(img, static.NewLayer(body, "application/vnd.wasm.content.layer.v1+wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestArtifactTypes: an OCI artifact is never scanned as an image and
// never fails for it: policy.artifact_types decides (manual by default:
// awaiting an admin with a clear reason; allow; deny). With malware
// scanning on, an artifact layer that is not a tar is scanned whole.
func TestArtifactTypes(t *testing.T) {
	clamd := clamdtest.Start(t)
	up := registrytest.NewUpstream(t)
	sc := newScanner(t, opensslCVE)
	cases := []struct {
		name   string
		img    v1.Image
		types  map[string]string
		state  state.State
		reason string
	}{
		{"helm chart, default manual", helmChart(t), nil, state.StateAwaitingApproval, "application/vnd.cncf.helm.config.v1+json is not a container image: waiting for an admin"},
		{"helm charts allowed by glob", helmChart(t), map[string]string{"application/vnd.cncf.helm.*": "allow"}, state.StateApproved, ""},
		{"helm charts denied", helmChart(t), map[string]string{"application/vnd.cncf.helm.config.v1+json": "deny", "application/*": "allow"}, state.StateRejected, "denied by policy.artifact_types"},
		{"clean wasm allowed", wasmModule(t, []byte("\x00asm\x01\x00\x00\x00")), map[string]string{"application/vnd.wasm.*": "allow"}, state.StateApproved, ""},
		{"wasm with EICAR", wasmModule(t, clamdtest.EICAR()), map[string]string{"application/vnd.wasm.*": "allow"}, state.StateRejected, clamdtest.EICARSignature},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := "charts/a" + string(rune('a'+i))
			d := up.PushImage(t, repo+":0.1.0", tc.img)
			p := buildPipeline(t, up, t.TempDir(), nil, sc, func(c *config.Config) {
				scanConfig(config.RescanRevoke)(c)
				c.Policy.ArtifactTypes = tc.types
				c.Malware.Clamd = clamd.Address
			})
			ref := state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.Digest(d.String())}
			if _, err := p.engine.Request(ref, "test"); err != nil {
				t.Fatal(err)
			}
			img := waitFor(t, p.store, ref, func(i state.Image) bool { return !i.State.InPipeline() })
			if img.State != tc.state || !strings.Contains(img.Reason, tc.reason) {
				t.Errorf("%s (%s), want %s (%s)", img.State, img.Reason, tc.state, tc.reason)
			}
		})
	}
}
