package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/sign"
)

// ---- process probes ----

// readRSS returns the resident set size of pid in bytes (VmRSS).
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// procRSS is readRSS that fails the test on error.
func procRSS(t testing.TB, pid int) int64 {
	t.Helper()
	n, err := readRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// procFDs counts the open file descriptors of pid.
func procFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/fd: %v", pid, err)
	}
	return len(ents)
}

func (a *Airlock) pid() int { return a.cmd.Process.Pid }

// raiseNoFile lifts this process's RLIMIT_NOFILE soft limit to at least n
// (up to the hard limit) and restores it at cleanup.
func raiseNoFile(t testing.TB, n uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if old.Cur >= n {
		return
	}
	lim := old
	lim.Cur = min(n, old.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	if lim.Cur < n {
		t.Skipf("RLIMIT_NOFILE hard limit %d < %d", old.Max, n)
	}
}

// approvedSmall pushes a small image to repo:1 through airlock's gate,
// approves it and returns its image key and first layer digest.
func approvedSmall(t testing.TB, al *Airlock, up *registrytest.Upstream, repo string) (string, string) {
	t.Helper()
	img := registrytest.Image(t, 1, 16<<10, types.DockerManifestSchema2)
	d := up.PushImage(t, repo+":1", img)
	key := "docker.io/" + repo + "@" + d.String()
	_ = al.getManifest(t, repo, "1")
	al.waitState(t, key, stateTimeout, "awaiting-approval")
	al.action(t, "approve", key, "e2e faults")
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	return key, ld.String()
}

// adminState reads image's state from the admin API without failing the
// test (for use off the test goroutine, and while airlock may be killed).
func adminState(c *http.Client, al *Airlock, image string) (string, bool) {
	req, _ := http.NewRequest(http.MethodGet, al.AdminURL+"/api/v1/images/"+image, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	var d imageDetail
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&d) != nil {
		return "", false
	}
	return d.Image.State, true
}

// ---- process faults ----

// TestFaultKillDuringScanAndSign SIGKILLs airlock while it scans a ~50 MB
// image (gate.policy scan, signing enabled), restarts it on the same
// data_dir, and checks that the job resumes by itself and ends approved
// and signed, the audit log shows the interrupted and the resumed scan,
// and nothing of the image is served before it is approved. If the sign
// step is caught in flight as well, airlock is SIGKILLed there too.
func TestFaultKillDuringScanAndSign(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")

	keysDir := filepath.Join(dir, "keys")
	cmd := exec.Command(airlockBin, "keys", "generate", "--dir", keysDir)
	cmd.Env = childEnv("AIRLOCK_KEY_PASSWORD=faults-secret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("airlock keys generate: %v\n%s", err, out)
	}
	pwFile := writeFile(t, filepath.Join(dir, "key-password"), "faults-secret\n")

	dbDir := filepath.Join(dir, "vulndb")
	vulndbtest.Build(t, dbDir, baseVulns...)
	extra := `
scan:
  db_dir: ` + dbDir + `
  max_db_age: 0s
  rescan_interval: 0s
policy:
  fail_on: critical
signing:
  key: ` + filepath.Join(keysDir, "airlock.key") + `
  password_file: ` + pwFile + `
`
	const repo = "faults/slowscan"
	base := registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "musl", Version: "1.2.5-r0"})
	img := registrytest.PaddedImage(t, base, 50<<20)
	d := up.PushImage(t, repo+":1", img)
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	image := "docker.io/" + repo + "@" + d.String()
	opts := options{DataDir: dataDir, Policy: "scan", NoHold: true, Extra: extra}

	// watch polls the manifest and every blob until stop is closed; any
	// 200 while the admin API (asked after the answer) does not report
	// the image approved is content served before approval.
	watch := func(al *Airlock, stop <-chan struct{}) (wait func()) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			paths := []string{"/v2/" + repo + "/manifests/" + d.String(), "/v2/" + repo + "/manifests/1"}
			for _, b := range want.blobs() {
				paths = append(paths, "/v2/"+repo+"/blobs/"+b.String())
			}
			for {
				for _, p := range paths {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest(http.MethodHead, al.URL+p, nil)
					req.Header.Set("Accept", manifestAccept)
					resp, err := c.Do(req)
					if err != nil {
						continue // the process was killed
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						continue
					}
					if st, ok := adminState(c, al, image); ok && st != "approved" {
						t.Errorf("HEAD %s = 200 while the image is %s", p, st)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		return wg.Wait
	}

	al := startAirlock(t, up, opts)
	if r := al.getManifest(t, repo, "1"); r.Status != http.StatusForbidden {
		t.Fatalf("first GET = %d %s, want 403", r.Status, r.Body)
	}
	// Poll fast and SIGKILL the moment the image is scanning: the scan of
	// the padded image takes a few hundred milliseconds.
	pc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, _ := adminState(pc, al, image)
		if st == "scanning" {
			break
		}
		if st != "" && st != "pending" && st != "fetching" && st != "verifying" {
			t.Fatalf("image reached %s before the scan could be interrupted", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("image not scanning after 90s (state %q)", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	al.Kill(t)
	t.Logf("SIGKILLed airlock (pid %d) during the scan step", al.pid())

	al2 := startAirlock(t, up, opts)
	stop := make(chan struct{})
	waitWatch := watch(al2, stop)
	// Try to catch the sign step too: poll fast until the image is signing
	// or done.
	killedInSign := false
	deadline = time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		st, _ := adminState(pc, al2, image)
		if st == "signing" {
			al2.Kill(t)
			killedInSign = true
			break
		}
		if st == "approved" || st == "rejected" || st == "failed" {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	waitWatch()
	final := al2
	if killedInSign {
		t.Logf("SIGKILLed airlock (pid %d) during the sign step too", al2.pid())
		final = startAirlock(t, up, opts)
		stop = make(chan struct{})
		waitWatch = watch(final, stop)
	} else {
		t.Logf("the sign step finished before it could be interrupted (polled every 2ms); SIGKILL during signing not exercised")
	}
	rec := final.waitState(t, image, 120*time.Second, "approved", "rejected", "failed")
	if killedInSign {
		close(stop)
		waitWatch()
	}
	if rec.State != "approved" {
		t.Fatalf("after restart: %s (%s), want approved", rec.State, rec.Reason)
	}
	assertSame(t, "pull after the resumed scan", want, mustPull(t, final.Ref(t, repo+":1")))
	sigTag, _ := sign.SignatureTag(digest.Digest(d.String()))
	if r := final.getManifest(t, repo, sigTag); r.Status != http.StatusOK {
		t.Errorf("airlock signature %s of the approved image = %d", sigTag, r.Status)
	}

	entries := final.audit(t, image)
	slices.Reverse(entries)
	var trail []string
	scans, signs := 0, 0
	for _, e := range entries {
		trail = append(trail, e.Action+":"+e.From+"->"+e.To)
		if e.Action == "step:scan" && e.To == "scanning" {
			scans++
		}
		if e.Action == "step:sign" && e.To == "signing" {
			signs++
		}
	}
	t.Logf("audit trail: %s", strings.Join(trail, " | "))
	// The first run ends (is killed) in the scan step: the entry before the
	// resumed run's fetch is the scan's start.
	for i := 1; i < len(entries); i++ {
		if entries[i].Action == "step:fetch" && entries[i].From != "pending" {
			if prev := entries[i-1]; prev.Action != "step:scan" || prev.To != "scanning" {
				t.Errorf("the kill landed after the scan step (last entry of the killed run: %s %s->%s)", prev.Action, prev.From, prev.To)
			}
			break
		}
	}
	if scans < 2 {
		t.Errorf("audit shows %d scan runs, want the killed one and the resumed one", scans)
	}
	if killedInSign && signs < 2 {
		t.Errorf("audit shows %d sign runs, want the killed one and the resumed one", signs)
	}
	if last := entries[len(entries)-1]; last.To != "approved" {
		t.Errorf("last audit entry %+v, want the approval", last)
	}
}

// walkSize sums the regular files under root.
func walkSize(root string) (files int, size int64) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				files++
				size += fi.Size()
			}
		}
		return nil
	})
	return files, size
}

