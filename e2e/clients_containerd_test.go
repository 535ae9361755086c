package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// containerd is a containerd daemon a test started, with its root, state,
// opt dir and gRPC socket under a temp dir.
type containerd struct {
	ctr, addr, dir string
	snapshotter    string
	cmd            *exec.Cmd
	done           chan struct{}
}

// startContainerd runs `containerd --config <tmp>/config.toml` (CRI and the
// snapshotters that need special file systems disabled) and waits until
// `ctr version` answers. It is stopped by PID at cleanup.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	bin := requireTool(t, "/usr/bin/containerd", "containerd")
	ctr := requireTool(t, "/usr/bin/ctr", "ctr")
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{ctr: ctr, dir: dir, addr: filepath.Join(dir, "containerd.sock"), done: make(chan struct{})}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.addr, filepath.Join(dir, "opt"))
	cfgPath := writeFile(t, filepath.Join(dir, "config.toml"), cfg)
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start containerd: %v", err)
	}
	logf.Close()
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			t.Errorf("containerd pid %d did not exit after SIGTERM; killing it", c.cmd.Process.Pid)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Logf("containerd log tail:\n%s", tail(string(b), 40))
		}
		// Unmount anything containerd left mounted under its root before removing it.
		unmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove containerd dir: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command(ctr, "--address", c.addr, "version").CombinedOutput()
		if err == nil {
			break
		}
		select {
		case <-c.done:
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd exited: %s", tail(string(b), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not ready after 20s: %v %s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.snapshotter = "overlayfs"
	if out, _ := exec.Command(ctr, "--address", c.addr, "plugins", "ls").CombinedOutput(); !overlayOK(string(out)) {
		c.snapshotter = "native"
	}
	t.Logf("containerd pid %d ready on %s (snapshotter %s)", c.cmd.Process.Pid, c.addr, c.snapshotter)
	return c
}

// overlayOK reports whether `ctr plugins ls` lists the overlayfs snapshotter as ok.
func overlayOK(plugins string) bool {
	for _, l := range strings.Split(plugins, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "io.containerd.snapshotter.v1" && f[1] == "overlayfs" && f[3] == "ok" {
			return true
		}
	}
	return false
}

// unmountUnder lazily unmounts every mount point below dir.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) >= 2 && strings.HasPrefix(f[1], dir+"/") {
			_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
		}
	}
}

// pull runs `ctr images pull --hosts-dir hostsDir` in namespace ns.
func (c *containerd) pull(t *testing.T, ns, hostsDir, ref string, extra ...string) (string, error) {
	t.Helper()
	args := []string{"--address", c.addr, "--namespace", ns, "--debug", "images", "pull", "--hosts-dir", hostsDir, "--snapshotter", c.snapshotter}
	args = append(args, extra...)
	return runTool(t, []string{"HOME=" + c.dir}, c.ctr, append(args, ref)...)
}

// run runs ctr with args in namespace ns.
func (c *containerd) run(t *testing.T, ns string, args ...string) (string, error) {
	t.Helper()
	return runTool(t, []string{"HOME=" + c.dir}, c.ctr, append([]string{"--address", c.addr, "--namespace", ns}, args...)...)
}

// writeHosts writes <dir>/<host>/hosts.toml.
func writeHosts(t *testing.T, dir, host, content string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, host, "hosts.toml"), content)
}

// airlockHosts is the hosts.toml for docker.io that the README documents:
// server is airlock too, so containerd has nothing to fall back to.
func airlockHosts(al *Airlock) string {
	return fmt.Sprintf(`server = "%s"

[host."%s"]
  capabilities = ["pull", "resolve"]
`, al.URL, al.URL)
}

// airlockAliasHosts reaches airlock's ghcr alias through the path prefix.
func airlockAliasHosts(al *Airlock, alias string) string {
	u := al.URL + "/v2/" + alias
	return fmt.Sprintf(`server = "%s"
override_path = true

[host."%s"]
  capabilities = ["pull", "resolve"]
  override_path = true
`, u, u)
}

// containerd's resolver HEADs the manifest, so a refusal reaches ctr as a
// bare status; with --debug, ctr logs the response headers, where airlock
// puts its message (Airlock-Reason).
var (
	ctrQuarantined = []string{"403 Forbidden", "quarantine"}
	ctrRevoked     = []string{"403 Forbidden", "revoked"}
)

