package e2e

// Real registry clients (skopeo, crane, containerd's ctr, dockerd, podman)
// pulling through airlock. scripts/install-e2e-tools.sh installs them; CI
// runs it first, so there (CI=true) a missing tool fails the test, while a
// local run skips it. Every tool gets its config and data under a temp dir;
// the daemons the tests start (containerd, dockerd) listen on unix sockets
// in temp dirs and are stopped by PID.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// clientTimeout bounds one client command.
const clientTimeout = 90 * time.Second

// inCI reports whether the suite runs in CI, where the installer ran and a
// missing client is an error.
func inCI() bool { return os.Getenv("CI") != "" }

// requireTool returns the first of candidates that exists as an executable
// (an absolute path, or a name looked up in PATH). If none does it fails
// the test in CI and skips it elsewhere.
func requireTool(t testing.TB, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return c
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%v not installed; run scripts/install-e2e-tools.sh", candidates)
	if inCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// gopathBin is where `go install` put crane.
func gopathBin(name string) string {
	gp := os.Getenv("GOPATH")
	if gp == "" {
		gp = build.Default.GOPATH
	}
	return filepath.Join(strings.Split(gp, string(os.PathListSeparator))[0], "bin", name)
}

// runTool runs bin with args and env (added to a minimal environment),
// returns its combined output and logs the command and a tail of it.
func runTool(t testing.TB, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LANG=C"}, env...)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	b, err := cmd.CombinedOutput()
	out := string(b)
	t.Logf("$ %s %s  (%s, err=%v)\n%s", filepath.Base(bin), strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err, tail(out, 12))
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out after %s", bin, args, clientTimeout)
	}
	return out, err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// mustFail checks that a client command failed and that its output shows
// every one of want (airlock's message).
func mustFail(t testing.TB, what, out string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want airlock to refuse it; output:\n%s", what, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output does not show %q:\n%s", what, w, out)
		}
	}
}

func mustSucceed(t testing.TB, what, out string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v; output:\n%s", what, err, out)
	}
}

// gateCase is one image a client pulls through the quarantine gate.
type gateCase struct {
	// image is the admin name "<upstream>/<repo>@<digest>".
	image string
	// pull runs the client once; step names the attempt.
	pull func(t *testing.T, step string) (string, error)
	// quarantined and revoked are what the client's output must show
	// when airlock refuses the image.
	quarantined, revoked []string
	// check, if set, verifies what an approved pull produced.
	check func(t *testing.T, out string)
}

// runGate drives c through the gate: refused in quarantine, pulled after
// approve, refused again after revoke.
func runGate(t *testing.T, al *Airlock, c gateCase) {
	t.Helper()
	out, err := c.pull(t, "quarantined")
	mustFail(t, "pull in quarantine", out, err, c.quarantined...)
	al.waitState(t, c.image, stateTimeout, "awaiting-approval")

	al.action(t, "approve", c.image, "e2e: client test")
	out, err = c.pull(t, "approved")
	mustSucceed(t, "pull after approve", out, err)
	if c.check != nil {
		c.check(t, out)
	}

	al.action(t, "revoke", c.image, "e2e: revoked for the client test")
	out, err = c.pull(t, "revoked")
	mustFail(t, "pull after revoke", out, err, c.revoked...)
}