// TestFaultDiskFull puts the content store on an 8 MiB tmpfs. A 12 MiB
// layer cannot be stored: the image fails with a reason naming the full
// disk, no partial blob is left, approved content keeps being served; once
// the tmpfs is grown, the next pull retries and the image completes.
func TestFaultDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "content")
	if err := os.Mkdir(mnt, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	// Registered before startAirlock: cleanups run last-in first-out, so
	// airlock is stopped before the unmount.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{NoHold: true, Extra: `
storage:
  driver: filesystem
  parameters:
    rootdirectory: ` + mnt + `
`})
	_, smallLayer := approvedSmall(t, al, up, "disk/small")

	const repo = "disk/big"
	img := registrytest.Image(t, 1, 12<<20, types.DockerManifestSchema2)
	d := up.PushImage(t, repo+":1", img)
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	big := want.Layers[0].Digest
	image := "docker.io/" + repo + "@" + d.String()
	if r := al.getManifest(t, repo, "1"); r.Status != http.StatusForbidden {
		t.Fatalf("first GET = %d, want 403", r.Status)
	}
	rec := al.waitState(t, image, 60*time.Second, "failed")
	t.Logf("with the content store full: %s (%s)", rec.State, rec.Reason)
	if !strings.Contains(rec.Reason, "no space left on device") {
		t.Errorf("failure reason %q does not say the disk is full", rec.Reason)
	}
	r := al.getManifest(t, repo, "1")
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "no space left") {
		t.Errorf("DENIED while the disk is full = %d %s, want 403 naming the full disk", r.Status, r.Body)
	}
	if fileExists(filepath.Join(mnt, "blobs", big.Algorithm, big.Hex[:2], big.Hex, "data")) {
		t.Errorf("a partial %s reached its final path", big)
	}
	// Approved content is still served while the disk is full.
	if r := al.getBlob(t, "disk/small", smallLayer); r.Status != http.StatusOK {
		t.Errorf("approved blob while the disk is full = %d", r.Status)
	}
	assertBlobRefused(t, al, repo, big)
	// The job's retries settle; no partial upload is left holding the space.
	waitFor(t, 30*time.Second, "partial uploads to be removed", func() bool {
		_, size := walkSize(filepath.Join(mnt, "uploads"))
		return size == 0
	})
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err == nil {
		t.Logf("tmpfs free after the failure: %d KiB", int64(st.Bavail)*st.Bsize>>10)
	}

	// Free space: grow the tmpfs. The next pull queues the image again.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v %s", err, out)
	}
	waitFor(t, 60*time.Second, "the image to leave the pipeline after space was freed", func() bool {
		_ = al.getManifest(t, repo, "1")
		rec, _ := al.image(t, image)
		return rec.Image.State == "awaiting-approval"
	})
	al.action(t, "approve", image, "e2e: disk grown")
	assertSame(t, "pull after space was freed", want, mustPull(t, al.Ref(t, repo+":1")))
}

// ---- hostile clients against the real binary ----

// TestFaultSlowloris opens connections to the registry and admin APIs that
// send one header line every 500ms and never finish: airlock closes each
// within ReadHeaderTimeout (10s) plus slack, without an answer, while
// other clients are served. A header block over MaxHeaderBytes (64 KiB)
// gets 431.
func TestFaultSlowloris(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})

	type result struct {
		target  string
		elapsed time.Duration
		read    string
		err     error
	}
	results := make(chan result, 2)
	for _, target := range []string{al.Host, strings.TrimPrefix(al.AdminURL, "http://")} {
		go func() {
			conn, err := net.Dial("tcp", target)
			if err != nil {
				results <- result{target: target, err: err}
				return
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, "GET /v2/ HTTP/1.1\r\nHost: slow\r\n"); err != nil {
				results <- result{target: target, err: err}
				return
			}
			done := make(chan struct{})
			go func() {
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					case <-time.After(500 * time.Millisecond):
					}
					if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
						return
					}
				}
			}()
			_ = conn.SetReadDeadline(time.Now().Add(25 * time.Second))
			b, err := io.ReadAll(conn)
			close(done)
			results <- result{target: target, elapsed: time.Since(start), read: string(b), err: err}
		}()
	}
	// Meanwhile a normal client is served at once.
	time.Sleep(2 * time.Second)
	start := time.Now()
	if r := doHTTP(t, http.MethodGet, al.URL+"/v2/", nil, nil); r.Status != 200 || time.Since(start) > 2*time.Second {
		t.Errorf("normal request during slowloris: %d in %s", r.Status, time.Since(start))
	}
	for i := 0; i < 2; i++ {
		res := <-results
		var ne net.Error
		switch {
		case errors.As(res.err, &ne) && ne.Timeout():
			t.Errorf("%s: a slowloris connection was still open after %s", res.target, res.elapsed)
		case res.elapsed < 9*time.Second || res.elapsed > 15*time.Second:
			t.Errorf("%s: slowloris connection closed after %s (err %v), want ~10s (ReadHeaderTimeout)", res.target, res.elapsed, res.err)
		case strings.HasPrefix(res.read, "HTTP/1.1 2"):
			t.Errorf("%s: a never-finished request was answered: %.100q", res.target, res.read)
		default:
			t.Logf("%s: slowloris connection closed after %s (answer %.60q, err %v)", res.target, res.elapsed.Round(time.Millisecond), res.read, res.err)
		}
	}

	// Headers over MaxHeaderBytes are refused with 431.
	req, _ := http.NewRequest(http.MethodGet, al.URL+"/v2/", nil)
	req.Header.Set("X-Big", strings.Repeat("b", 100<<10))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("oversized header: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header = %d, want 431", resp.StatusCode)
	}
}

// openIdle dials n connections to host. The first `requests` of them send
// one complete request and read its answer (keep-alive idle afterwards);
// the rest send nothing. It returns the connections.
func openIdle(t testing.TB, host string, n, requests int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 5 * time.Second}
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", host)
		if err != nil {
			t.Fatalf("dial %d of %d: %v", i, n, err)
		}
		conns = append(conns, c)
		if i < requests {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: idle\r\n\r\n"); err != nil {
				t.Fatalf("request on connection %d: %v", i, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("answer on connection %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			_ = c.SetDeadline(time.Time{})
		}
	}
	return conns
}

// TestFaultIdleConnections holds 10,000 connections open against airlock
// (half idle after a request, half that never send a byte), with
// limits.max_connections raised above that: new clients keep getting
// answers, airlock's RSS stays bounded per connection (~13 KiB measured),
// and it holds one descriptor per connection.
func TestFaultIdleConnections(t *testing.T) {
	t.Parallel()
	// 10k connections, as issue 6 asks: the test process and airlock each
	// hold one end, so each needs n descriptors plus its own.
	const n = 10000
	raiseNoFile(t, n+2000)
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{NoHold: true, Extra: fmt.Sprintf("limits:\n  max_connections: %d\n", n+1000)})
	_, layer := approvedSmall(t, al, up, "idle/app")
	rss0, fd0 := procRSS(t, al.pid()), procFDs(t, al.pid())

	start := time.Now()
	conns := openIdle(t, al.Host, n, n/2)
	t.Logf("opened %d connections in %s", len(conns), time.Since(start).Round(time.Millisecond))

	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		s := time.Now()
		for _, p := range []string{"/v2/", "/v2/idle/app/blobs/" + layer} {
			resp, err := fresh.Get(al.URL + p)
			if err != nil {
				t.Fatalf("new client with %d connections held: %v", n, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET %s with %d connections held = %d", p, n, resp.StatusCode)
			}
		}
		slowest = max(slowest, time.Since(s))
	}
	rss1, fd1 := procRSS(t, al.pid()), procFDs(t, al.pid())
	t.Logf("airlock with %d connections held: RSS %d -> %d MiB, fds %d -> %d, slowest new request pair %s",
		n, rss0>>20, rss1>>20, fd0, fd1, slowest.Round(time.Millisecond))
	if fd1-fd0 < n*9/10 {
		t.Errorf("airlock holds %d more descriptors, want ~%d (were the connections accepted?)", fd1-fd0, n)
	}
	// An idle connection costs a goroutine and its buffers: bounded per
	// connection, not by traffic.
	if rss1-rss0 > n*40<<10 {
		t.Errorf("RSS grew by %d MiB for %d idle connections", (rss1-rss0)>>20, n)
	}
	if slowest > 2*time.Second {
		t.Errorf("a new client waited %s", slowest)
	}
	if al.exited() {
		t.Fatal("airlock exited")
	}
}

// TestFaultConnectionLimit sets limits.max_connections to 64 and opens 100
// connections that never send a byte: airlock holds at most 64 of them
// (the rest wait in the kernel's accept queue), stays up, and a new client
// queued behind them is answered once ReadHeaderTimeout (10s) has closed
// the first 64 silent ones. (Each further batch of 64 silent connections
// ahead of a client delays it by another ReadHeaderTimeout: 300 silent
// connections delayed a new client by ~40s.)
func TestFaultConnectionLimit(t *testing.T) {
	t.Parallel()
	const limit, n = 64, 100
	raiseNoFile(t, 3*n)
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Extra: fmt.Sprintf("limits:\n  max_connections: %d\n", limit)})
	fd0 := procFDs(t, al.pid())
	conns := openIdle(t, al.Host, n, 0)
	time.Sleep(500 * time.Millisecond)
	held := procFDs(t, al.pid()) - fd0
	t.Logf("%d silent connections dialed; airlock holds %d more descriptors (limit %d)", len(conns), held, limit)
	if held > limit+4 {
		t.Errorf("airlock holds %d connections, over limits.max_connections %d", held, limit)
	}
	var answered atomic.Bool
	start := time.Now()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(al.URL + "/v2/")
	if err != nil {
		t.Fatalf("new client behind %d silent connections: %v after %s", n, err, time.Since(start))
	}
	resp.Body.Close()
	answered.Store(resp.StatusCode == 200)
	el := time.Since(start)
	t.Logf("new client behind %d silent connections answered %d after %s", n, resp.StatusCode, el.Round(time.Millisecond))
	if !answered.Load() {
		t.Errorf("new client got %d", resp.StatusCode)
	}
	if el > 16*time.Second {
		t.Errorf("new client behind one batch of silent connections waited %s, want about ReadHeaderTimeout (10s)", el)
	}
	if held := procFDs(t, al.pid()) - fd0; held > limit+4 {
		t.Errorf("airlock holds %d connections after the wait, over the limit %d", held, limit)
	}
	// The admin API is not behind the registry's limit.
	start = time.Now()
	if r := doHTTP(t, http.MethodGet, al.AdminURL+"/readyz", nil, nil); r.Status != 200 || time.Since(start) > 2*time.Second {
		t.Errorf("admin /readyz while the registry is saturated: %d after %s", r.Status, time.Since(start))
	}
}
