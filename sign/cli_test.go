package sign

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// cosignCLI runs a real cosign binary offline: TUF_ROOT, HOME and
// DOCKER_CONFIG point into a temp dir, so nothing outside the test is read
// or written and no credentials are picked up.
type cosignCLI struct {
	bin, dir string
}

func newCosignCLI(t *testing.T) *cosignCLI {
	t.Helper()
	bin := os.Getenv("COSIGN_BIN")
	if bin == "" {
		t.Skip("COSIGN_BIN not set; to check compatibility with the real CLI, build it with " +
			"`GOBIN=/tmp/cosignbin go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5` (outside the repo) " +
			"and run with COSIGN_BIN=/tmp/cosignbin/cosign")
	}
	dir := t.TempDir()
	for _, d := range []string{"tuf", "home", "docker"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return &cosignCLI{bin: bin, dir: dir}
}

// run runs cosign with args and returns its combined output and error.
func (c *cosignCLI) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(),
		"TUF_ROOT="+filepath.Join(c.dir, "tuf"),
		"HOME="+filepath.Join(c.dir, "home"),
		"DOCKER_CONFIG="+filepath.Join(c.dir, "docker"),
		"COSIGN_PASSWORD="+string(testPassword),
	)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ok runs cosign and fails the test unless it exits 0.
func (c *cosignCLI) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(t, args...)
	if err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fails runs cosign and fails the test if it exits 0.
func (c *cosignCLI) fails(t *testing.T, args ...string) {
	t.Helper()
	if out, err := c.run(t, args...); err == nil {
		t.Fatalf("cosign %s succeeded, want failure\n%s", strings.Join(args, " "), out)
	}
}

