package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/sign"
)

// goTools holds the CLIs goToolCLI built, by name.
var goTools struct {
	sync.Mutex
	built map[string]*goTool
}

type goTool struct {
	once sync.Once
	path string
	err  error
}

// goToolCLI builds a tool dependency of go.mod (so it shares the module's
// build cache and versions) once per test binary and returns its path.
func goToolCLI(t testing.TB, name, pkg string) string {
	t.Helper()
	goTools.Lock()
	if goTools.built == nil {
		goTools.built = map[string]*goTool{}
	}
	tl, ok := goTools.built[name]
	if !ok {
		tl = &goTool{}
		goTools.built[name] = tl
	}
	goTools.Unlock()
	tl.once.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-e2e-"+name+"-")
		if err != nil {
			tl.err = err
			return
		}
		tl.path = filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-o", tl.path, pkg).CombinedOutput()
		if err != nil {
			tl.err = &buildError{err: err, out: string(out)}
		}
	})
	if tl.err != nil {
		t.Fatalf("build %s CLI: %v", name, tl.err)
	}
	return tl.path
}

// removeGoTools deletes the CLIs goToolCLI built.
func removeGoTools() {
	goTools.Lock()
	defer goTools.Unlock()
	for _, tl := range goTools.built {
		if tl.path != "" {
			os.RemoveAll(filepath.Dir(tl.path))
		}
	}
}

