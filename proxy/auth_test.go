package proxy_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/proxy"
	"github.com/airlockproxy/airlock/pullauth"
)

// authStack is the stack's registry API once more, with pull
// authentication on (user alice, password "alice-pw").
func authStack(t *testing.T, s *stack) *httptest.Server {
	t.Helper()
	file := htpasswdFile(t, "alice", "alice-pw", bcrypt.MinCost)
	pa, err := pullauth.New(config.RegistryAuth{Htpasswd: file}, s.store, pullauth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(proxy.New(s.cfg, s.store, s.content, s.engine, s.ups, proxy.WithAuth(pa)).Handler())
	t.Cleanup(srv.Close)
	return srv
}

// htpasswdFile writes an htpasswd file with user's bcrypt entry of pass.
func htpasswdFile(tb testing.TB, user, pass string, cost int) string {
	tb.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), cost)
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte(user+":"+string(h)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return file
}

// TestPullAuth: without credentials every registry API request is 401
// with the same answer, whatever it names (approved, unknown, not
// allowed, malformed), and starts nothing; a real registry client
// (go-containerregistry's token flow) pulls an approved image with
// credentials and is still refused a quarantined one.
func TestPullAuth(t *testing.T) {
	s := newStack(t, nil)
	img := registrytest.Image(t, 1, 1024, types.OCIManifestSchema1)
	d := s.up.PushImage(t, "library/app:1", img)
	s.pullAndApprove(t, "library/app", "1", d)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	s.up.PushImage(t, "library/quarantined:1", registrytest.Image(t, 1, 1024, types.OCIManifestSchema1))
	srv := authStack(t, s)
	host := strings.TrimPrefix(srv.URL, "http://")

	before, _ := s.store.Images("")
	var firstBody string
	for _, p := range []string{
		"/v2/", "/v2",
		"/v2/library/app/manifests/1",
		"/v2/library/app/manifests/" + d.String(),
		"/v2/library/app/blobs/" + ld.String(),
		"/v2/library/app/tags/list",
		"/v2/library/app/referrers/" + d.String(),
		"/v2/library/quarantined/manifests/1",
		"/v2/library/nothere/manifests/latest",
		"/v2/ghcr/notallowed/app/manifests/latest",
		"/v2/Library/Bad/manifests/latest",
		"/v2/library/app/manifests/sha256:xyz",
		"/v2/_catalog",
		"/nothing-here",
	} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(m, srv.URL+p, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ch, `Bearer realm="http://`+host+`/token",service="airlock"`) {
				t.Errorf("%s %s: %d %q, want 401 with a challenge", m, p, resp.StatusCode, ch)
			}
			if m == http.MethodHead {
				continue
			}
			// The answer names no image, state or repository rule.
			msg := strings.ReplaceAll(string(body), host, "HOST")
			if firstBody == "" {
				firstBody = msg
				if !strings.Contains(msg, `"code":"UNAUTHORIZED"`) {
					t.Errorf("body %s, want UNAUTHORIZED", body)
				}
			} else if msg != firstBody {
				t.Errorf("%s answers %s, /v2/ answers %s", p, msg, firstBody)
			}
		}
	}
	if after, _ := s.store.Images(""); len(after) != len(before) {
		t.Errorf("anonymous requests made records: %d before, %d after", len(before), len(after))
	}
	// The challenge names the repository asked for.
	resp, err := http.Get(srv.URL + "/v2/ghcr/team/x/manifests/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasSuffix(ch, `,scope="repository:ghcr/team/x:pull"`) {
		t.Errorf("challenge %q does not name the repository", ch)
	}
	for path, want := range map[string]int{"/healthz": http.StatusOK} {
		if r, err := http.Get(srv.URL + path); err != nil || r.StatusCode != want {
			t.Errorf("%s: %v %v", path, r, err)
		}
	}
	// /token exists only with authentication on, and only for GET.
	if r, _ := http.Get(s.srv.URL + "/token"); r.StatusCode != http.StatusNotFound {
		t.Errorf("/token without authentication: %d, want 404", r.StatusCode)
	}
	if r, _ := http.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=password")); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /token: %d, want 405", r.StatusCode)
	}

	ref, err := name.ParseReference(host+"/library/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var te *transport.Error
	if _, err := remote.Image(ref); !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous pull: %v, want 401", err)
	}
	if _, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %v, want 401", err)
	}
	alice := remote.WithAuth(&authn.Basic{Username: "alice", Password: "alice-pw"})
	got, err := remote.Image(ref, alice)
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if gd, _ := got.Digest(); gd != d {
		t.Errorf("pulled %s, want %s", gd, d)
	}
	if _, err := got.Layers(); err != nil {
		t.Fatal(err)
	}
	l, err := got.LayerByDigest(ld)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatalf("blob with credentials: %v", err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("blob with credentials: %v", err)
	}
	rc.Close()

	// Authenticated is not approved.
	qref, _ := name.ParseReference(host+"/library/quarantined:1", name.Insecure)
	if _, err := remote.Image(qref, alice); !errors.As(err, &te) || te.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("quarantined image with credentials: %v, want 403 DENIED", err)
	}

	// HTTP Basic straight on the API works too.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/library/app/manifests/1", nil)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	req.SetBasicAuth("alice", "alice-pw")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("Basic on the API: %v %v", r, err)
	}
}
