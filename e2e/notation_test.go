package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/notationtest"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
)

// notationCLI builds the real notation CLI (v1.3.2, a tool dependency in
// go.mod) once per test binary.
func notationCLI(t testing.TB) string {
	return goToolCLI(t, "notation", "github.com/notaryproject/notation/cmd/notation")
}

// notationHome is a notation configuration directory (XDG_CONFIG_HOME) with
// a signing key, or a trust policy and trust store, or both.
type notationHome struct {
	dir string
}

func newNotationHome(t *testing.T) notationHome {
	h := notationHome{dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(h.dir, "notation"), 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

// key makes s notation's default signing key.
func (h notationHome) key(t *testing.T, s notationtest.Signer) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{
		"default": "signer",
		"keys":    []map[string]string{{"name": "signer", "keyPath": s.KeyFile, "certPath": s.ChainFile}},
	})
	if err := os.WriteFile(filepath.Join(h.dir, "notation", "signingkeys.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// trust makes notation trust ca for every repository.
func (h notationHome) trust(t *testing.T, ca *notationtest.CA) {
	t.Helper()
	notationtest.TrustStore(t, filepath.Join(h.dir, "notation", "truststore"), "trusted", ca)
	notationtest.TrustPolicy(t, filepath.Join(h.dir, "notation", "trustpolicy.json"),
		notationtest.Statement{Name: "all", Scopes: []string{"*"}, Level: "strict", Store: "ca:trusted"})
}

func (h notationHome) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runTool(t, []string{"XDG_CONFIG_HOME=" + h.dir, "HOME=" + h.dir}, notationCLI(t), args...)
}

// TestNotation runs the real notation CLI against a real upstream and
// Airlock: images the publisher signed with `notation sign` (JWS and COSE)
// are verified against the rule's trust policy and approved, recording the
// signer; a signature from another CA and an unsigned image are rejected
// under mode required, an unsigned one passes under if-present. Airlock
// signs approved images with Notation too: `notation verify` through
// Airlock passes with the enterprise trust policy, and also with the
// publisher's (its verified signature is kept), and fails after a revoke.
// Nothing of a rejected image, its upstream signature included, comes out.
func TestNotation(t *testing.T) {
	up := registrytest.NewUpstream(t)
	dir := t.TempDir()
	publisherCA := notationtest.NewCA(t, "publisher-ca")
	strangerCA := notationtest.NewCA(t, "stranger-ca")
	enterpriseCA := notationtest.NewCA(t, "enterprise-ca")
	publisher := publisherCA.Issue(t, dir, "publisher")
	stranger := strangerCA.Issue(t, dir, "stranger")
	airlockCert := enterpriseCA.Issue(t, dir, "airlock-notation")

	// The rule's Notation trust: the publisher's CA, every repository.
	store := notationtest.TrustStore(t, filepath.Join(dir, "truststore"), "publisher", publisherCA)
	policy := notationtest.TrustPolicy(t, filepath.Join(dir, "trustpolicy.json"),
		notationtest.Statement{Name: "publisher", Scopes: []string{"*"}, Level: "strict", Store: "ca:publisher"})
	_, keyPath, _, pwPath := hostileKeyPair(t, dir, "airlock")
	cosigner, _, cosignPub, _ := hostileKeyPair(t, dir, "publisher-cosign")
	rule := func(repo, mode string) string {
		return "    - repository: " + repo + "\n      mode: " + mode + "\n      notation:\n        trust_policy: " + policy + "\n        trust_store: " + store + "\n"
	}
	both := rule("library/both-*", "required") + "      keys: [" + cosignPub + "]\n      require: both\n"
	al := startAirlock(t, up, options{Policy: "auto", Hold: 30 * time.Second, Extra: "signatures:\n  mode: none\n  rules:\n" +
		rule("library/nota-*", "required") + rule("library/optional-*", "if-present") + both +
		"signing:\n  key: " + keyPath + "\n  password_file: " + pwPath +
		"\n  notation:\n    key: " + airlockCert.KeyFile + "\n    certificate_chain: " + airlockCert.ChainFile + "\n    format: cose\n"})

	push := func(repo string) string {
		return up.PushImage(t, repo+":v1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1)).String()
	}
	signer := newNotationHome(t)
	signAt := func(s notationtest.Signer, repo, dgst, format string) {
		t.Helper()
		signer.key(t, s)
		if out, err := signer.run(t, "sign", "--insecure-registry", "--signature-format", format, up.Host()+"/"+repo+"@"+dgst); err != nil {
			t.Fatalf("notation sign %s: %v\n%s", repo, err, out)
		}
	}
	jws, cose, wrong, unsigned, optional := push("library/nota-jws"), push("library/nota-cose"), push("library/nota-wrong"), push("library/nota-unsigned"), push("library/optional-unsigned")
	signAt(publisher, "library/nota-jws", jws, "jws")
	signAt(publisher, "library/nota-cose", cose, "cose")
	signAt(stranger, "library/nota-wrong", wrong, "jws")
	// require: both — cosign alone is not enough; cosign and Notation are.
	pushBoth := func(repo string, notation bool) string {
		img := registrytest.Image(t, 1, 512, types.OCIManifestSchema1)
		d := up.PushImage(t, repo+":v1", img).String()
		pushSignature(t, up, repo, img, cosigner)
		if notation {
			signAt(publisher, repo, d, "jws")
		}
		return d
	}
	bothSigned, cosignOnly := pushBoth("library/both-signed", true), pushBoth("library/both-cosign-only", false)

	verification := func(image string) (state string, v struct {
		Verified bool   `json:"verified"`
		Format   string `json:"format"`
		Signer   string `json:"signer"`
		Detail   string `json:"detail"`
	}) {
		t.Helper()
		r := al.admin(t, http.MethodGet, "/api/v1/images/"+image, nil)
		var d struct {
			Image struct {
				State        string          `json:"state"`
				Verification json.RawMessage `json:"verification"`
			} `json:"image"`
		}
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatalf("image %s: %v\n%s", image, err, r.Body)
		}
		if len(d.Image.Verification) > 0 {
			if err := json.Unmarshal(d.Image.Verification, &v); err != nil {
				t.Fatal(err)
			}
		}
		return d.Image.State, v
	}

	for _, c := range []struct{ repo, dgst string }{{"library/nota-jws", jws}, {"library/nota-cose", cose}} {
		want := mustPull(t, up.Ref(t, c.repo+"@"+c.dgst))
		assertSame(t, c.repo, want, mustPull(t, al.Ref(t, c.repo+":v1")))
		st, v := verification("docker.io/" + c.repo + "@" + c.dgst)
		if st != "approved" || !v.Verified || v.Format != "notation" || !strings.Contains(v.Signer, "CN=publisher") {
			t.Fatalf("%s: %s, verification %+v", c.repo, st, v)
		}
	}
	for _, c := range []struct{ repo, dgst, why string }{
		{"library/nota-wrong", wrong, "does not verify"},
		{"library/nota-unsigned", unsigned, "no signature"},
	} {
		if _, err := pull(al.Ref(t, c.repo+"@"+c.dgst)); err == nil {
			t.Fatalf("%s: pulled through Airlock", c.repo)
		}
		img := "docker.io/" + c.repo + "@" + c.dgst
		rec := al.waitState(t, img, 30*time.Second, "rejected")
		if !strings.Contains(rec.Reason, c.why) {
			t.Errorf("%s rejected with %q, want %q", c.repo, rec.Reason, c.why)
		}
	}
	mustPull(t, al.Ref(t, "library/both-signed@"+bothSigned))
	if st, v := verification("docker.io/library/both-signed@" + bothSigned); st != "approved" || v.Format != "cosign+notation" {
		t.Fatalf("cosign and notation signed under require both: %s %+v", st, v)
	}
	if _, err := pull(al.Ref(t, "library/both-cosign-only@"+cosignOnly)); err == nil {
		t.Fatal("cosign-only image pulled under require both")
	}
	if rec := al.waitState(t, "docker.io/library/both-cosign-only@"+cosignOnly, 30*time.Second, "rejected"); !strings.Contains(rec.Reason, "no notation signature") {
		t.Errorf("cosign-only under require both rejected with %q", rec.Reason)
	}
	mustPull(t, al.Ref(t, "library/optional-unsigned@"+optional))
	if st, _ := verification("docker.io/library/optional-unsigned@" + optional); st != "approved" {
		t.Fatalf("unsigned image under if-present: %s", st)
	}

	// The stranger's signature of the rejected image exists upstream;
	// through Airlock neither the referrers list nor the manifest shows it.
	upRefs, err := remote.Referrers(up.Ref(t, "library/nota-wrong@"+wrong).(name.Digest))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := upRefs.IndexManifest()
	if len(im.Manifests) != 1 {
		t.Fatalf("upstream has %d referrers of the stranger-signed image, want 1", len(im.Manifests))
	}
	// Asked for by digest, it is just another manifest Airlock has not
	// approved: quarantined, not served.
	if r := al.getManifest(t, "library/nota-wrong", im.Manifests[0].Digest.String()); r.Status/100 == 2 || strings.Contains(string(r.Body), sign.NotationArtifactType) {
		t.Fatalf("the upstream signature of a rejected image through Airlock: %d %s", r.Status, r.Body)
	}
	r := doHTTP(t, http.MethodGet, "http://"+al.Host+"/v2/library/nota-wrong/referrers/"+wrong, nil, nil)
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), sign.NotationArtifactType) {
		t.Fatalf("referrers of a rejected image: %d %s", r.Status, r.Body)
	}

	// Downstream: notation verify through Airlock, with Airlock's CA, and
	// with the publisher's (its kept signature).
	enterprise, pub, stranger2 := newNotationHome(t), newNotationHome(t), newNotationHome(t)
	enterprise.trust(t, enterpriseCA)
	pub.trust(t, publisherCA)
	stranger2.trust(t, strangerCA)
	ref := al.Host + "/library/nota-jws@" + jws
	notationReferrers := func() int {
		t.Helper()
		r := doHTTP(t, http.MethodGet, "http://"+al.Host+"/v2/library/nota-jws/referrers/"+jws+"?artifactType="+sign.NotationArtifactType, nil, nil)
		var idx struct {
			Manifests []struct {
				ArtifactType string `json:"artifactType"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(r.Body, &idx); err != nil || r.Status != http.StatusOK {
			t.Fatalf("referrers: %d %s", r.Status, r.Body)
		}
		for _, m := range idx.Manifests {
			if m.ArtifactType != sign.NotationArtifactType {
				t.Fatalf("artifactType filter ignored: %s", r.Body)
			}
		}
		return len(idx.Manifests)
	}
	if n := notationReferrers(); n != 2 {
		t.Fatalf("%d notation signatures served for the approved image, want Airlock's and the publisher's", n)
	}
	for _, h := range []notationHome{enterprise, pub} {
		if out, err := h.run(t, "verify", "--insecure-registry", ref); err != nil {
			t.Fatalf("notation verify %s: %v\n%s", ref, err, out)
		}
	}
	out, err := stranger2.run(t, "verify", "--insecure-registry", ref)
	mustFail(t, "notation verify with a CA that signed nothing", out, err)
	out, err = enterprise.run(t, "verify", "--insecure-registry", al.Host+"/library/nota-wrong@"+wrong)
	mustFail(t, "notation verify of a rejected image", out, err)

	al.action(t, "revoke", "docker.io/library/nota-jws@"+jws, "withdrawn")
	if n := notationReferrers(); n != 0 {
		t.Fatalf("%d notation signatures still served after revoke", n)
	}
	out, err = enterprise.run(t, "verify", "--insecure-registry", ref)
	mustFail(t, "notation verify after revoke", out, err)
	out, err = pub.run(t, "verify", "--insecure-registry", ref)
	mustFail(t, "notation verify of the publisher's signature after revoke", out, err)
}
