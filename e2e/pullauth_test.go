package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// Pull authentication (registry.auth, package pullauth) with the real
// clients: docker login + pull, podman login + pull, ctr --user, crane,
// and plain HTTP. Named TestClientPullAuth* so that the PostgreSQL + S3
// suite runs them too.

// htpasswdFile writes an htpasswd file of users (name to password) with
// Apache's htpasswd -B (apache2-utils), the tool the README names. A local
// run without the tool falls back to bcrypt; CI must have the tool.
func htpasswdFile(t testing.TB, users map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "htpasswd")
	bin, err := exec.LookPath("htpasswd")
	if err != nil && inCI() {
		t.Fatal("htpasswd (apache2-utils) not installed; run scripts/install-e2e-tools.sh")
	}
	var lines []string
	for u, pw := range users {
		if bin != "" {
			// -n prints the line; -C 5 keeps logins fast on 2 cores.
			out, err := exec.Command(bin, "-nbB", "-C", "5", u, pw).Output()
			if err != nil {
				t.Fatalf("htpasswd -nbB %s: %v", u, err)
			}
			lines = append(lines, strings.TrimSpace(string(out)))
			continue
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), 5)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u+":"+string(h))
	}
	return writeFile(t, p, strings.Join(lines, "\n")+"\n")
}

