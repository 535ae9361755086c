package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/storage/state"
)

// The tests in this file are issue 9's rough edges, each through the real
// binary: a DB import that would fill the disk, control characters in the
// audit log, queries Go would parse differently from a front proxy, the
// CLI's --help, serve without a config, an unreachable upstream, and
// /readyz while the scanner is built.

// bombArchive writes a .tar.gz of entries that are all zeros (name → size);
// zeros compress about 1000:1, so a small file expands to a lot.
func bombArchive(t testing.TB, entries ...any) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vulnerability-db_v6.1.10_1.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	zeros := make([]byte, 1<<20)
	for i := 0; i < len(entries); i += 2 {
		name, size := entries[i].(string), entries[i+1].(int64)
		if err := tw.WriteHeader(&tar.Header{Name: name, Size: size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		for left := size; left > 0; left -= int64(len(zeros)) {
			if _, err := tw.Write(zeros[:min(left, int64(len(zeros)))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// leftovers lists what an import may leave behind in the data dir.
func leftovers(t testing.TB, dataDir string) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{dataDir, filepath.Join(dataDir, "vulndb")} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "tmp-") || strings.HasPrefix(e.Name(), "db-upload-") {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out
}

// TestHygieneDBImportBomb: with scan.db_max_size 8MiB, an archive that
// expands past it fails quickly with an error naming the limit, the data
// dir never grows by more than the limit while it runs, nothing is left
// behind, and the DB installed before stays in use. Before the bound the
// importer unpacked everything (a 2 MB gzip wrote 2 GB).
func TestHygieneDBImportBomb(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "scan", Extra: "scan:\n  max_db_age: 0s\n  rescan_interval: 0s\n  db_max_size: 8MiB\n"})

	if out, err := al.cli(t, "db", "import", vulndbtest.Archive(t, baseVulns...)); err != nil {
		t.Fatalf("import of a real DB: %v\n%s", err, out)
	}
	status := func() string {
		t.Helper()
		out, err := al.cli(t, "db", "status", "--json")
		if err != nil {
			t.Fatalf("db status: %v\n%s", err, out)
		}
		return out
	}
	before := status()
	_, baseSize := walkSize(al.DataDir)

	for _, tc := range []struct {
		name    string
		archive string
	}{
		// The DB entry itself is 512 MiB of zeros (~0.5 MB compressed).
		{"database entry", bombArchive(t, "vulnerability.db", int64(512<<20))},
		// The bomb is in an entry the importer reads past.
		{"padding entry", bombArchive(t, "padding", int64(512<<20), "vulnerability.db", int64(1024))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, _ := os.Stat(tc.archive)
			// Watch the data dir while the import runs: its peak, not
			// only what is left, is what fills a disk.
			var peak atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, sz := walkSize(al.DataDir); sz > peak.Load() {
						peak.Store(sz)
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			start := time.Now()
			out, err := al.cli(t, "db", "import", tc.archive)
			el := time.Since(start)
			close(stop)
			wg.Wait()
			t.Logf("%d-byte archive: %s: %v\n%s", fi.Size(), el.Round(time.Millisecond), err, out)
			if err == nil {
				t.Fatalf("the bomb was imported:\n%s", out)
			}
			for _, w := range []string{"413", "8.0 MiB", "scan.db_max_size"} {
				if !strings.Contains(out, w) {
					t.Errorf("the error does not say %q:\n%s", w, out)
				}
			}
			if el > 20*time.Second {
				t.Errorf("the import took %s to fail", el)
			}
			if grown := peak.Load() - baseSize; grown > 2*(8<<20)+int64(fi.Size()) {
				t.Errorf("the data dir grew by %d MiB during the import (limit 8 MiB)", grown>>20)
			}
			if l := leftovers(t, al.DataDir); len(l) > 0 {
				t.Errorf("the import left %v behind", l)
			}
			if after := status(); !sameDB(before, after) {
				t.Errorf("the installed DB changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// An upload bigger than the limit is refused while it is received.
	big := filepath.Join(t.TempDir(), "big.tar.gz")
	b := make([]byte, 9<<20)
	_, _ = rand.Read(b)
	if err := os.WriteFile(big, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := al.cli(t, "db", "import", big)
	if err == nil || !strings.Contains(out, "413") || !strings.Contains(out, "scan.db_max_size") {
		t.Errorf("a 9 MiB upload with an 8 MiB limit: %v\n%s", err, out)
	}
	if l := leftovers(t, al.DataDir); len(l) > 0 {
		t.Errorf("the refused upload left %v behind", l)
	}
	if !sameDB(before, status()) {
		t.Error("the refused upload changed the installed DB")
	}
}

var checksumField = regexp.MustCompile(`"checksum":\s*"[^"]*"`)

// sameDB compares two `db status --json` outputs by checksum.
func sameDB(a, b string) bool {
	ca, cb := checksumField.FindString(a), checksumField.FindString(b)
	return ca != "" && ca == cb
}

// TestHygieneControlCharacters: the admin API refuses control characters
// in actor and reason with 400 (nothing is recorded), and the CLI escapes
// what it prints from state, so a row written before the check cannot
// forge lines of `airlock audit` or `airlock images list`.
func TestHygieneControlCharacters(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	const repo = "hygiene/ctl"
	d := up.PushImage(t, repo+":1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()
	_, _ = pull(al.Ref(t, repo+":1"))
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	entries := len(al.audit(t, image))

	for _, tc := range []struct {
		field, value, want string
	}{
		{"reason", "ok\n2026-01-01T00:00:00Z  admin:alice  approve", "U+000A"},
		{"reason", "tab\tcolumn", "U+0009"},
		{"reason", "\x1b[2Jwiped", "U+001B"},
		{"reason", "c1 \u009b csi", "U+009B"},
		{"reason", "bidi \u202e", "U+202E"},
		{"actor", "eve\r", "U+000D"},
		{"actor", "del\x7f", "U+007F"},
	} {
		body := map[string]string{"image": image, tc.field: tc.value}
		r := al.admin(t, http.MethodPost, "/api/v1/approve", body)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), tc.field) || !strings.Contains(string(r.Body), tc.want) {
			t.Errorf("approve with %s %q = %d %s, want 400 naming %s and %s", tc.field, tc.value, r.Status, r.Body, tc.field, tc.want)
		}
	}
	if d, _ := al.image(t, image); d.Image.State != "awaiting-approval" {
		t.Errorf("a refused action changed the state to %s", d.Image.State)
	}
	if n := len(al.audit(t, image)); n != entries {
		t.Errorf("refused actions wrote %d audit entries", n-entries)
	}

	// Rows written before the API refused them: put them in the state
	// file directly, as an older Airlock would have, then restart.
	al.Stop(t)
	st, err := state.Open(filepath.Join(al.DataDir, "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := state.ParseRef(image)
	if err != nil {
		t.Fatal(err)
	}
	const forged = "ok\n2026-01-01T00:00:00Z  admin:alice  approve  " + "docker.io/x  awaiting-approval  approved  trusted"
	if err := st.Record(state.Entry{Actor: "admin:\x1b]0;pwned\x07eve", Image: image, Action: "note", Reason: forged}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Transition(ref, state.Change{From: []state.State{state.StateAwaitingApproval}, To: state.StateRejected, Actor: "admin", Action: "reject", Reason: "bad\nFORGED-ROW\tx"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	al = startAirlock(t, up, options{DataDir: al.DataDir})

	out, err := al.cli(t, "audit", "--image", image)
	if err != nil {
		t.Fatalf("airlock audit: %v\n%s", err, out)
	}
	n := len(al.audit(t, image))
	if lines := strings.Count(out, "\n"); lines != n+1 {
		t.Errorf("airlock audit printed %d lines for %d entries:\n%s", lines, n, out)
	}
	if strings.ContainsAny(out, "\x1b\x07\t") || !strings.Contains(out, `"ok\n2026-01-01`) || !strings.Contains(out, `\x1b]0;pwned\ae`) {
		t.Errorf("airlock audit printed state unescaped:\n%q", out)
	}
	t.Logf("airlock audit:\n%s", out)
	out, err = al.cli(t, "images", "list")
	if err != nil {
		t.Fatalf("airlock images list: %v\n%s", err, out)
	}
	if strings.Contains(out, "\nFORGED-ROW") || !strings.Contains(out, `"bad\nFORGED-ROW\tx"`) {
		t.Errorf("airlock images list printed a reason unescaped:\n%s", out)
	}
	t.Logf("airlock images list:\n%s", out)
}

// TestHygieneMessages: an IMAGE without its upstream says the upstream is
// unknown and lists the configured ones (it said "never pulled"); revoking
// twice says "already revoked" in words (it printed a Go slice).
func TestHygieneMessages(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	const repo = "hygiene/msg"
	d := up.PushImage(t, repo+":1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()
	_, _ = pull(al.Ref(t, repo+":1"))
	al.waitState(t, image, stateTimeout, "awaiting-approval")

	for _, args := range [][]string{
		{"approve", repo + ":1"},
		{"approve", "library/alpine:3.20"},
		{"images", "show", "quay.io/x/y:1"},
	} {
		out, err := al.cli(t, args...)
		if err == nil || !strings.Contains(out, "unknown upstream") || !strings.Contains(out, "docker.io, ghcr.io") || strings.Contains(out, "never pulled") {
			t.Errorf("airlock %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := al.cli(t, "approve", "ghcr/team/x:1")
	if err == nil || !strings.Contains(out, "alias") || !strings.Contains(out, "ghcr.io/team/x:1") {
		t.Errorf("airlock approve with an alias: %v\n%s", err, out)
	}

	if out, err := al.cli(t, "revoke", image, "--reason", "first"); err != nil {
		t.Fatalf("first revoke: %v\n%s", err, out)
	}
	out, err = al.cli(t, "revoke", image, "--reason", "second")
	if err == nil || !strings.Contains(out, image+" is already revoked") || strings.Contains(out, "[") || !strings.Contains(out, "409") {
		t.Errorf("second revoke: %v\n%s", err, out)
	}
	t.Logf("second revoke: %s", strings.TrimSpace(out))
}

// TestHygieneQuerySemicolon: "?ns=ghcr.io;ns=docker.io" is refused with 400
// UNSUPPORTED; before, Go dropped both pairs and the request went to the
// default upstream, creating a record there. Two ns values are refused too.
func TestHygieneQuerySemicolon(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	up.PushImage(t, "team/app:1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
	al := startAirlock(t, up, options{})
	for _, q := range []string{"ns=ghcr.io;ns=docker.io", "ns=ghcr.io&ns=docker.io", "ns=ghcr.io&x=1;y"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := doHTTP(t, method, al.URL+"/v2/team/app/manifests/1?"+q, nil, map[string]string{"Accept": manifestAccept})
			if r.Status != http.StatusBadRequest {
				t.Errorf("%s ?%s = %d %s, want 400", method, q, r.Status, r.Body)
				continue
			}
			if method == http.MethodGet {
				if e := registryErrors(r.Body); len(e) != 1 || e[0].Code != "UNSUPPORTED" {
					t.Errorf("GET ?%s: %s, want one UNSUPPORTED error", q, r.Body)
				}
			}
		}
	}
	if imgs := al.images(t, ""); len(imgs) != 0 {
		t.Errorf("refused queries created records: %+v", imgs)
	}
}

// TestHygieneServeHelp: `airlock serve --help` prints the usage on stdout
// and exits 0 (it exited 2 printing "exit status 2"); a bad flag still
// exits 2, without that noise.
func TestHygieneServeHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(airlockBin, "serve", "--help")
	cmd.Stdout, cmd.Stderr, cmd.Env = &stdout, &stderr, childEnv()
	if err := cmd.Run(); err != nil {
		t.Errorf("airlock serve --help: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "Usage: airlock serve") || !strings.Contains(stdout.String(), "-config") {
		t.Errorf("airlock serve --help stdout:\n%s", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "exit status") {
		t.Errorf("airlock serve --help mentions an exit status:\n%s%s", stdout.String(), stderr.String())
	}

	out, err := exec.Command(airlockBin, "serve", "--no-such-flag").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Contains(string(out), "exit status") || !strings.Contains(string(out), "no-such-flag") {
		t.Errorf("airlock serve --no-such-flag: %v\n%s", err, out)
	}
}

// netns runs commands in a network namespace of their own (only a
// loopback), so that `airlock serve` on its default addresses (:5000,
// 127.0.0.1:5001) neither collides with nor is reachable from anything
// else on the machine. It skips the test where namespaces are not allowed.
type netns struct{ holder *exec.Cmd }

func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not installed")
	}
	holder := exec.Command("unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 600")
	var out bytes.Buffer
	holder.Stdout, holder.Stderr = &out, &out
	if err := holder.Start(); err != nil {
		t.Skipf("unshare: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "up") {
		if time.Now().After(deadline) || holder.ProcessState != nil {
			t.Skipf("no network namespace here (need root and ip): %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &netns{holder: holder}
}

// command returns name args… to run inside the namespace.
func (n *netns) command(ctx context.Context, dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(n.holder.Process.Pid), "-n", "--", name}, args...)...)
	cmd.Dir, cmd.Env = dir, env
	return cmd
}

// TestHygieneServeWithoutConfig: `airlock serve` with no config generates
// the admin token into <data_dir>/admin.token (mode 0600), logs where it
// is, serves the admin API with it and reuses it on the next start;
// AIRLOCK_ADMIN_TOKEN still wins. Before, the admin API stayed off.
func TestHygieneServeWithoutConfig(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "data", "admin.token")

	// serve runs `airlock serve` in dir until the admin API answers the CLI
	// with token; it returns serve's log.
	serve := func(env []string, token string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var log bytes.Buffer
		srv := ns.command(ctx, dir, env, airlockBin, "serve")
		srv.Stdout, srv.Stderr = &log, &log
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = srv.Process.Signal(syscall.SIGTERM)
			_ = srv.Wait()
		}()
		var out []byte
		var err error
		for ctx.Err() == nil {
			tok := token
			if tok == "" {
				b, _ := os.ReadFile(tokenFile)
				tok = strings.TrimSpace(string(b))
			}
			if tok != "" {
				out, err = ns.command(ctx, dir, childEnv("AIRLOCK_ADMIN_TOKEN="+tok), airlockBin, "images", "list").CombinedOutput()
				if err == nil {
					return log.String()
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the admin API never answered: %v\n%s\nserve log:\n%s", err, out, log.String())
		return ""
	}

	log := serve(childEnv(), "")
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("no token file: %v\nlog:\n%s", err, log)
	}
	tok := strings.TrimSpace(string(b))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Errorf("token %q is not 32 bytes of hex", tok)
	}
	if fi, _ := os.Stat(tokenFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %04o, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(log, "admin token generated") || !strings.Contains(log, "data/admin.token") {
		t.Errorf("serve did not say where the token is:\n%s", log)
	}
	if strings.Contains(log, tok) {
		t.Error("serve logged the token itself")
	}

	// Restart: the same token.
	log = serve(childEnv(), tok)
	if !strings.Contains(log, "admin token read") {
		t.Errorf("second start:\n%s", log)
	}
	if b, _ := os.ReadFile(tokenFile); strings.TrimSpace(string(b)) != tok {
		t.Error("the token changed on restart")
	}

	// AIRLOCK_ADMIN_TOKEN wins over the file.
	log = serve(childEnv("AIRLOCK_ADMIN_TOKEN=from-the-environment"), "from-the-environment")
	if strings.Contains(log, "admin token") {
		t.Errorf("with AIRLOCK_ADMIN_TOKEN set, serve still used the file:\n%s", log)
	}
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// TestHygieneUnreachableUpstream: a pull through an upstream that refuses
// connections or whose name does not resolve fails at once, with the cause
// in the client's message. Before, the message only said "upstream
// unavailable", as a 503 that clients retry: crane showed it after ~4s.
func TestHygieneUnreachableUpstream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, want string
	}{
		{"connection refused", fmt.Sprintf("http://127.0.0.1:%d", closedPort(t)), "connection refused"},
		{"no such host", "http://registry.airlock-test.invalid:5000", "lookup registry.airlock-test.invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			al := startAirlock(t, nil, options{UpstreamURL: tc.url})
			for _, ref := range []string{"library/x:1", "library/x@sha256:" + strings.Repeat("a", 64)} {
				start := time.Now()
				_, err := remote.Get(al.Ref(t, ref)) // go-containerregistry, as crane and cosign use it
				el := time.Since(start)
				t.Logf("%s: %s: %v", ref, el.Round(time.Millisecond), err)
				if el > 2*time.Second {
					t.Errorf("%s: failed after %s", ref, el)
				}
				if err == nil || !strings.Contains(err.Error(), "upstream unavailable: ") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v, want the cause %q", ref, err, tc.want)
				}
				var terr *transport.Error
				if errors.As(err, &terr) && terr.StatusCode != http.StatusFailedDependency {
					t.Errorf("%s: status %d, want 424", ref, terr.StatusCode)
				}
			}
		})
	}
}

// TestHygieneReadyz: serve opens its listeners at once and answers /readyz
// 503, saying why, until the scanner is built; then 200. Before, the
// listeners opened only after the scanner was built (~1.3-2.3 s).
func TestHygieneReadyz(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	dir := t.TempDir()
	regPort, adminPort := freePort(t), freePort(t)
	cfg := writeConfig(t, dir, up, options{Policy: "scan", DataDir: filepath.Join(dir, "data"), Hold: time.Second}, regPort, adminPort)
	cmd := exec.Command(airlockBin, "serve", "--config", cfg)
	cmd.Env = childEnv()
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	c := &http.Client{Timeout: 2 * time.Second}
	var listened, ready time.Duration
	var notReady []string
	for time.Since(start) < 30*time.Second && ready == 0 {
		if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if listened == 0 {
				listened = time.Since(start)
			}
			switch resp.StatusCode {
			case http.StatusOK:
				ready = time.Since(start)
			case http.StatusServiceUnavailable:
				notReady = append(notReady, string(body))
			default:
				t.Fatalf("/readyz = %d %s", resp.StatusCode, body)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("admin listener after %s, ready after %s, %d answers 503 before", listened, ready, len(notReady))
	if ready == 0 {
		t.Fatalf("never ready; log:\n%s", log.String())
	}
	if len(notReady) == 0 {
		t.Errorf("/readyz never answered 503 before the scanner was built: the listener waited for it (%s)", listened)
	} else if !strings.Contains(notReady[0], "vulnerability scanner") {
		t.Errorf("/readyz 503 does not say why: %s", notReady[0])
	}
	if listened > time.Second {
		t.Errorf("the admin listener opened after %s", listened)
	}
	// The registry API served while the scanner was built.
	if r := doHTTP(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v2/", regPort), nil, nil); r.Status != http.StatusOK {
		t.Errorf("GET /v2/ = %d", r.Status)
	}
}

// TestHygieneExampleConfigStarts: airlock.example.yaml starts as it is
// documented (`airlock serve --config airlock.yaml`), with only the
// addresses and directories moved into the test's own. Before, it failed
// on its signing key and signature trust files, which do not exist.
func TestHygieneExampleConfigStarts(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../airlock.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	regPort, adminPort := freePort(t), freePort(t)
	y := string(b)
	for old, repl := range map[string]string{
		`listen: ":5000"`:               `listen: "127.0.0.1:` + strconv.Itoa(regPort) + `"`,
		`listen: "127.0.0.1:5001"`:      `listen: "127.0.0.1:` + strconv.Itoa(adminPort) + `"`,
		"data_dir: ./data\n":            "data_dir: " + dir + "/data\n",
		"rootdirectory: ./data/content": "rootdirectory: " + dir + "/data/content",
		"db_dir: ./data/vulndb":         "db_dir: " + dir + "/data/vulndb",
	} {
		if !strings.Contains(y, old) {
			t.Fatalf("airlock.example.yaml no longer has %q; update this test", old)
		}
		y = strings.Replace(y, old, repl, 1)
	}
	file := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(airlockBin, "serve", "--config", file)
	// The example leaves admin.token empty and says to set the variable.
	cmd.Env = childEnv("AIRLOCK_ADMIN_TOKEN=" + adminToken)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &Airlock{t: t, URL: fmt.Sprintf("http://127.0.0.1:%d", regPort), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort), cmd: cmd, done: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		close(a.done)
	}()
	defer a.stop(syscall.SIGTERM, 20*time.Second)
	if err := a.waitReady(30 * time.Second); err != nil {
		t.Fatalf("the example config does not start: %v\n%s", err, log.String())
	}
}
