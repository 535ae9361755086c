package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// airlockBin is the path of the airlock binary TestMain builds.
var airlockBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "airlock-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	airlockBin = filepath.Join(dir, "airlock")
	goTool := "go"
	if gr := os.Getenv("GOROOT"); gr != "" {
		if p := filepath.Join(gr, "bin", "go"); fileExists(p) {
			goTool = p
		}
	}
	// No -trimpath: the build shares the cache of `go build ./...` and `go test`.
	start := time.Now()
	cmd := exec.Command(goTool, "build", "-o", airlockBin, "github.com/airlockproxy/airlock/cmd/airlock")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the airlock binary failed:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", airlockBin, time.Since(start).Round(time.Millisecond))
	}
	code := m.Run()
	stopSharedServers()
	removeGoTools()
	return code
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// options configures one airlock instance.
type options struct {
	// DataDir reuses a data directory (restart); empty means a new t.TempDir.
	DataDir string
	// Policy is gate.policy; empty means the default ("manual").
	Policy string
	// Hold is gate.hold; zero means 500ms (use NoHold for 0s).
	Hold time.Duration
	// NoHold sets gate.hold to 0s.
	NoHold bool
	// TagMode is gate.tag_mode; empty means the default ("last-approved").
	TagMode string
	// Extra is YAML appended to the config (e.g. scan: and policy: sections).
	Extra string
	// UpstreamURL replaces the registrytest upstream's URL (which may then be nil).
	UpstreamURL string
	// TagTTL is gate.tag_ttl; zero means 0s (every tag pull resolves upstream).
	TagTTL time.Duration
	// LogLevel is log.level; empty means info.
	LogLevel string
	// Edit, if set, rewrites the written config, for keys the options do
	// not cover; an edit that changes nothing fails the test.
	Edit func(cfg string) string
	// Shared, if set, runs this airlock on a shared PostgreSQL state and S3
	// content store (a replica). With AIRLOCK_E2E_BACKEND=ha every airlock
	// gets one, per data directory, so the whole suite runs on that backend.
	Shared *sharedBackend
	// Env is more environment for the airlock process.
	Env []string
	// TLS and AdminTLS serve the registry and the admin API over TLS
	// (tls_test.go); the harness then calls them on https:// with the
	// CA and client certificate they name.
	TLS, AdminTLS *listenerTLS
}

const adminToken = "e2e-admin-token-3f1c9a"

// Airlock is one running airlock subprocess.
type Airlock struct {
	t        testing.TB
	Host     string // registry API host:port
	URL      string // registry API base URL
	AdminURL string
	DataDir  string
	Config   string // path of the YAML config
	LogPath  string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	// regHTTP and adminHTTP call the two APIs (httpClient, or with TLS
	// the CA and client certificate of options.TLS and AdminTLS).
	regHTTP, adminHTTP *http.Client
	adminTLS           *listenerTLS
}

