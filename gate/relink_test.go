package gate_test

import (
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestRelinkDerivesRecordedLinks: the links Relink derives from stored
// manifests for a state file of an older version are exactly those the
// fetch and sign steps record, for an index and a single image.
func TestRelinkDerivesRecordedLinks(t *testing.T) {
	priv, _, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadSigner(priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	up := registrytest.NewUpstream(t)
	p := buildSigningPipeline(t, up, t.TempDir(), signer, func(c *config.Config) { c.Gate.Policy = config.PolicyAuto })
	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64")
	img := registrytest.Image(t, 2, 512, types.DockerManifestSchema2)
	for _, d := range []digest.Digest{
		digest.Digest(up.PushIndex(t, "team/app:multi", idx).String()),
		digest.Digest(up.PushImage(t, "team/app:single", img).String()),
	} {
		ref := state.Ref{Upstream: "docker.io", Repository: "team/app", Digest: d}
		if _, err := p.engine.Request(ref, "test"); err != nil {
			t.Fatal(err)
		}
		rec := waitFor(t, p.store, ref, func(i state.Image) bool { return i.State == state.StateApproved })
		if rec.Signed == nil {
			t.Fatalf("%s approved without signing", ref)
		}
		derived, err := gate.ImageLinks(t.Context(), p.content, rec)
		if err != nil {
			t.Fatal(err)
		}
		roles := map[state.Role]int{}
		for _, l := range derived {
			roles[l.Role]++
			recorded, err := p.store.Links(state.Ref{Upstream: "docker.io", Repository: "team/app", Digest: l.Digest})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(recorded, func(r state.Link) bool {
				return r.Role == l.Role && r.Parent == l.Parent && r.Image == l.Image && r.Size == l.Size
			}) {
				t.Errorf("%s: derived link %s %.19s of %.19s not recorded: %+v", ref, l.Role, l.Digest, l.Parent, recorded)
			}
		}
		if roles[state.RoleArtifact] < 3 || roles[state.RoleArtifactBlob] < 3 || roles[state.RoleConfig] == 0 || roles[state.RoleLayer] == 0 {
			t.Errorf("%s: derived roles %v", ref, roles)
		}
		if len(rec.Manifests) > 0 && roles[state.RoleChild] != len(rec.Manifests) {
			t.Errorf("%s: %d child links for %d platform manifests", ref, roles[state.RoleChild], len(rec.Manifests))
		}
	}
}