// file writes b into the CLI's directory and returns its path.
func (c *cosignCLI) file(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCosignCLI checks what SignImage and Attest produce with the real
// cosign CLI, and Verify against what the real CLI produces.
func TestCosignCLI(t *testing.T) {
	c := newCosignCLI(t)
	u := registrytest.NewUpstream(t)
	signer, pub := testKey(t, 0)
	_, otherPub := testKey(t, 1)
	pubFile := c.file(t, "airlock.pub", pub)
	otherFile := c.file(t, "other.pub", otherPub)
	const approvalType = "https://airlock.dev/approval/v1"
	offline := []string{"--insecure-ignore-tlog", "--allow-insecure-registry"}

	t.Run("airlock signs, cosign verifies", func(t *testing.T) {
		img := pushTestImage(t, u, "cli/app", "1")
		ref := img.repo.Digest(img.digest.String()).String()
		sig, sigRef, err := signer.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, nil)
		if err != nil {
			t.Fatal(err)
		}
		att, attRefs, err := signer.Attest(img.digest, img.size, img.mediaType, img.dockerRef, []Attestation{
			{PredicateType: PredicateSPDX, Predicate: []byte(`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app"}`)},
			{PredicateType: PredicateVuln, Predicate: []byte(`{"scanner":{"uri":"pkg:github/anchore/grype","version":"0.90.0","db":{"uri":"","version":"6"},"result":{}},` +
				`"metadata":{"scanStartedOn":"2025-01-01T00:00:00Z","scanFinishedOn":"2025-01-01T00:00:01Z"}}`)},
			{PredicateType: approvalType, Predicate: []byte(`{"approvedBy":"gate"}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, img.repo, sig, mustTag(t, SignatureTag, img.digest))
		pushArtifact(t, img.repo, att, mustTag(t, AttestationTag, img.digest))
		pushArtifact(t, img.repo, sigRef, "")
		for _, r := range attRefs {
			pushArtifact(t, img.repo, r, "")
		}

		out := c.ok(t, append([]string{"verify", "--key", pubFile}, append(offline, ref)...)...)
		if !strings.Contains(out, img.digest.String()) {
			t.Errorf("cosign verify output lacks the digest:\n%s", out)
		}
		c.fails(t, append([]string{"verify", "--key", otherFile}, append(offline, ref)...)...)
		for _, typ := range []string{"spdxjson", "vuln", approvalType} {
			c.ok(t, append([]string{"verify-attestation", "--key", pubFile, "--type", typ}, append(offline, ref)...)...)
		}
		c.fails(t, append([]string{"verify-attestation", "--key", otherFile, "--type", "vuln"}, append(offline, ref)...)...)
		c.fails(t, append([]string{"verify-attestation", "--key", pubFile, "--type", "cyclonedx"}, append(offline, ref)...)...)

		tree := c.ok(t, "tree", "--allow-insecure-registry", ref)
		for _, want := range []string{mustTag(t, SignatureTag, img.digest), mustTag(t, AttestationTag, img.digest)} {
			if !strings.Contains(tree, want) {
				t.Errorf("cosign tree lacks %s:\n%s", want, tree)
			}
		}
		tree = c.ok(t, "tree", "--experimental-oci11", "--allow-insecure-registry", ref)
		for _, want := range []string{SignatureArtifactType + " artifacts via OCI referrer", AttestationArtifactType + " artifacts via OCI referrer"} {
			if !strings.Contains(tree, want) {
				t.Errorf("cosign tree --experimental-oci11 lacks %q:\n%s", want, tree)
			}
		}
	})

	t.Run("referrer only", func(t *testing.T) {
		img := pushTestImage(t, u, "cli/referrer", "1")
		_, sigRef, err := signer.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, nil)
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, img.repo, sigRef, "")
		ref := img.repo.Digest(img.digest.String()).String()
		c.ok(t, append([]string{"verify", "--experimental-oci11", "--key", pubFile}, append(offline, ref)...)...)
		c.fails(t, append([]string{"verify", "--experimental-oci11", "--key", otherFile}, append(offline, ref)...)...)
	})

	t.Run("cosign signs, airlock verifies and merges", func(t *testing.T) {
		c.ok(t, "generate-key-pair")
		keyPEM, err := os.ReadFile(filepath.Join(c.dir, "cosign.key"))
		if err != nil {
			t.Fatal(err)
		}
		upPub, err := os.ReadFile(filepath.Join(c.dir, "cosign.pub"))
		if err != nil {
			t.Fatal(err)
		}
		// A key cosign generated loads as an Airlock signer too.
		if _, err := LoadSigner(keyPEM, testPassword); err != nil {
			t.Fatalf("LoadSigner(cosign.key): %v", err)
		}
		upFP, err := KeyFingerprint(upPub)
		if err != nil {
			t.Fatal(err)
		}

		img := pushTestImage(t, u, "cli/upstream", "1")
		ref := img.repo.Digest(img.digest.String()).String()
		c.ok(t, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "-y", ref)
		c.ok(t, "attest", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "-y",
			"--type", "spdxjson", "--predicate", c.file(t, "sbom.json", []byte(`{"spdxVersion":"SPDX-2.3"}`)), ref)

		verifiesOnlyWith(t, img, upPub, pub, Verification{Signatures: 1, Verified: true, Signer: "key " + upFP, Layout: LayoutSigTag})

		// Merge the upstream signature with Airlock's: the CLI accepts the
		// merged manifest with either key.
		existing, err := FetchSignatures(t.Context(), img.repo, img.digest)
		if err != nil || existing == nil {
			t.Fatalf("FetchSignatures = %v, %v", existing, err)
		}
		merged, _, err := signer.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, existing)
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, img.repo, merged, mustTag(t, SignatureTag, img.digest))
		c.ok(t, append([]string{"verify", "--key", "cosign.pub"}, append(offline, ref)...)...)
		c.ok(t, append([]string{"verify", "--key", pubFile}, append(offline, ref)...)...)

		// cosign v3's layout: a Sigstore bundle referrer.
		bimg := pushTestImage(t, u, "cli/bundle", "1")
		bref := bimg.repo.Digest(bimg.digest.String()).String()
		c.ok(t, "sign", "--new-bundle-format", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "-y", bref)
		v, err := verifyErr(t, bimg, TrustPolicy{Keys: [][]byte{upPub}, IgnoreTlog: true})
		want := Verification{Signatures: 1, Verified: true, Signer: "key " + upFP, Layout: LayoutReferrers}
		if err != nil || v != want {
			t.Fatalf("Verify(bundle) = %+v, %v; want %+v", v, err, want)
		}
		// The pitfall that keeps Airlock from writing (or serving) bundles:
		// cosign v2.6 switches to bundle mode when it sees one and then
		// wants a trusted root, which offline sites do not have.
		if out, err := c.run(t, append([]string{"verify", "--key", "cosign.pub"}, append(offline, bref)...)...); err != nil {
			t.Logf("as expected for cosign v2.6, `cosign verify --key` on a bundle-signed image fails offline: %s", lastLine(out))
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
