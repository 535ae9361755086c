package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// podmanRunner runs podman with its storage (vfs), run root, tmp dir,
// registries.conf and policy under a temp dir.
type podmanRunner struct {
	bin, dir string
	env      []string
}

func newPodman(t *testing.T, registriesConf string) *podmanRunner {
	t.Helper()
	bin := requireTool(t, "/usr/bin/podman", "podman")
	dir := t.TempDir()
	p := &podmanRunner{bin: bin, dir: dir}
	writeFile(t, filepath.Join(dir, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	writeFile(t, filepath.Join(dir, "registries.conf"), registriesConf)
	writeFile(t, filepath.Join(dir, "storage.conf"), fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n",
		filepath.Join(dir, "run"), filepath.Join(dir, "root")))
	writeFile(t, filepath.Join(dir, "auth.json"), `{"auths":{}}`)
	writeFile(t, filepath.Join(dir, "containers.conf"), "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n")
	p.env = []string{
		"HOME=" + dir, "XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "TMPDIR=" + dir,
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(dir, "auth.json"),
	}
	if err := os.MkdirAll(filepath.Join(dir, "xdg"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *podmanRunner) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	global := []string{
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "libpod"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file",
	}
	return runTool(t, p.env, p.bin, append(global, args...)...)
}

func (p *podmanRunner) pull(t *testing.T, ref string) (string, error) {
	t.Helper()
	return p.run(t, "pull", "--signature-policy", filepath.Join(p.dir, "policy.json"), ref)
}

// TestClientPodman: podman pull through registries.conf, with airlock as
// the location itself (no fallback: docker.io and the ghcr alias by path
// prefix) and as a [[registry.mirror]] of docker.io.
func TestClientPodman(t *testing.T) {
	requireTool(t, "/usr/bin/podman", "podman")
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true})

	t.Run("location", func(t *testing.T) {
		conf := fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "%s"
insecure = true

[[registry]]
prefix = "ghcr.io"
location = "%s/ghcr"
insecure = true
`, al.Host, al.Host)
		t.Logf("registries.conf:\n%s", conf)
		p := newPodman(t, conf)
		for _, tc := range []struct{ upRepo, ref, adminRepo string }{
			{"library/podman-app", "docker.io/library/podman-app:v1", "docker.io/library/podman-app"},
			{"team/podman-app", "ghcr.io/team/podman-app:v1", "ghcr.io/team/podman-app"},
		} {
			t.Run(strings.SplitN(tc.ref, "/", 2)[0], func(t *testing.T) {
				d := up.PushImage(t, tc.upRepo+":v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
				image := tc.adminRepo + "@" + d.String()
				runGate(t, al, gateCase{
					image:       image,
					pull:        func(t *testing.T, step string) (string, error) { return p.pull(t, tc.ref) },
					quarantined: append([]string{image}, quarantineWords...),
					revoked:     append([]string{image}, revokedWords...),
					check: func(t *testing.T, _ string) {
						out, err := p.run(t, "image", "inspect", "--format", "{{.Digest}}", tc.ref)
						mustSucceed(t, "podman image inspect", out, err)
						if strings.TrimSpace(out) != d.String() {
							t.Errorf("podman has %s at %q, want %s", tc.ref, strings.TrimSpace(out), d)
						}
					},
				})
			})
		}
	})

	t.Run("mirror", func(t *testing.T) {
		conf := fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "%s"
insecure = true
`, al.Host)
		t.Logf("registries.conf:\n%s", conf)
		p := newPodman(t, conf)
		d := up.PushImage(t, "library/podman-mirror:v1", registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
		image := "docker.io/library/podman-mirror@" + d.String()
		// When the mirror refuses, podman falls back to docker.io itself
		// (unreachable here) and reports the mirror's error alongside.
		runGate(t, al, gateCase{
			image: image,
			pull: func(t *testing.T, step string) (string, error) {
				return p.pull(t, "docker.io/library/podman-mirror:v1")
			},
			quarantined: append([]string{image}, quarantineWords...),
			revoked:     append([]string{image}, revokedWords...),
		})
	})
}