// cosignCLI builds the real cosign v2 CLI.
func cosignCLI(t testing.TB) string {
	return goToolCLI(t, "cosign", "github.com/sigstore/cosign/v2/cmd/cosign")
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// cosign runs the cosign CLI offline (its TUF root and config in a temp
// dir) and returns its combined output and error.
func cosign(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return cosignEnv(t, nil, args...)
}

// cosignEnv is cosign with more environment (e.g. COSIGN_PASSWORD).
func cosignEnv(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	// Build (or find) the CLI before the clock starts: a cold build takes minutes.
	bin := cosignCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(childEnv(), "TUF_ROOT="+filepath.Join(home, "tuf"), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, "docker"), "COSIGN_EXPERIMENTAL=0")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type rawManifest struct {
	raw []byte
	mt  string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }

// pushSignature signs the image with s and pushes the classic .sig to the upstream.
func pushSignature(t *testing.T, up *registrytest.Upstream, repo string, img v1.Image, s *sign.Signer) {
	t.Helper()
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	d := digest.FromBytes(raw)
	sig, _, err := s.SignImage(d, int64(len(raw)), string(mt), up.Host()+"/"+repo, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(up.Host()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for bd, b := range sig.Blobs {
		if err := remote.WriteLayer(r, static.NewLayer(b, types.OCILayer)); err != nil {
			t.Fatalf("push signature blob %s: %v", bd, err)
		}
	}
	tag, _ := sign.SignatureTag(d)
	if err := remote.Put(r.Tag(tag), rawManifest{sig.Manifest, sig.MediaType}); err != nil {
		t.Fatalf("push signature: %v", err)
	}
}

func keyPair(t *testing.T, dir, name string) (*sign.Signer, string) {
	t.Helper()
	priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(priv, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(p, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return s, p
}

// TestSignatures: upstream signatures are verified by policy; approved
// images are signed and attested with the enterprise key, and the real
// cosign CLI verifies them through Airlock; revocation withdraws them.
func TestSignatures(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	dir := t.TempDir()

	// The enterprise key, made by the CLI as an operator would.
	keysDir := filepath.Join(dir, "keys")
	cmd := exec.Command(airlockBin, "keys", "generate", "--dir", keysDir)
	cmd.Env = childEnv("AIRLOCK_KEY_PASSWORD=enterprise-secret")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "airlock.key") {
		t.Fatalf("airlock keys generate: %v\n%s", err, out)
	}
	pwFile := filepath.Join(dir, "key-password")
	if err := os.WriteFile(pwFile, []byte("enterprise-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	publisher, publisherPub := keyPair(t, dir, "publisher")
	other, otherPub := keyPair(t, dir, "other")

	pkgs := []registrytest.Pkg{{Name: "musl", Version: "1.2.5-r0"}}
	push := func(repo string, s *sign.Signer) string {
		img := registrytest.AlpineImage(t, "3.20.3", append(pkgs, registrytest.Pkg{Name: strings.ReplaceAll(repo, "/", "-"), Version: "1.0-r0"})...)
		d := up.PushImage(t, repo+":1", img)
		if s != nil {
			pushSignature(t, up, repo, img, s)
		}
		return "docker.io/" + repo + "@" + d.String()
	}
	signedApp := push("signed/app", publisher)
	signedBad := push("signed/bad", other)
	signedNone := push("signed/none", nil)
	optionalNone := push("optional/none", nil)

	dbDir := filepath.Join(dir, "vulndb")
	vulndbtest.Build(t, dbDir, baseVulns...)
	al := startAirlock(t, up, options{Policy: "scan", Extra: `
scan:
  db_dir: ` + dbDir + `
  max_db_age: 0s
  rescan_interval: 0s
signatures:
  mode: none
  rules:
    - repository: "signed/**"
      mode: required
      keys: [` + publisherPub + `]
    - repository: "optional/**"
      mode: if-present
      keys: [` + publisherPub + `]
signing:
  key: ` + filepath.Join(keysDir, "airlock.key") + `
  password_file: ` + pwFile + `
`})

	for _, repo := range []string{"signed/app", "signed/bad", "signed/none", "optional/none"} {
		_, _ = pull(al.Ref(t, repo+":1"))
	}
	cases := []struct {
		image, state, reason string
	}{
		{signedApp, "approved", ""},
		{signedBad, "rejected", "signature does not verify"},
		{signedNone, "rejected", "no signature"},
		{optionalNone, "approved", ""},
	}
	for _, c := range cases {
		img := al.waitState(t, c.image, 60*time.Second, "approved", "rejected", "failed")
		if img.State != c.state || !strings.Contains(img.Reason, c.reason) {
			t.Errorf("%s: %s (%s), want %s (%s)", c.image, img.State, img.Reason, c.state, c.reason)
		}
	}
	rec := al.admin(t, http.MethodGet, "/api/v1/images/"+signedApp, nil)
	if !strings.Contains(string(rec.Body), `"verified": true`) || !strings.Contains(string(rec.Body), `"signed_at"`) {
		t.Fatalf("record of the signed image lacks the verification or Airlock's signature:\n%s", rec.Body)
	}

	// The public key is downloadable; the real cosign CLI verifies
	// Airlock's signature and attestations through Airlock.
	pub := doHTTP(t, http.MethodGet, al.AdminURL+"/airlock.pub", nil, nil)
	if pub.Status != 200 || !strings.Contains(string(pub.Body), "PUBLIC KEY") {
		t.Fatalf("GET /airlock.pub = %d %s", pub.Status, pub.Body)
	}
	airlockPub := filepath.Join(dir, "airlock-downloaded.pub")
	if err := os.WriteFile(airlockPub, pub.Body, 0o644); err != nil {
		t.Fatal(err)
	}
	ref := al.Host + strings.TrimPrefix(signedApp, "docker.io")
	verify := []string{"--insecure-ignore-tlog", "--allow-insecure-registry"}
	if out, err := cosign(t, append(append([]string{"verify", "--key", airlockPub}, verify...), ref)...); err != nil {
		t.Fatalf("cosign verify --key airlock.pub: %v\n%s", err, out)
	}
	// The publisher's own signature is served next to Airlock's.
	if out, err := cosign(t, append(append([]string{"verify", "--key", publisherPub}, verify...), ref)...); err != nil {
		t.Fatalf("cosign verify --key publisher.pub through airlock: %v\n%s", err, out)
	}
	for _, typ := range []string{"spdxjson", "vuln", "slsaprovenance1"} {
		out, err := cosign(t, append(append([]string{"verify-attestation", "--key", airlockPub, "--type", typ}, verify...), ref)...)
		if err != nil {
			t.Fatalf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
		}
		if typ == "slsaprovenance1" {
			checkProvenance(t, out, signedApp)
		}
	}
	out, err := cosign(t, "tree", "--allow-insecure-registry", ref)
	if err != nil || !strings.Contains(out, ".sig") || !strings.Contains(out, ".att") {
		t.Fatalf("cosign tree: %v\n%s", err, out)
	}
	if out, err := cosign(t, append(append([]string{"verify", "--key", otherPub}, verify...), ref)...); err == nil {
		t.Fatalf("cosign verify with a wrong key succeeded:\n%s", out)
	}

	// Referrers: the signature and attestations for an approved digest,
	// nothing for a rejected one.
	digestOf := func(image string) string { return image[strings.Index(image, "@")+1:] }
	refs := doHTTP(t, http.MethodGet, al.URL+"/v2/signed/app/referrers/"+digestOf(signedApp), nil, nil)
	var idx struct {
		Manifests []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if refs.Status != 200 || json.Unmarshal(refs.Body, &idx) != nil || len(idx.Manifests) < 4 {
		t.Fatalf("referrers of the approved image = %d %s", refs.Status, refs.Body)
	}
	at := idx.Manifests[0].ArtifactType
	filtered := doHTTP(t, http.MethodGet, al.URL+"/v2/signed/app/referrers/"+digestOf(signedApp)+"?artifactType="+at, nil, nil)
	if filtered.Header.Get("OCI-Filters-Applied") != "artifactType" || strings.Count(string(filtered.Body), "artifactType") >= len(idx.Manifests) {
		t.Fatalf("artifactType filter: %s %s", filtered.Header, filtered.Body)
	}
	empty := doHTTP(t, http.MethodGet, al.URL+"/v2/signed/none/referrers/"+digestOf(signedNone), nil, nil)
	if empty.Status != 200 || strings.Contains(string(empty.Body), "artifactType") {
		t.Fatalf("referrers of a rejected image = %d %s", empty.Status, empty.Body)
	}
	sigTag, _ := sign.SignatureTag(digest.Digest(digestOf(signedNone)))
	if r := al.getManifest(t, "signed/none", sigTag); r.Status != 404 {
		t.Fatalf(".sig of a rejected image = %d", r.Status)
	}

	// An admin's approval of the rejected image signs it before serving it.
	al.action(t, "approve", signedBad, "publisher rotated keys; checked by hand")
	al.waitState(t, signedBad, 60*time.Second, "approved")
	badRef := al.Host + strings.TrimPrefix(signedBad, "docker.io")
	if out, err := cosign(t, append(append([]string{"verify", "--key", airlockPub}, verify...), badRef)...); err != nil {
		t.Fatalf("cosign verify after admin approval: %v\n%s", err, out)
	}

	// Revoked: neither the image nor its signatures are served, by tag or digest.
	var signedRec struct {
		Image struct {
			Signed struct {
				Sig, Att struct {
					Digest string `json:"digest"`
				}
			} `json:"signed"`
		} `json:"image"`
	}
	if err := json.Unmarshal(rec.Body, &signedRec); err != nil || signedRec.Image.Signed.Sig.Digest == "" {
		t.Fatalf("no signature digest in the record: %v", err)
	}
	sigDigest := signedRec.Image.Signed.Sig.Digest

	// The console's image page shows this evidence from the real pipeline:
	// the publisher's signature verified under the required rule, and
	// Airlock's signature and attestations by the digests served.
	adm := startBrowser(t).person("admin")
	signIn(adm, al, adminToken, "admin", "admin")
	adm.navigate(al.AdminURL + "/ui/images/" + signedApp)
	if got := adm.text("#signatures"); !strings.Contains(got, "verified") || strings.Contains(got, "not verified") || !strings.Contains(got, "required") {
		t.Errorf("the image page's upstream signatures read %q, want verified (mode required)", got)
	}
	if got := adm.text("#attestations"); !strings.Contains(got, sigDigest) || !strings.Contains(got, signedRec.Image.Signed.Att.Digest) {
		t.Errorf("the image page's attestations read %q, want the .sig %s and .att %s", got, sigDigest, signedRec.Image.Signed.Att.Digest)
	}
	adm.mustScreenshot("image-page-signed")
	if r := al.getManifest(t, "signed/app", sigDigest); r.Status != 200 {
		t.Fatalf("signature manifest by digest while approved = %d", r.Status)
	}
	al.action(t, "revoke", signedApp, "withdrawn")
	for _, d := range []string{sigDigest, signedRec.Image.Signed.Att.Digest} {
		if r := al.getManifest(t, "signed/app", d); r.Status == 200 {
			t.Fatalf("signature manifest %s of a revoked image served by digest", d)
		}
	}
	if out, err := cosign(t, append(append([]string{"verify", "--key", airlockPub}, verify...), ref)...); err == nil {
		t.Fatalf("cosign verify of a revoked image succeeded:\n%s", out)
	}
	appSig, _ := sign.SignatureTag(digest.Digest(digestOf(signedApp)))
	if r := al.getManifest(t, "signed/app", appSig); r.Status == 200 {
		t.Fatal(".sig of a revoked image is served")
	}
	refs = doHTTP(t, http.MethodGet, al.URL+"/v2/signed/app/referrers/"+digestOf(signedApp), nil, nil)
	if strings.Contains(string(refs.Body), "artifactType") {
		t.Fatalf("referrers of a revoked image: %s", refs.Body)
	}
}

// checkProvenance reads the SLSA v1 provenance statement cosign printed
// (a DSSE envelope per line) and checks that it names Airlock as the
// builder, the import's source and digest, and every blob of the image as
// a resolved dependency with its digest.
func checkProvenance(t *testing.T, cosignOut, image string) {
	t.Helper()
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			BuildDefinition struct {
				BuildType          string `json:"buildType"`
				ExternalParameters struct {
					Upstream, Repository, Digest string
				} `json:"externalParameters"`
				ResolvedDependencies []struct {
					URI    string            `json:"uri"`
					Name   string            `json:"name"`
					Digest map[string]string `json:"digest"`
				} `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
			RunDetails struct {
				Builder struct {
					ID string `json:"id"`
				} `json:"builder"`
			} `json:"runDetails"`
		} `json:"predicate"`
	}
	found := false
	for _, line := range strings.Split(cosignOut, "\n") {
		var env struct{ Payload []byte }
		if json.Unmarshal([]byte(line), &env) != nil || len(env.Payload) == 0 {
			continue
		}
		if json.Unmarshal(env.Payload, &st) == nil && st.PredicateType == "https://slsa.dev/provenance/v1" {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("no SLSA v1 provenance statement in cosign's output:\n%s", cosignOut)
	}
	bd := st.Predicate.BuildDefinition
	digestOf := image[strings.Index(image, "@")+1:]
	if st.Predicate.RunDetails.Builder.ID != "https://airlock.dev/airlock" || bd.BuildType != "https://airlock.dev/provenance/import/v1" {
		t.Errorf("provenance builder %q, build type %q", st.Predicate.RunDetails.Builder.ID, bd.BuildType)
	}
	if p := bd.ExternalParameters; "docker.io/"+p.Repository+"@"+p.Digest != image || p.Upstream != "docker.io" {
		t.Errorf("provenance external parameters %+v, want %s", p, image)
	}
	names := map[string]int{}
	for _, d := range bd.ResolvedDependencies {
		names[d.Name]++
		if len(d.Digest["sha256"]) != 64 || !strings.HasPrefix(d.URI, "oci://docker.io/") {
			t.Errorf("resolved dependency %+v", d)
		}
	}
	if names["manifest"] != 1 || names["config"] != 1 || names["layer"] < 1 {
		t.Errorf("resolved dependencies by name %v, want the manifest, its config and layers", names)
	}
	if len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != digestOf {
		t.Errorf("provenance subject %+v, want %s", st.Subject, digestOf)
	}
}