// freePort returns a 127.0.0.1 port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeConfig writes an airlock.yaml for upstream up and returns its path.
func writeConfig(t testing.TB, dir string, up *registrytest.Upstream, o options, regPort, adminPort int) string {
	t.Helper()
	upURL := o.UpstreamURL
	if upURL == "" {
		upURL = up.URL()
	}
	logLevel := o.LogLevel
	if logLevel == "" {
		logLevel = "info"
	}
	policy := o.Policy
	if policy == "" {
		policy = "manual"
	}
	tagMode := o.TagMode
	if tagMode == "" {
		tagMode = "last-approved"
	}
	hold := o.Hold
	if hold == 0 {
		hold = 500 * time.Millisecond
	}
	if o.NoHold {
		hold = 0
	}
	cfg := fmt.Sprintf(`# written by the e2e tests
listen: 127.0.0.1:%d
data_dir: %q
admin:
  listen: 127.0.0.1:%d
  token: %q
%supstreams:
  - name: docker.io
    url: %q
    default: true
    insecure: true
  - name: ghcr.io
    alias: ghcr
    url: %q
    insecure: true
    allow: ["team/*"]
gate:
  policy: %s
  hold: %s
  tag_mode: %s
  tag_ttl: %s
  workers: 4
  lease: 3s
  retry:
    max_attempts: 8
    backoff: 200ms
    max_backoff: 2s
log:
  format: json
  level: %s
`, regPort, o.DataDir, adminPort, adminToken, o.AdminTLS.yaml("  "), upURL, upURL, policy, hold, tagMode, o.TagTTL, logLevel) + o.Shared.yaml() + o.TLS.yaml("") + o.Extra
	p := filepath.Join(dir, fmt.Sprintf("airlock-%d.yaml", regPort))
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// childEnv is the environment of airlock subprocesses: the test's own,
// without AIRLOCK_* variables that would override the config.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AIRLOCK_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startAirlock runs `airlock serve --config FILE` against up and waits
// until both its registry and admin listeners are ready. The process is
// stopped (SIGTERM, then SIGKILL) and reaped at cleanup, and its log is
// printed if the test failed.
func startAirlock(t testing.TB, up *registrytest.Upstream, o options) *Airlock {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Shared == nil && haSuite() {
		o.Shared = backendFor(t, o.DataDir)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		a, err := tryStart(t, up, o)
		if err == nil {
			return a
		}
		lastErr = err
		// A port picked as free may have been taken meanwhile: retry with new ones.
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start airlock: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, up *registrytest.Upstream, o options) (*Airlock, error) {
	t.Helper()
	dir := t.TempDir()
	regPort, adminPort := freePort(t), freePort(t)
	for adminPort == regPort {
		adminPort = freePort(t)
	}
	a := &Airlock{
		t:        t,
		Host:     fmt.Sprintf("127.0.0.1:%d", regPort),
		URL:      o.TLS.scheme() + fmt.Sprintf("://127.0.0.1:%d", regPort),
		AdminURL: o.AdminTLS.scheme() + fmt.Sprintf("://127.0.0.1:%d", adminPort),
		DataDir:  o.DataDir,
		Config:   writeConfig(t, dir, up, o, regPort, adminPort),
		LogPath:  filepath.Join(dir, "airlock.log"),
		done:     make(chan struct{}),
	}
	a.regHTTP, a.adminHTTP, a.adminTLS = o.TLS.httpClient(t), o.AdminTLS.httpClient(t), o.AdminTLS
	if o.Edit != nil {
		b, err := os.ReadFile(a.Config)
		if err != nil {
			return nil, err
		}
		cfg := o.Edit(string(b))
		if cfg == string(b) {
			t.Fatal("the config edit changed nothing")
		}
		if err := os.WriteFile(a.Config, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(a.LogPath)
	if err != nil {
		return nil, err
	}
	a.cmd = exec.Command(airlockBin, "serve", "--config", a.Config)
	a.cmd.Env = childEnv(append(o.Shared.env(), o.Env...)...)
	// The child writes straight into the file (no pipe goroutine), so
	// whatever it logged before answering a request is readable after.
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close()
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		a.stop(syscall.SIGTERM, 20*time.Second)
		if t.Failed() {
			t.Logf("airlock (pid %d, %s) log tail:\n%s", a.cmd.Process.Pid, a.Host, a.logTail(80))
		}
	})
	if err := a.waitReady(20 * time.Second); err != nil {
		a.stop(syscall.SIGKILL, 10*time.Second)
		return nil, fmt.Errorf("%w; log:\n%s", err, a.logTail(40))
	}
	t.Logf("airlock pid %d ready: registry %s, admin %s, data_dir %s", a.cmd.Process.Pid, a.URL, a.AdminURL, a.DataDir)
	return a, nil
}

func (a *Airlock) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	get := func(u string) int {
		// The clients are nil on an Airlock a test started by hand:
		// plain HTTP then.
		c := &http.Client{Timeout: 2 * time.Second}
		if hc := a.regHTTP; strings.HasPrefix(u, a.AdminURL) {
			if a.adminHTTP != nil {
				c.Transport = a.adminHTTP.Transport
			}
		} else if hc != nil {
			c.Transport = hc.Transport
		}
		resp, err := c.Get(u)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			return fmt.Errorf("airlock exited before it was ready: %v", a.waitErr)
		default:
		}
		// 401: pull authentication is on (registry.auth); the API answers.
		if reg := get(a.URL + "/v2/"); (reg == http.StatusOK || reg == http.StatusUnauthorized) && get(a.AdminURL+"/readyz") == http.StatusOK {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("airlock not ready after %s", timeout)
}

// exited reports whether the process has been reaped.
func (a *Airlock) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process (by PID) unless it has exited, waits up to
// timeout for it to exit, then kills it. It always reaps the process.
func (a *Airlock) stop(sig syscall.Signal, timeout time.Duration) {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
		return
	case <-time.After(timeout):
		a.t.Errorf("airlock pid %d did not exit %s after %v; killing it", a.cmd.Process.Pid, timeout, sig)
	}
	_ = a.cmd.Process.Kill()
	<-a.done
}

// Stop shuts airlock down with SIGTERM and checks that it exited cleanly.
func (a *Airlock) Stop(t testing.TB) {
	t.Helper()
	a.stop(syscall.SIGTERM, 20*time.Second)
	if a.waitErr != nil {
		t.Errorf("airlock exited with %v after SIGTERM", a.waitErr)
	}
}

// Kill SIGKILLs airlock and reaps it.
func (a *Airlock) Kill(t testing.TB) {
	t.Helper()
	a.stop(syscall.SIGKILL, 10*time.Second)
}

// Log returns everything airlock has logged so far.
func (a *Airlock) Log() string {
	b, _ := os.ReadFile(a.LogPath)
	return string(b)
}

func (a *Airlock) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(a.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines skipped)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// Ref parses s ("repo:tag", "repo@sha256:...", "ghcr/team/x:tag") as a
// reference on airlock's registry API.
func (a *Airlock) Ref(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(a.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatalf("parse reference %q: %v", s, err)
	}
	return ref
}

// ---- registry API over plain HTTP ----

var httpClient = &http.Client{Timeout: 30 * time.Second}

// httpResult is a finished HTTP exchange.
type httpResult struct {
	Status int
	Header http.Header
	Body   []byte
}

func doHTTP(t testing.TB, method, u string, body io.Reader, hdr map[string]string) httpResult {
	t.Helper()
	return doHTTPWith(t, httpClient, method, u, body, hdr)
}

// doHTTPWith is doHTTP with client c (one that trusts an airlock's CA).
func doHTTPWith(t testing.TB, c *http.Client, method, u string, body io.Reader, hdr map[string]string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return httpResult{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// registryErrors decodes a distribution-spec error body.
func registryErrors(b []byte) []struct{ Code, Message string } {
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	_ = json.Unmarshal(b, &e)
	return e.Errors
}

// manifestAccept is what a multi-format client sends.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// getManifest GETs /v2/<repo>/manifests/<reference> from airlock.
func (a *Airlock) getManifest(t testing.TB, repo, reference string) httpResult {
	t.Helper()
	return doHTTPWith(t, a.regHTTP, http.MethodGet, a.URL+"/v2/"+repo+"/manifests/"+reference, nil, map[string]string{"Accept": manifestAccept})
}

// getBlob GETs /v2/<repo>/blobs/<digest> from airlock.
func (a *Airlock) getBlob(t testing.TB, repo, dgst string) httpResult {
	t.Helper()
	return doHTTPWith(t, a.regHTTP, http.MethodGet, a.URL+"/v2/"+repo+"/blobs/"+dgst, nil, nil)
}

// ---- admin API ----

// imageRecord is the part of an admin API image record the tests read.
// It is declared here, not borrowed from storage/state, so that the tests
// pin the API's JSON field names.
type imageRecord struct {
	Upstream   string   `json:"upstream"`
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	State      string   `json:"state"`
	Reason     string   `json:"reason"`
	MediaType  string   `json:"media_type"`
	Manifests  []string `json:"manifests"`
	Blobs      []string `json:"blobs"`
	Tags       []string `json:"tags"`
	ApprovedBy string   `json:"approved_by"`
}

type auditEntry struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Image  string    `json:"image"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Action string    `json:"action"`
	Reason string    `json:"reason"`
}

type imageDetail struct {
	Image imageRecord  `json:"image"`
	Audit []auditEntry `json:"audit"`
}

// admin calls the admin API with the right token; body, if not nil, is
// sent as JSON.
func (a *Airlock) admin(t testing.TB, method, path string, body any) httpResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	return doHTTPWith(t, a.adminHTTP, method, a.AdminURL+path, rd, map[string]string{
		"Authorization": "Bearer " + adminToken,
		"Content-Type":  "application/json",
	})
}

// image returns the admin API's record of image ("<upstream>/<repo>@<digest>")
// and the HTTP status.
func (a *Airlock) image(t testing.TB, image string) (imageDetail, int) {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/images/"+image, nil)
	var d imageDetail
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatalf("decode image %s: %v\n%s", image, err, r.Body)
		}
	}
	return d, r.Status
}

// images lists images in state st via the admin API.
func (a *Airlock) images(t testing.TB, st string) []imageRecord {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/images?state="+url.QueryEscape(st), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list images state=%s: %d %s", st, r.Status, r.Body)
	}
	var out struct {
		Images []imageRecord `json:"images"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode image list: %v\n%s", err, r.Body)
	}
	return out.Images
}

// audit reads the audit log of image, newest first.
func (a *Airlock) audit(t testing.TB, image string) []auditEntry {
	t.Helper()
	r := a.admin(t, http.MethodGet, "/api/v1/audit?limit=0&image="+url.QueryEscape(image), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("audit %s: %d %s", image, r.Status, r.Body)
	}
	var out struct {
		Entries []auditEntry `json:"entries"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode audit: %v\n%s", err, r.Body)
	}
	return out.Entries
}

// action POSTs /api/v1/<verb> for image and fails the test unless it
// answers 200; it returns the new record.
func (a *Airlock) action(t testing.TB, verb, image, reason string) imageRecord {
	t.Helper()
	r := a.admin(t, http.MethodPost, "/api/v1/"+verb, map[string]string{"image": image, "reason": reason})
	if r.Status != http.StatusOK {
		t.Fatalf("%s %s: %d %s", verb, image, r.Status, r.Body)
	}
	var img imageRecord
	if err := json.Unmarshal(r.Body, &img); err != nil {
		t.Fatalf("decode %s answer: %v\n%s", verb, err, r.Body)
	}
	return img
}

// waitState polls the admin API until image is in one of states.
func (a *Airlock) waitState(t testing.TB, image string, timeout time.Duration, states ...string) imageRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, lastStatus := imageDetail{}, 0
	for {
		d, status := a.image(t, image)
		if status == http.StatusOK && slices.Contains(states, d.Image.State) {
			return d.Image
		}
		last, lastStatus = d, status
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in %v after %s; last answer %d, state %q (%s)", image, states, timeout, lastStatus, last.Image.State, last.Image.Reason)
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// cli runs the airlock binary as an admin client against a.
func (a *Airlock) cli(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, airlockBin, args...)
	cmd.Env = childEnv(append(a.adminTLS.cliEnv(), "AIRLOCK_ADMIN_URL="+a.AdminURL, "AIRLOCK_ADMIN_TOKEN="+adminToken)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitFor polls cond until it is true or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isExitError reports whether err is a non-zero exit of a process that ran.
func isExitError(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() > 0
}