// authOptions is an airlock with pull authentication against htpasswd.
func authOptions(htpasswd string) options {
	return options{Policy: "manual", NoHold: true, Extra: fmt.Sprintf("registry:\n  auth:\n    htpasswd: %q\n", htpasswd)}
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// pushApproved pushes an image to repo:tag upstream, has a logged-in
// client start its pipeline and approves it; it returns the digest.
func pushApproved(t *testing.T, al *Airlock, up *registrytest.Upstream, repo, tag, user, pass string) v1.Hash {
	t.Helper()
	d := up.PushImage(t, repo+":"+tag, registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
	r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+repo+"/manifests/"+tag, nil,
		map[string]string{"Accept": manifestAccept, "Authorization": basicAuth(user, pass)})
	if r.Status != http.StatusForbidden {
		t.Fatalf("first pull of %s:%s: %d %s, want 403 (quarantine)", repo, tag, r.Status, r.Body)
	}
	image := "docker.io/" + repo + "@" + d.String()
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	al.action(t, "approve", image, "e2e: pull auth")
	return d
}

// pullerToken creates an API token of role puller with the CLI and
// returns its secret.
func pullerToken(t *testing.T, al *Airlock, name string) string {
	t.Helper()
	out, err := al.cli(t, "tokens", "create", "--name", name, "--role", "puller", "--expires", "1d", "--json")
	mustSucceed(t, "airlock tokens create --role puller", out, err)
	var created struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Role != "puller" || !strings.HasPrefix(created.Token, "alk_") {
		t.Fatalf("tokens create: %v %s", err, out)
	}
	return created.Token
}

// TestClientPullAuth: with registry.auth.htpasswd, anonymous requests
// get 401 and a challenge; docker, podman, containerd and crane log in
// with an htpasswd user or a puller token and pull approved images; a
// logged-in client is still refused a quarantined image; a revoked token
// and a logged-out client are refused; a puller token gets 403 on the
// admin API.
func TestClientPullAuth(t *testing.T) {
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, authOptions(htpasswdFile(t, map[string]string{"alice": "alice-pw", "bob": "b0b:with-colon"})))
	app := pushApproved(t, al, up, "library/pa-app", "v1", "alice", "alice-pw")
	image := "docker.io/library/pa-app@" + app.String()
	quarantined := up.PushImage(t, "library/pa-quarantined:v1", registrytest.Image(t, 1, 1024, types.DockerManifestSchema2))
	node1 := pullerToken(t, al, "node1")

	t.Run("anonymous", func(t *testing.T) {
		for _, p := range []string{"/v2/", "/v2/library/pa-app/manifests/v1", "/v2/library/pa-app/manifests/" + app.String(),
			"/v2/library/nothere/manifests/v1", "/v2/library/pa-app/tags/list"} {
			r := doHTTP(t, http.MethodGet, al.URL+p, nil, map[string]string{"Accept": manifestAccept})
			ch := r.Header.Get("WWW-Authenticate")
			errs := registryErrors(r.Body)
			if r.Status != http.StatusUnauthorized || len(errs) != 1 || errs[0].Code != "UNAUTHORIZED" ||
				!strings.HasPrefix(ch, `Bearer realm="http://`+al.Host+`/token",service="airlock"`) {
				t.Errorf("GET %s: %d %s %q, want 401 UNAUTHORIZED with a Bearer challenge", p, r.Status, r.Body, ch)
			}
		}
		r := doHTTP(t, http.MethodGet, al.URL+"/v2/library/pa-app/manifests/v1", nil, nil)
		if ch := r.Header.Get("WWW-Authenticate"); !strings.HasSuffix(ch, `,scope="repository:library/pa-app:pull"`) {
			t.Errorf("challenge %q does not name the repository", ch)
		}
		for what, hdr := range map[string]map[string]string{
			"no credentials": nil,
			"wrong password": {"Authorization": basicAuth("alice", "nope")},
			"unknown user":   {"Authorization": basicAuth("mallory", "alice-pw")},
		} {
			if r := doHTTP(t, http.MethodGet, al.URL+"/token?service=airlock&scope=repository:library/pa-app:pull", nil, hdr); r.Status != http.StatusUnauthorized {
				t.Errorf("/token with %s: %d %s, want 401", what, r.Status, r.Body)
			}
		}
		// The token endpoint answers what docker, containerd and podman read.
		r = doHTTP(t, http.MethodGet, al.URL+"/token?service=airlock&scope=repository:library/pa-app:pull", nil,
			map[string]string{"Authorization": basicAuth("bob", "b0b:with-colon")})
		var tok struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
			IssuedAt    string `json:"issued_at"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &tok) != nil || tok.Token == "" || tok.AccessToken != tok.Token || tok.ExpiresIn != 300 || tok.IssuedAt == "" {
			t.Fatalf("/token: %d %s", r.Status, r.Body)
		}
		if r := al.getManifest(t, "library/pa-app", "v1"); r.Status != http.StatusUnauthorized {
			t.Errorf("no token: %d", r.Status)
		}
		r = doHTTP(t, http.MethodGet, al.URL+"/v2/library/pa-app/manifests/v1", nil, map[string]string{"Accept": manifestAccept, "Authorization": "Bearer " + tok.Token})
		if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != app.String() {
			t.Errorf("with the bearer token: %d %s", r.Status, r.Body)
		}
		// The token covers the repository it was asked for, no other.
		r = doHTTP(t, http.MethodGet, al.URL+"/v2/library/pa-quarantined/manifests/v1", nil, map[string]string{"Accept": manifestAccept, "Authorization": "Bearer " + tok.Token})
		if r.Status != http.StatusUnauthorized {
			t.Errorf("another repository with the token: %d %s", r.Status, r.Body)
		}
	})

	t.Run("crane", func(t *testing.T) {
		crane := requireTool(t, "crane", gopathBin("crane"))
		env := []string{"HOME=" + t.TempDir(), "DOCKER_CONFIG=" + t.TempDir()}
		ref := al.Host + "/library/pa-app:v1"
		out, err := runTool(t, env, crane, "digest", "--insecure", ref)
		mustFail(t, "anonymous crane digest", out, err, "/token", "UNAUTHORIZED")
		out, err = runTool(t, env, crane, "auth", "login", al.Host, "-u", "alice", "-p", "alice-pw")
		mustSucceed(t, "crane auth login", out, err)
		out, err = runTool(t, env, crane, "digest", "--insecure", ref)
		mustSucceed(t, "crane digest after login", out, err)
		if strings.TrimSpace(out) != app.String() {
			t.Errorf("crane digest %q, want %s", out, app)
		}
		out, err = runTool(t, env, crane, "pull", "--insecure", ref, filepath.Join(t.TempDir(), "img.tar"))
		mustSucceed(t, "crane pull after login", out, err)
	})

	t.Run("admin-api", func(t *testing.T) {
		// A puller token only pulls: every admin API route refuses it.
		for _, p := range []string{"/api/v1/images", "/api/v1/audit", "/api/v1/tokens"} {
			r := doHTTP(t, http.MethodGet, al.AdminURL+p, nil, map[string]string{"Authorization": "Bearer " + node1})
			if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "role puller may not") {
				t.Errorf("GET %s as puller: %d %s, want 403", p, r.Status, r.Body)
			}
		}
		r := doHTTP(t, http.MethodPost, al.AdminURL+"/api/v1/approve", strings.NewReader(`{"image":"`+image+`","reason":"x"}`),
			map[string]string{"Authorization": "Bearer " + node1})
		if r.Status != http.StatusForbidden {
			t.Errorf("approve as puller: %d %s, want 403", r.Status, r.Body)
		}
	})

	t.Run("containerd", func(t *testing.T) {
		c := startContainerd(t)
		ref := al.Host + "/library/pa-app:v1"
		pull := func(extra ...string) (string, error) {
			args := append([]string{"--debug", "images", "pull", "--plain-http", "--snapshotter", c.snapshotter}, extra...)
			return c.run(t, "pullauth", append(args, ref)...)
		}
		out, err := pull()
		mustFail(t, "ctr pull without --user", out, err, "401 Unauthorized")
		out, err = pull("--user", "alice:wrong")
		mustFail(t, "ctr pull with a wrong password", out, err, "401 Unauthorized")
		out, err = pull("--user", "alice:alice-pw")
		mustSucceed(t, "ctr pull --user alice", out, err)
		ls, err := c.run(t, "pullauth", "images", "ls")
		mustSucceed(t, "ctr images ls", ls, err)
		if !strings.Contains(ls, app.String()) {
			t.Errorf("ctr images ls does not list %s:\n%s", app, ls)
		}
		out, err = pull("--user", "node1:"+node1)
		mustSucceed(t, "ctr pull --user node1:<puller token>", out, err)
		qref := al.Host + "/library/pa-quarantined:v1"
		out, err = c.run(t, "pullauth", "--debug", "images", "pull", "--plain-http", "--user", "alice:alice-pw", qref)
		mustFail(t, "ctr pull of a quarantined image", out, err, ctrQuarantined...)
	})

	t.Run("podman", func(t *testing.T) {
		requireTool(t, "/usr/bin/podman", "podman")
		p := newPodman(t, fmt.Sprintf("unqualified-search-registries = []\n\n[[registry]]\nlocation = %q\ninsecure = true\n", al.Host))
		ref := al.Host + "/library/pa-app:v1"
		out, err := p.pull(t, ref)
		mustFail(t, "anonymous podman pull", out, err, "unauthorized")
		out, err = p.run(t, "login", "--tls-verify=false", "-u", "alice", "-p", "wrong", al.Host)
		mustFail(t, "podman login with a wrong password", out, err, "invalid username/password")
		out, err = p.run(t, "login", "--tls-verify=false", "-u", "alice", "-p", "alice-pw", al.Host)
		mustSucceed(t, "podman login", out, err)
		out, err = p.pull(t, ref)
		mustSucceed(t, "podman pull after login", out, err)
		out, err = p.run(t, "image", "inspect", "--format", "{{.Digest}}", ref)
		mustSucceed(t, "podman image inspect", out, err)
		if strings.TrimSpace(out) != app.String() {
			t.Errorf("podman has %q, want %s", strings.TrimSpace(out), app)
		}
		out, err = p.pull(t, al.Host+"/library/pa-quarantined:v1")
		mustFail(t, "podman pull of a quarantined image", out, err, "quarantine")
		out, err = p.run(t, "logout", al.Host)
		mustSucceed(t, "podman logout", out, err)
		out, err = p.run(t, "login", "--tls-verify=false", "-u", "node1", "-p", node1, al.Host)
		mustSucceed(t, "podman login with a puller token", out, err)
		out, err = p.pull(t, ref)
		mustSucceed(t, "podman pull with a puller token", out, err)
	})

	// docker last: it revokes node1.
	t.Run("docker", func(t *testing.T) {
		c := startContainerd(t)
		// dockerd treats 127.0.0.0/8 as an insecure registry: plain HTTP.
		d := startDockerd(t, c, `{"debug": true}`)
		ref := al.Host + "/library/pa-app:v1"
		out, err := d.run(t, "pull", ref)
		mustFail(t, "docker pull without login", out, err, "unauthorized")
		out, err = d.run(t, "login", "-u", "alice", "-p", "wrong", al.Host)
		mustFail(t, "docker login with a wrong password", out, err, "invalid credentials")
		out, err = d.run(t, "login", "-u", "alice", "-p", "alice-pw", al.Host)
		mustSucceed(t, "docker login", out, err)
		out, err = d.run(t, "pull", ref)
		mustSucceed(t, "docker pull after login", out, err)
		if !strings.Contains(out, app.String()) {
			t.Errorf("docker pull does not report digest %s", app)
		}
		// Logged in is not approved.
		out, err = d.run(t, "pull", al.Host+"/library/pa-quarantined:v1")
		mustFail(t, "docker pull of a quarantined image", out, err, append([]string{"docker.io/library/pa-quarantined@" + quarantined.String()}, quarantineWords...)...)

		// A puller token as the password; revoked, it is refused.
		out, err = d.run(t, "login", "-u", "node1", "-p", node1, al.Host)
		mustSucceed(t, "docker login with a puller token", out, err)
		other := pushApproved(t, al, up, "library/pa-other", "v1", "node1", node1)
		out, err = d.run(t, "pull", al.Host+"/library/pa-other:v1")
		mustSucceed(t, "docker pull with a puller token", out, err)
		if !strings.Contains(out, other.String()) {
			t.Errorf("docker pull does not report digest %s", other)
		}
		out, err = al.cli(t, "tokens", "revoke", "node1")
		mustSucceed(t, "airlock tokens revoke node1", out, err)
		out, err = d.run(t, "pull", al.Host+"/library/pa-other:v1")
		mustFail(t, "docker pull with a revoked token", out, err, "unauthorized")
		out, err = d.run(t, "login", "-u", "node1", "-p", node1, al.Host)
		mustFail(t, "docker login with a revoked token", out, err, "revoked")
		if r := doHTTP(t, http.MethodGet, al.URL+"/token?service=airlock", nil, map[string]string{"Authorization": basicAuth("node1", node1)}); r.Status != http.StatusUnauthorized {
			t.Errorf("/token with a revoked token: %d %s", r.Status, r.Body)
		}

		// Logged out, docker is anonymous again.
		out, err = d.run(t, "logout", al.Host)
		mustSucceed(t, "docker logout", out, err)
		out, err = d.run(t, "pull", ref)
		mustFail(t, "docker pull after logout", out, err, "unauthorized")
	})

	// Refusals are logged with who tried, never the password.
	log := al.Log()
	if strings.Contains(log, "alice-pw") || strings.Contains(log, node1) {
		t.Errorf("the log shows a secret")
	}
	named := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		for _, who := range []string{"mallory", "alice", "node1"} {
			if strings.Contains(line, "registry login refused") && strings.Contains(line, who) {
				named[who] = true
			}
		}
	}
	if len(named) != 3 {
		t.Errorf("refused logins logged with who tried: %v, want mallory, alice and node1", named)
	}
}

// TestClientPullAuthReplicas: a bearer token one replica issued works on
// another sharing the state database (the signing key lives there), and a
// token revoked through one replica is refused by the other at once.
func TestClientPullAuthReplicas(t *testing.T) {
	up := registrytest.NewUpstream(t)
	file := htpasswdFile(t, map[string]string{"alice": "alice-pw"})
	reps := startReplicas(t, up, 2, nil, authOptions(file))
	a, b := reps[0], reps[1]
	app := pushApproved(t, a, up, "library/pa-ha", "v1", "alice", "alice-pw")
	node1 := pullerToken(t, a, "node1")
	for _, who := range [][2]string{{"alice", "alice-pw"}, {"node1", node1}} {
		r := doHTTP(t, http.MethodGet, a.URL+"/token?service=airlock&scope=repository:library/pa-ha:pull", nil,
			map[string]string{"Authorization": basicAuth(who[0], who[1])})
		var tok struct {
			Token string `json:"token"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &tok) != nil {
			t.Fatalf("/token on replica a as %s: %d %s", who[0], r.Status, r.Body)
		}
		r = doHTTP(t, http.MethodGet, b.URL+"/v2/library/pa-ha/manifests/v1", nil, map[string]string{"Accept": manifestAccept, "Authorization": "Bearer " + tok.Token})
		if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != app.String() {
			t.Errorf("replica a's token for %s on replica b: %d %s", who[0], r.Status, r.Body)
		}
		if who[0] != "node1" {
			continue
		}
		out, err := b.cli(t, "tokens", "revoke", "node1")
		mustSucceed(t, "revoke on replica b", out, err)
		r = doHTTP(t, http.MethodGet, a.URL+"/v2/library/pa-ha/manifests/v1", nil, map[string]string{"Accept": manifestAccept, "Authorization": "Bearer " + tok.Token})
		if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "revoked") {
			t.Errorf("revoked token's bearer token on replica a: %d %s", r.Status, r.Body)
		}
	}
}