// writeFile writes content to p (creating its directory) and returns p.
func writeFile(t testing.TB, p, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// digestOfFile is the sha256 digest of a file's bytes.
func digestOfFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// denied are the words airlock's refusals carry.
var (
	quarantineWords = []string{"quarantine"}
	revokedWords    = []string{"revoked", "e2e: revoked for the client test"}
)

// TestClientSkopeo: skopeo inspect and skopeo copy (to a dir: layout, which
// keeps the manifest bytes) through airlock's docker.io upstream.
func TestClientSkopeo(t *testing.T) {
	skopeo := requireTool(t, "/usr/bin/skopeo", "skopeo")
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true})
	home := t.TempDir()
	policy := writeFile(t, filepath.Join(home, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	regConf := writeFile(t, filepath.Join(home, "registries.conf"), "unqualified-search-registries = []\n")
	env := []string{
		"HOME=" + home, "XDG_RUNTIME_DIR=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(home, "auth.json"), "TMPDIR=" + home,
	}
	global := []string{"--policy", policy, "--registries-conf", regConf}

	d := up.PushImage(t, "library/skopeo-app:v1", registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
	src := "docker://" + al.Host + "/library/skopeo-app:v1"
	image := "docker.io/library/skopeo-app@" + d.String()

	t.Run("inspect", func(t *testing.T) {
		runGate(t, al, gateCase{
			image: image,
			pull: func(t *testing.T, step string) (string, error) {
				return runTool(t, env, skopeo, append(global, "inspect", "--tls-verify=false", src)...)
			},
			quarantined: append([]string{image}, quarantineWords...),
			revoked:     append([]string{image}, revokedWords...),
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, d.String()) {
					t.Errorf("skopeo inspect does not show digest %s:\n%s", d, out)
				}
			},
		})
	})

	d2 := up.PushImage(t, "library/skopeo-copy:v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
	image2 := "docker.io/library/skopeo-copy@" + d2.String()
	var dest string
	t.Run("copy", func(t *testing.T) {
		runGate(t, al, gateCase{
			image: image2,
			pull: func(t *testing.T, step string) (string, error) {
				dest = filepath.Join(home, "copy-"+step)
				return runTool(t, env, skopeo, append(global, "copy", "--src-tls-verify=false",
					"docker://"+al.Host+"/library/skopeo-copy:v1", "dir:"+dest)...)
			},
			quarantined: quarantineWords,
			revoked:     revokedWords,
			check: func(t *testing.T, _ string) {
				if got := digestOfFile(t, filepath.Join(dest, "manifest.json")); got != d2.String() {
					t.Errorf("copied manifest digest %s, want the upstream's %s", got, d2)
				}
			},
		})
	})
}

// TestClientCrane: crane manifest, digest and pull (a single image through
// the ghcr path alias, and an index through docker.io).
func TestClientCrane(t *testing.T) {
	crane := requireTool(t, "crane", gopathBin("crane"))
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true})
	home := t.TempDir()
	env := []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}

	d := up.PushImage(t, "team/crane-app:v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
	image := "ghcr.io/team/crane-app@" + d.String()
	ref := al.Host + "/ghcr/team/crane-app:v1"
	t.Run("manifest", func(t *testing.T) {
		runGate(t, al, gateCase{
			image: image,
			pull: func(t *testing.T, step string) (string, error) {
				return runTool(t, env, crane, "manifest", "--insecure", ref)
			},
			quarantined: append([]string{image}, quarantineWords...),
			revoked:     append([]string{image}, revokedWords...),
			check: func(t *testing.T, out string) {
				sum := sha256.Sum256([]byte(out))
				if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.String() {
					t.Errorf("crane manifest printed a manifest with digest %s, want %s", got, d)
				}
			},
		})
	})

	idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64/v8")
	di := up.PushIndex(t, "library/crane-multi:v1", idx)
	imageIdx := "docker.io/library/crane-multi@" + di.String()
	tarball := filepath.Join(home, "pulled.tar")
	t.Run("pull-index", func(t *testing.T) {
		runGate(t, al, gateCase{
			image: imageIdx,
			pull: func(t *testing.T, step string) (string, error) {
				os.Remove(tarball)
				out, err := runTool(t, env, crane, "digest", "--insecure", al.Host+"/library/crane-multi:v1")
				if err != nil {
					return out, err
				}
				if strings.TrimSpace(out) != di.String() {
					t.Errorf("crane digest = %q, want %s", strings.TrimSpace(out), di)
				}
				return runTool(t, env, crane, "pull", "--insecure", "--platform", "linux/arm64/v8",
					al.Host+"/library/crane-multi:v1", tarball)
			},
			quarantined: quarantineWords,
			revoked:     revokedWords,
			check: func(t *testing.T, _ string) {
				want := platformDigest(t, idx, "arm64")
				out, err := runTool(t, env, crane, "manifest", "--insecure", "--platform", "linux/arm64/v8", al.Host+"/library/crane-multi:v1")
				mustSucceed(t, "crane manifest --platform", out, err)
				sum := sha256.Sum256([]byte(out))
				if got := "sha256:" + hex.EncodeToString(sum[:]); got != want.String() {
					t.Errorf("crane manifest --platform linux/arm64/v8: digest %s, want %s", got, want)
				}
				if st, err := os.Stat(tarball); err != nil || st.Size() == 0 {
					t.Errorf("crane pull wrote no tarball: %v", err)
				}
			},
		})
	})
}

// platformDigest is the digest of idx's child for architecture arch.
func platformDigest(t testing.TB, idx v1.ImageIndex, arch string) v1.Hash {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && c.Platform.Architecture == arch {
			return c.Digest
		}
	}
	t.Fatalf("index has no %s child", arch)
	return v1.Hash{}
}