// TestClientContainerd: ctr (containerd 1.6) pulling through hosts.toml
// files that leave no fallback (server is airlock too): a single image by
// docker.io (ns routing), a busybox image that `ctr run` then runs, an index
// with --all-platforms through the ghcr alias (override_path), all unpacked
// with a snapshotter; the node config shipped in deploy/containerd/certs.d;
// and the proof that containerd never reaches the upstream itself when
// airlock refuses, with a control showing the check catches a config that
// does fall back.
func TestClientContainerd(t *testing.T) {
	c := startContainerd(t)
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true})
	hosts := t.TempDir()
	writeHosts(t, hosts, "docker.io", airlockHosts(al))
	writeHosts(t, hosts, "ghcr.io", airlockAliasHosts(al, "ghcr"))
	const ns = "airlock-e2e"

	t.Run("docker.io-image", func(t *testing.T) {
		d := up.PushImage(t, "library/ctr-app:v1", registrytest.Image(t, 2, 4096, types.OCIManifestSchema1))
		ref := "docker.io/library/ctr-app:v1"
		runGate(t, al, gateCase{
			image: "docker.io/library/ctr-app@" + d.String(),
			pull: func(t *testing.T, step string) (string, error) {
				return c.pull(t, ns, hosts, ref)
			},
			quarantined: ctrQuarantined,
			revoked:     ctrRevoked,
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, "/v2/library/ctr-app/manifests/v1?ns=docker.io") {
					t.Errorf("ctr did not request /v2/library/ctr-app/manifests/v1?ns=docker.io:\n%s", out)
				}
				if !strings.Contains(out, "unpacking linux/amd64 "+d.String()) || !strings.Contains(out, "done") {
					t.Errorf("ctr pull did not unpack %s:\n%s", d, out)
				}
				ls, err := c.run(t, ns, "images", "ls")
				mustSucceed(t, "ctr images ls", ls, err)
				if !strings.Contains(ls, ref) || !strings.Contains(ls, d.String()) {
					t.Errorf("ctr images ls does not list %s at %s:\n%s", ref, d, ls)
				}
			},
		})
	})

	t.Run("run", func(t *testing.T) {
		d := up.PushImage(t, "library/ctr-hello:v1", busyboxImage(t, "hello from containerd"))
		ref := "docker.io/library/ctr-hello:v1"
		runGate(t, al, gateCase{
			image:       "docker.io/library/ctr-hello@" + d.String(),
			pull:        func(t *testing.T, step string) (string, error) { return c.pull(t, ns, hosts, ref) },
			quarantined: ctrQuarantined,
			revoked:     ctrRevoked,
			check: func(t *testing.T, _ string) {
				out, err := c.run(t, ns, "run", "--rm", "--snapshotter", c.snapshotter, ref, "ctr-hello")
				mustSucceed(t, "ctr run", out, err)
				if !strings.Contains(out, "hello from containerd") {
					t.Errorf("ctr run printed %q, want the image's /hello.txt", out)
				}
			},
		})
	})

	t.Run("ghcr-index-override-path", func(t *testing.T) {
		idx := registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64/v8")
		d := up.PushIndex(t, "team/ctr-multi:v1", idx)
		ref := "ghcr.io/team/ctr-multi:v1"
		runGate(t, al, gateCase{
			image: "ghcr.io/team/ctr-multi@" + d.String(),
			pull: func(t *testing.T, step string) (string, error) {
				return c.pull(t, ns, hosts, ref, "--all-platforms")
			},
			quarantined: ctrQuarantined,
			revoked:     ctrRevoked,
			check: func(t *testing.T, out string) {
				// containerd went through the path prefix, saying which upstream.
				if !strings.Contains(out, "/v2/ghcr/team/ctr-multi/manifests/v1?ns=ghcr.io") {
					t.Errorf("ctr did not request /v2/ghcr/team/ctr-multi/manifests/v1?ns=ghcr.io:\n%s", out)
				}
				for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
					if !strings.Contains(out, "unpacking "+p+" "+d.String()) {
						t.Errorf("ctr pull --all-platforms did not unpack %s:\n%s", p, out)
					}
				}
			},
		})
	})

	// The node config shipped in deploy/containerd/certs.d, with
	// airlock.internal:5000 replaced by this airlock.
	t.Run("deploy-hosts.toml", func(t *testing.T) {
		const shipped = "../deploy/containerd/certs.d"
		dir := t.TempDir()
		for _, host := range []string{"docker.io", "ghcr.io"} {
			b, err := os.ReadFile(filepath.Join(shipped, host, "hosts.toml"))
			if err != nil {
				t.Fatalf("shipped containerd config: %v", err)
			}
			if !strings.Contains(string(b), "http://airlock.internal:5000") {
				t.Fatalf("%s/%s/hosts.toml does not name http://airlock.internal:5000", shipped, host)
			}
			writeHosts(t, dir, host, strings.ReplaceAll(string(b), "http://airlock.internal:5000", al.URL))
		}
		for _, tc := range []struct{ upRepo, ref, image, path string }{
			{"library/ctr-deploy", "docker.io/library/ctr-deploy:v1", "docker.io/library/ctr-deploy", "/v2/library/ctr-deploy/manifests/v1?ns=docker.io"},
			{"team/ctr-deploy", "ghcr.io/team/ctr-deploy:v1", "ghcr.io/team/ctr-deploy", "/v2/ghcr/team/ctr-deploy/manifests/v1?ns=ghcr.io"},
		} {
			t.Run(strings.SplitN(tc.ref, "/", 2)[0], func(t *testing.T) {
				d := up.PushImage(t, tc.upRepo+":v1", registrytest.Image(t, 1, 2048, types.OCIManifestSchema1))
				runGate(t, al, gateCase{
					image:       tc.image + "@" + d.String(),
					pull:        func(t *testing.T, step string) (string, error) { return c.pull(t, ns, dir, tc.ref) },
					quarantined: ctrQuarantined,
					revoked:     ctrRevoked,
					check: func(t *testing.T, out string) {
						if !strings.Contains(out, tc.path) {
							t.Errorf("ctr did not request %s:\n%s", tc.path, out)
						}
					},
				})
			})
		}
	})

	t.Run("no-bypass", func(t *testing.T) {
		img := registrytest.Image(t, 2, 4096, types.DockerManifestSchema2)
		d := up.PushImage(t, "library/ctr-nobypass:v1", img)
		image := "docker.io/library/ctr-nobypass@" + d.String()
		ref := "docker.io/library/ctr-nobypass:v1"

		// The first pull starts airlock's own fetch from upstream.
		out, err := c.pull(t, ns, hosts, ref)
		mustFail(t, "first pull", out, err, ctrQuarantined...)
		al.waitState(t, image, stateTimeout, "awaiting-approval")

		// From now on airlock holds the whole image: every request the
		// upstream sees during a refused pull is airlock resolving the tag
		// (a manifest request by tag). containerd reaching the upstream
		// itself would show as blob GETs or manifest GETs by digest.
		up.Reset()
		out, err = c.pull(t, ns, hosts, ref)
		mustFail(t, "pull by tag in quarantine", out, err, ctrQuarantined...)
		reqs := up.Requests()
		for _, r := range reqs {
			if r.Path != "/v2/library/ctr-nobypass/manifests/v1" {
				t.Errorf("upstream saw %s %s?%s during a refused pull; only airlock's tag lookups were expected", r.Method, r.Path, r.RawQuery)
			}
		}
		// At most one tag lookup upstream per manifest request containerd made to airlock.
		if heads := strings.Count(out, "request.method=HEAD"); len(reqs) > heads {
			t.Errorf("upstream saw %d requests during a refused pull, more than the %d airlock received: %+v", len(reqs), heads, reqs)
		}
		up.Reset()
		out, err = c.pull(t, ns, hosts, "docker.io/library/ctr-nobypass@"+d.String())
		mustFail(t, "pull by digest in quarantine", out, err, ctrQuarantined...)
		if reqs := up.Requests(); len(reqs) != 0 {
			t.Errorf("upstream saw %d requests during a refused pull by digest, want none: %+v", len(reqs), reqs)
		}

		// Control: the same check catches a bypass. A hosts.toml with
		// airlock only as a mirror and the upstream as server makes
		// containerd fetch the quarantined image from upstream itself.
		leaky := t.TempDir()
		writeHosts(t, leaky, "docker.io", fmt.Sprintf(`server = "%s"

[host."%s"]
  capabilities = ["pull", "resolve"]
`, up.URL(), al.URL))
		up.Reset()
		out, err = c.pull(t, "airlock-e2e-leaky", leaky, ref)
		mustSucceed(t, "control: pull with the upstream as fallback server", out, err)
		layers, _ := img.Layers()
		for _, l := range layers {
			ld, _ := l.Digest()
			if up.CountBlobGETs(ld) == 0 {
				t.Errorf("control: containerd fell back to upstream but the upstream saw no GET of layer %s", ld)
			}
		}
		// And that image is still in quarantine at airlock.
		if rec, _ := al.image(t, image); rec.Image.State != "awaiting-approval" {
			t.Errorf("after the control pull the image is %q, want awaiting-approval", rec.Image.State)
		}
	})
}
