package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/sign"
)

// publisherCLI runs the real cosign CLI as an upstream publisher would:
// with its own key pair (cosign format, password "pw") and an offline
// home.
type publisherCLI struct {
	dir, key, pub string
}

func newPublisherCLI(t *testing.T, name string) *publisherCLI {
	t.Helper()
	dir := t.TempDir()
	priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	p := &publisherCLI{dir: dir, key: filepath.Join(dir, name+".key"), pub: filepath.Join(dir, name+".pub")}
	if err := os.WriteFile(p.key, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.pub, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs cosign with the publisher's password and an offline home.
func (p *publisherCLI) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return cosignEnv(t, []string{"COSIGN_PASSWORD=pw"}, args...)
}

func (p *publisherCLI) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.run(t, args...)
	if err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// file writes body into the publisher's directory.
func (p *publisherCLI) file(t *testing.T, name, body string) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// attest runs `cosign attest` of predicate file pred with type typ on ref
// (extra flags first), offline.
func (p *publisherCLI) attest(t *testing.T, ref, typ, pred string, extra ...string) {
	t.Helper()
	args := append([]string{"attest", "--key", p.key, "--type", typ, "--predicate", pred, "--tlog-upload=false", "--allow-insecure-registry", "--yes"}, extra...)
	p.ok(t, append(args, ref)...)
}

// upstreamVEXDoc is an OpenVEX document saying CVE-2026-1001 (openssl)
// does not affect the image with digest d.
func upstreamVEXDoc(d string) string {
	return `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://publisher.example/vex/app-1","author":"publisher security",
  "timestamp":"2026-01-01T00:00:00Z","version":1,
  "statements":[{"vulnerability":{"name":"CVE-2026-1001"},
    "products":[{"@id":"pkg:oci/app@` + strings.Replace(d, ":", "%3A", 1) + `"}],
    "status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`
}

// TestUpstreamAttestations: an upstream publisher signs its image and
// attests an SPDX SBOM and an OpenVEX document with the real cosign CLI
// (classic .att tag), and, for a second image, an SBOM as a Sigstore
// bundle referrer (--new-bundle-format). Through Airlock, the real cosign
// CLI verifies the publisher's SBOM with the publisher's key and
// Airlock's SBOM with Airlock's key, from the same image. The signed VEX
// clears the image's critical CVE; a VEX signed by someone else does not.
func TestUpstreamAttestations(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	dir := t.TempDir()
	publisher := newPublisherCLI(t, "publisher")
	stranger := newPublisherCLI(t, "stranger")

	// Airlock's enterprise key.
	priv, pub, err := sign.GenerateKeyPair([]byte("enterprise-secret"))
	if err != nil {
		t.Fatal(err)
	}
	airlockKey, airlockPub, pwFile := filepath.Join(dir, "airlock.key"), filepath.Join(dir, "airlock.pub"), filepath.Join(dir, "key-password")
	for f, b := range map[string][]byte{airlockKey: priv, airlockPub: pub, pwFile: []byte("enterprise-secret\n")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Vulnerable images (openssl 3.0.1-r0: CVE-2026-1001, critical).
	push := func(repo string) (image, upRef string) {
		img := registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"}, registrytest.Pkg{Name: strings.ReplaceAll(repo, "/", "-"), Version: "1.0-r0"})
		d := up.PushImage(t, repo+":1", img)
		upRef = up.Host() + "/" + repo + "@" + d.String()
		publisher.ok(t, "sign", "--key", publisher.key, "--tlog-upload=false", "--allow-insecure-registry", "--yes", upRef)
		return "docker.io/" + repo + "@" + d.String(), upRef
	}
	digestOf := func(image string) string { return image[strings.Index(image, "@")+1:] }
	sbom := publisher.file(t, "sbom.spdx.json", `{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"publisher-sbom-of-app","documentNamespace":"https://publisher.example/spdx/app-1","creationInfo":{"created":"2026-01-01T00:00:00Z","creators":["Tool: publisher-build"]},"packages":[]}`)

	app, appRef := push("attested/app")
	publisher.attest(t, appRef, "spdxjson", sbom)
	publisher.attest(t, appRef, "openvex", publisher.file(t, "app.vex.json", upstreamVEXDoc(digestOf(app))))

	bundled, bundledRef := push("attested/bundled")
	publisher.attest(t, bundledRef, "openvex", publisher.file(t, "bundled.vex.json", upstreamVEXDoc(digestOf(bundled))))
	publisher.attest(t, bundledRef, "spdxjson", sbom, "--new-bundle-format")

	forged, forgedRef := push("attested/forged")
	stranger.attest(t, forgedRef, "openvex", stranger.file(t, "forged.vex.json", upstreamVEXDoc(digestOf(forged))))

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
    - repository: "attested/**"
      mode: required
      keys: [` + publisher.pub + `]
signing:
  key: ` + airlockKey + `
  password_file: ` + pwFile + `
`})
	for _, repo := range []string{"attested/app", "attested/bundled", "attested/forged"} {
		_, _ = pull(al.Ref(t, repo+":1"))
	}
	for image, want := range map[string]string{app: "approved", bundled: "approved", forged: "rejected"} {
		rec := al.waitState(t, image, 90*time.Second, "approved", "rejected", "failed")
		if rec.State != want {
			t.Fatalf("%s: %s (%s), want %s", image, rec.State, rec.Reason, want)
		}
		if want == "rejected" && !strings.Contains(rec.Reason, "CVE-2026-1001") {
			t.Errorf("%s: reason %q does not name the CVE", image, rec.Reason)
		}
	}
	// The record says which upstream attestation cleared the CVE, and whose.
	var detail struct {
		Image struct {
			Policy struct {
				Suppressed []string `json:"suppressed"`
			} `json:"policy"`
		} `json:"image"`
	}
	r := al.admin(t, "GET", "/api/v1/images/"+app, nil)
	if err := json.Unmarshal(r.Body, &detail); err != nil || len(detail.Image.Policy.Suppressed) != 1 ||
		!strings.Contains(detail.Image.Policy.Suppressed[0], "CVE-2026-1001") || !strings.Contains(detail.Image.Policy.Suppressed[0], "VEX upstream attestation sha256:") {
		t.Fatalf("suppression on the record: %v %s", err, r.Body)
	}

	verify := []string{"--insecure-ignore-tlog", "--allow-insecure-registry"}
	cosignOK := func(args ...string) string {
		t.Helper()
		out, err := cosign(t, append(append(args[:len(args)-1:len(args)-1], verify...), args[len(args)-1])...)
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, image := range []string{app, bundled} {
		ref := al.Host + strings.TrimPrefix(image, "docker.io")
		// The publisher's SBOM, with the publisher's key, through Airlock.
		if out := cosignOK("verify-attestation", "--key", publisher.pub, "--type", "spdxjson", ref); !strings.Contains(decodedPayloads(out), "publisher-sbom-of-app") {
			t.Errorf("%s: the publisher's SBOM is not what verified:\n%s", image, out)
		}
		// Airlock's own SBOM, with Airlock's key, from the same image.
		if out := cosignOK("verify-attestation", "--key", airlockPub, "--type", "spdxjson", ref); strings.Contains(decodedPayloads(out), "publisher-sbom-of-app") {
			t.Errorf("%s: Airlock's key verified the publisher's SBOM:\n%s", image, out)
		}
		cosignOK("verify-attestation", "--key", publisher.pub, "--type", "openvex", ref)
		cosignOK("verify", "--key", publisher.pub, ref)
		// The publisher attested no vulnerability report: Airlock's does not
		// verify with the publisher's key.
		if out, err := cosign(t, append(append([]string{"verify-attestation", "--key", publisher.pub, "--type", "vuln"}, verify...), ref)...); err == nil {
			t.Errorf("%s: a vuln attestation verified with the publisher's key:\n%s", image, out)
		}
	}
	// Nothing of the stranger's reaches Airlock's storage: the rejected
	// image has no .att, and the stranger's key verifies nothing.
	forgedRef2 := al.Host + strings.TrimPrefix(forged, "docker.io")
	if out, err := cosign(t, append(append([]string{"verify-attestation", "--key", stranger.pub, "--type", "openvex"}, verify...), forgedRef2)...); err == nil {
		t.Errorf("the stranger's VEX verified through Airlock:\n%s", out)
	}
}

// decodedPayloads returns the in-toto statements in cosign's output (one
// DSSE envelope per line), decoded.
func decodedPayloads(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var env struct{ Payload []byte }
		if json.Unmarshal([]byte(line), &env) == nil && len(env.Payload) > 0 {
			b.Write(env.Payload)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
