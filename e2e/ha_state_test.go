package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/content/s3test"
)

// runCLI runs the airlock binary with args and returns its stdout and stderr.
func runCLI(t *testing.T, stdin []byte, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, airlockBin, args...)
	cmd.Env = childEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errb.String(), err
}

var countLine = regexp.MustCompile(`(?m)^(?:copied|imported) (\S+)\s+(\d+)\s+now in destination: (\d+)$`)

// counts parses `airlock state migrate --to` / `import` output: bucket ->
// [copied, in destination].
func counts(t *testing.T, out string) map[string][2]int {
	t.Helper()
	m := map[string][2]int{}
	for _, g := range countLine.FindAllStringSubmatch(out, -1) {
		a, _ := strconv.Atoi(g[2])
		b, _ := strconv.Atoi(g[3])
		m[g[1]] = [2]int{a, b}
	}
	if len(m) == 0 {
		t.Fatalf("no counts in output:\n%s", out)
	}
	return m
}

// TestStateMigrateToPostgres: a bbolt state with approved, revoked and
// quarantined images, tags, jobs and audit moves to PostgreSQL with
// `airlock state migrate --to`, twice (idempotent, counts that match), and
// airlock on PostgreSQL then serves and refuses exactly as before. Export
// and import move it once more, into another database.
func TestStateMigrateToPostgres(t *testing.T) {
	skipOnHA(t, "starts from a bbolt state")
	pg := pgtest.Shared(t)
	up := registrytest.NewUpstream(t)
	dataDir := t.TempDir()
	al := startAirlock(t, up, options{DataDir: dataDir})
	var refs []string
	for i, tag := range []string{"approved", "revoked", "waiting"} {
		repo := "library/move" + strconv.Itoa(i)
		d := up.PushImage(t, repo+":"+tag, registrytest.Image(t, 2, 4096, types.OCIManifestSchema1))
		refs = append(refs, repo+"@"+d.String())
		if _, err := pull(al.Ref(t, repo+":"+tag)); err == nil {
			t.Fatal("served before approval")
		}
		al.waitState(t, "docker.io/"+refs[i], stateTimeout, "awaiting-approval")
	}
	al.action(t, "approve", "docker.io/"+refs[0], "e2e")
	al.action(t, "approve", "docker.io/"+refs[1], "e2e")
	al.action(t, "revoke", "docker.io/"+refs[1], "e2e")
	want := mustPull(t, al.Ref(t, refs[0]))
	auditBefore := len(al.audit(t, ""))
	al.Stop(t)

	dsn := pg.NewDatabase(t)
	var first map[string][2]int
	for round := range 2 {
		out, errOut, err := runCLI(t, nil, "state", "migrate", "--config", al.Config, "--to", dsn)
		if err != nil {
			t.Fatalf("state migrate --to (round %d): %v\n%s%s", round, err, out, errOut)
		}
		if strings.Contains(out+errOut, "airlock@127.0.0.1") {
			t.Errorf("the DSN was printed:\n%s%s", out, errOut)
		}
		c := counts(t, out)
		for b, n := range c {
			if n[0] != n[1] {
				t.Errorf("round %d: bucket %s: copied %d, destination holds %d", round, b, n[0], n[1])
			}
		}
		if c["images"][0] != 3 || c["audit"][0] < 8 || c["tags"][0] != 3 {
			t.Errorf("round %d: counts %v: want 3 images, 3 tags, the audit log", round, c)
		}
		if round == 1 && !mapsEqual(first, c) {
			t.Errorf("second migration changed the counts: %v, then %v", first, c)
		}
		first = c
	}

	pgState := "state:\n  driver: postgres\n  dsn: \"" + dsn + "\"\n"
	al2 := startAirlock(t, up, options{DataDir: dataDir, Extra: pgState})
	assertSame(t, "approved image after the move", want, mustPull(t, al2.Ref(t, refs[0])))
	for _, r := range refs[1:] {
		if _, err := pull(al2.Ref(t, r)); err == nil {
			t.Errorf("%s is served after the move", r)
		}
	}
	if got := len(al2.audit(t, "")); got < auditBefore {
		t.Errorf("audit after the move has %d entries, before %d", got, auditBefore)
	}
	out, _, err := runCLI(t, nil, "state", "migrate", "--config", al2.Config, "--dry-run")
	if err != nil || !strings.Contains(out, "schema up to date") {
		t.Errorf("state migrate --dry-run = %v:\n%s", err, out)
	}
	al2.Stop(t)

	// Export, then import into a new database: the same counts.
	dump, errOut, err := runCLI(t, nil, "state", "export", "--config", al2.Config)
	if err != nil {
		t.Fatalf("state export: %v\n%s", err, errOut)
	}
	dsn2 := pg.NewDatabase(t)
	cfg2 := filepath.Join(t.TempDir(), "import.yaml")
	if err := os.WriteFile(cfg2, []byte("data_dir: "+t.TempDir()+"\nstate:\n  driver: postgres\n  dsn: \""+dsn2+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = runCLI(t, []byte(dump), "state", "import", "--config", cfg2)
	if err != nil {
		t.Fatalf("state import: %v\n%s%s", err, out, errOut)
	}
	for b, n := range counts(t, out) {
		if n[0] != first[b][0] || n[1] != first[b][0] {
			t.Errorf("import: bucket %s: %d read, %d in destination; the bbolt state had %d", b, n[0], n[1], first[b][0])
		}
	}
	// Garbage is refused with the line it is on, and nothing half-done is claimed.
	if _, errOut, err := runCLI(t, []byte("{\"b\":\"images\"}\nnot json\n"), "state", "import", "--config", cfg2); err == nil || !strings.Contains(errOut, "line 1") {
		t.Errorf("import of garbage = %v: %s", err, errOut)
	}
}

func mapsEqual(a, b map[string][2]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestS3Redirect: with storage.redirect, an approved blob's GET answers
// 307 to a presigned S3 URL that serves exactly its bytes and expires
// after redirect_ttl; HEAD is answered directly; quarantined and revoked
// blobs get no URL; a real client pull follows the redirects.
func TestS3Redirect(t *testing.T) {
	skipOnHA(t, "configures its own storage")
	srv := s3test.Start(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Extra: s3StorageYAML(srv, false) + "  redirect: true\n  redirect_ttl: 2s\n"})
	const repo = "library/redirected"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 256<<10, types.OCIManifestSchema1))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	image := "docker.io/" + repo + "@" + d.String()
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(method, u string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, u, nil)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp, b.Bytes()
	}
	layer := want.Layers[0]
	blobURL := al.URL + "/v2/" + repo + "/blobs/" + layer.Digest.String()

	if _, err := pull(al.Ref(t, repo+"@"+d.String())); err == nil {
		t.Fatal("served before approval")
	}
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	if resp, _ := get(http.MethodGet, blobURL); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Fatalf("quarantined blob: %d, Location %q; want 403 and no URL", resp.StatusCode, resp.Header.Get("Location"))
	}
	al.action(t, "approve", image, "e2e")

	resp, _ := get(http.MethodGet, blobURL)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, srv.Endpoint) || !strings.Contains(loc, "X-Amz-Signature") {
		t.Fatalf("approved blob GET: %d, Location %q; want 307 to a presigned %s URL", resp.StatusCode, loc, srv.Endpoint)
	}
	if r, body := get(http.MethodGet, loc); r.StatusCode != http.StatusOK || !bytes.Equal(body, layer.Data) {
		t.Fatalf("presigned URL: %d, %d bytes; want 200 and the layer's %d bytes", r.StatusCode, len(body), len(layer.Data))
	}
	if r, _ := get(http.MethodHead, blobURL); r.StatusCode != http.StatusOK || r.Header.Get("Location") != "" {
		t.Errorf("HEAD of an approved blob: %d, Location %q; want 200 without a redirect", r.StatusCode, r.Header.Get("Location"))
	}
	assertSame(t, "pull following redirects", want, mustPull(t, al.Ref(t, repo+"@"+d.String())))

	// The URL dies with its ttl; a revoke hands out no new one.
	time.Sleep(3 * time.Second)
	if r, _ := get(http.MethodGet, loc); r.StatusCode/100 == 2 {
		t.Errorf("presigned URL still works after its 2s ttl: %d", r.StatusCode)
	}
	al.action(t, "revoke", image, "e2e")
	if r, _ := get(http.MethodGet, blobURL); r.StatusCode != http.StatusForbidden || r.Header.Get("Location") != "" {
		t.Errorf("revoked blob: %d, Location %q; want 403 and no URL", r.StatusCode, r.Header.Get("Location"))
	}
}
