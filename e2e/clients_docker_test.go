package e2e

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// dockerd is a dockerd a test started: its own data-root, exec-root,
// pidfile and unix socket under a temp dir, no bridge, no iptables, and a
// containerd the test started.
type dockerd struct {
	docker, host, dir, log string
	cmd                    *exec.Cmd
	done                   chan struct{}
}

// startDockerd writes daemonJSON to <tmp>/daemon.json and runs dockerd with
// it against containerd c; env is more environment for dockerd (a proxy).
func startDockerd(t *testing.T, c *containerd, daemonJSON string, env ...string) *dockerd {
	t.Helper()
	bin := requireTool(t, "/usr/sbin/dockerd", "/usr/bin/dockerd")
	// /usr/bin/docker: another docker CLI may come first in PATH.
	cli := requireTool(t, "/usr/bin/docker")
	dir, err := os.MkdirTemp("", "dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{docker: cli, dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock"),
		log: filepath.Join(dir, "dockerd.log"), done: make(chan struct{})}
	cfg := writeFile(t, filepath.Join(dir, "daemon.json"), daemonJSON)
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin,
		"--config-file", cfg,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", d.host,
		"--containerd", c.addr,
		"--bridge", "none",
		"--iptables=false",
		"--ip-masq=false",
		"--userland-proxy=false",
		"--storage-driver", "vfs",
	)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start dockerd: %v", err)
	}
	logf.Close()
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	// Registered after containerd's cleanup, so it runs before it.
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			t.Errorf("dockerd pid %d did not exit after SIGTERM; killing it", d.cmd.Process.Pid)
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("dockerd log tail:\n%s", tail(d.Log(), 40))
		}
		unmountUnder(dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove dockerd dir: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command(cli, "-H", d.host, "version").CombinedOutput()
		if err == nil {
			break
		}
		select {
		case <-d.done:
			t.Fatalf("dockerd exited: %s", tail(d.Log(), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd not ready after 30s: %v %s\n%s", err, out, tail(d.Log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("dockerd pid %d ready on %s", d.cmd.Process.Pid, d.host)
	return d
}

func (d *dockerd) Log() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

func (d *dockerd) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runTool(t, []string{"HOME=" + d.dir, "DOCKER_CONFIG=" + filepath.Join(d.dir, "cli")}, d.docker,
		append([]string{"-H", d.host}, args...)...)
}

// runHello runs ref (a busyboxImage) with dockerd, without a network,
// and checks that it prints want, the image's /hello.txt.
func (d *dockerd) runHello(t *testing.T, ref, want string) {
	t.Helper()
	out, err := d.run(t, "run", "--rm", "--network", "none", ref)
	mustSucceed(t, "docker run", out, err)
	if !strings.Contains(out, want) {
		t.Errorf("docker run printed %q, want the image's /hello.txt", out)
	}
}

// busyboxImage is a runnable image: a static /bin/busybox (Debian's
// busybox-static) and /hello.txt holding msg; its command prints the file.
func busyboxImage(t *testing.T, msg string) v1.Image {
	t.Helper()
	bb := requireTool(t, "/bin/busybox", "/usr/bin/busybox")
	if !isStatic(t, bb) {
		msg := bb + " is dynamically linked; install busybox-static (scripts/install-e2e-tools.sh)"
		if inCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bin)
	add(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	add(&tar.Header{Name: "hello.txt", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(msg+"\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/bin/busybox", "cat", "/hello.txt"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// isStatic reports whether the ELF file p has no program interpreter.
func isStatic(t *testing.T, p string) bool {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// TestClientDockerd: dockerd with airlock as its Docker Hub registry mirror
// (it adds library/ itself) and pulling airlock's ghcr alias directly as an
// insecure registry; `docker run` of the approved image prints its file.
//
// With the mirror, dockerd falls back to registry-1.docker.io when airlock
// refuses, so the refusal's text is in dockerd's log and the error the CLI
// shows comes from that fallback; the direct pull shows airlock's message.
func TestClientDockerd(t *testing.T) {
	c := startContainerd(t)
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "manual", NoHold: true})
	daemon, err := json.MarshalIndent(map[string]any{
		"registry-mirrors":    []string{al.URL},
		"insecure-registries": []string{al.Host},
		"debug":               true,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon.json:\n%s", daemon)
	d := startDockerd(t, c, string(daemon))

	t.Run("mirror", func(t *testing.T) {
		img := busyboxImage(t, "hello from airlock")
		dg := up.PushImage(t, "library/docker-hello:v1", img)
		image := "docker.io/library/docker-hello@" + dg.String()
		mark := 0
		runGate(t, al, gateCase{
			image: image,
			pull: func(t *testing.T, step string) (string, error) {
				mark = len(d.Log())
				out, err := d.run(t, "pull", "docker-hello:v1")
				// dockerd tried airlock first; what airlock said is in its log.
				return out + "\n--- dockerd log ---\n" + d.Log()[mark:], err
			},
			quarantined: append([]string{image}, quarantineWords...),
			revoked:     append([]string{image}, revokedWords...),
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, dg.String()) {
					t.Errorf("docker pull does not report digest %s", dg)
				}
				d.runHello(t, "docker-hello:v1", "hello from airlock")
			},
		})
	})

	t.Run("direct-alias", func(t *testing.T) {
		dg := up.PushImage(t, "team/docker-direct:v1", registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
		image := "ghcr.io/team/docker-direct@" + dg.String()
		ref := al.Host + "/ghcr/team/docker-direct:v1"
		runGate(t, al, gateCase{
			image: image,
			pull: func(t *testing.T, step string) (string, error) {
				return d.run(t, "pull", ref)
			},
			quarantined: append([]string{image}, quarantineWords...),
			revoked:     append([]string{image}, revokedWords...),
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, dg.String()) {
					t.Errorf("docker pull does not report digest %s", dg)
				}
				ls, err := d.run(t, "image", "ls", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")
				mustSucceed(t, "docker image ls", ls, err)
				if !strings.Contains(ls, fmt.Sprintf("%s/ghcr/team/docker-direct:v1 %s", al.Host, dg)) {
					t.Errorf("docker image ls does not list %s at %s:\n%s", ref, dg, ls)
				}
			},
		})
	})
}
