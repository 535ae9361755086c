package sign

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/internal/registrytest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/in-toto/in-toto-golang/in_toto"
	digest "github.com/opencontainers/go-digest"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

func TestGenerateKeyPairCosignFormat(t *testing.T) {
	priv, pub, err := GenerateKeyPair(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(priv); b == nil || b.Type != cosign.SigstorePrivateKeyPemType {
		t.Fatalf("private key PEM type = %v, want %q", b, cosign.SigstorePrivateKeyPemType)
	}
	if b, _ := pem.Decode(pub); b == nil || b.Type != "PUBLIC KEY" {
		t.Fatalf("public key is not a PUBLIC KEY PEM block: %q", pub)
	}
	s, err := LoadSigner(priv, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.PublicKeyPEM(), pub) {
		t.Errorf("PublicKeyPEM = %q, want %q", s.PublicKeyPEM(), pub)
	}
	fp, err := KeyFingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if fp != s.Fingerprint() || !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 {
		t.Errorf("fingerprint %q vs signer %q", fp, s.Fingerprint())
	}
	if _, err := LoadSigner(priv, []byte("wrong")); err == nil {
		t.Error("LoadSigner with the wrong password succeeded")
	}
	// cosign's own loader accepts the key, so `cosign sign --key` can use it.
	if _, err := cosign.LoadPrivateKey(priv, testPassword, nil); err != nil {
		t.Errorf("cosign.LoadPrivateKey: %v", err)
	}
}

func TestSignImageVerify(t *testing.T) {
	u := registrytest.NewUpstream(t)
	signer, pub := testKey(t, 0)
	_, otherPub := testKey(t, 1)
	img := pushTestImage(t, u, "library/app", "1")

	sig, ref, err := signer.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkClassicSignature(t, sig, img)
	if ref.ArtifactType != SignatureArtifactType || sig.ArtifactType != "" {
		t.Errorf("artifact types: sig %q, referrer %q", sig.ArtifactType, ref.ArtifactType)
	}
	pushArtifact(t, img.repo, sig, mustTag(t, SignatureTag, img.digest))

	t.Run("right key", func(t *testing.T) {
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		if err != nil {
			t.Fatal(err)
		}
		want := Verification{Signatures: 1, Verified: true, Signer: "key " + signer.Fingerprint(), Layout: LayoutSigTag}
		if v != want {
			t.Errorf("Verify = %+v, want %+v", v, want)
		}
	})
	t.Run("any of several keys", func(t *testing.T) {
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{otherPub, pub}, IgnoreTlog: true})
		if err != nil || v.Signer != "key "+signer.Fingerprint() {
			t.Fatalf("Verify = %+v, %v", v, err)
		}
	})
	t.Run("other key", func(t *testing.T) {
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{otherPub}, IgnoreTlog: true})
		wantErr(t, err, ErrBadSignature)
		if errorsIsNo(err) || v.Verified || v.Signatures != 1 || v.Layout != LayoutSigTag {
			t.Errorf("Verify = %+v, %v", v, err)
		}
	})
	t.Run("tlog required", func(t *testing.T) {
		// Offline, a signature without a Rekor entry cannot satisfy a
		// policy that demands one; nothing is looked up online.
		_, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}})
		wantErr(t, err, ErrBadSignature)
	})
	t.Run("unsigned", func(t *testing.T) {
		unsigned := pushTestImage(t, u, "library/app", "2")
		v, err := verifyErr(t, unsigned, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		wantErr(t, err, ErrNoSignature)
		if v.Signatures != 0 || v.Verified {
			t.Errorf("Verify = %+v", v)
		}
	})
	t.Run("signature of another digest", func(t *testing.T) {
		// Copy the valid .sig to another image's tag: the signature
		// verifies cryptographically but names the wrong digest.
		other := pushTestImage(t, u, "library/app", "3")
		pushArtifact(t, other.repo, sig, mustTag(t, SignatureTag, other.digest))
		_, err := verifyErr(t, other, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		wantErr(t, err, ErrBadSignature)
	})
	t.Run("cosign library accepts it", func(t *testing.T) {
		co := &cosign.CheckOpts{
			SigVerifier:        mustVerifier(t, pub),
			IgnoreTlog:         true,
			ClaimVerifier:      cosign.SimpleClaimVerifier,
			RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithContext(t.Context()))},
		}
		sigs, _, err := cosign.VerifyImageSignatures(t.Context(), img.repo.Digest(img.digest.String()), co)
		if err != nil || len(sigs) != 1 {
			t.Fatalf("VerifyImageSignatures = %d, %v", len(sigs), err)
		}
	})
	t.Run("bad policy", func(t *testing.T) {
		_, err := verifyErr(t, img, TrustPolicy{})
		if err == nil || errorsIsNo(err) || errorsIsBad(err) {
			t.Errorf("empty policy: %v", err)
		}
		_, err = verifyErr(t, img, TrustPolicy{Identities: []Identity{{Subject: "a", Issuer: "b"}}})
		if err == nil || errorsIsNo(err) || errorsIsBad(err) {
			t.Errorf("identity without trusted root: %v", err)
		}
	})
}

// checkClassicSignature checks the layout cosign expects behind a .sig tag.
func checkClassicSignature(t *testing.T, sig Artifact, img testImage) {
	t.Helper()
	if sig.Digest != digest.FromBytes(sig.Manifest) || sig.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("signature manifest %s / %s", sig.Digest, sig.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(sig.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != "application/vnd.oci.image.config.v1+json" || sig.Blobs[digest.Digest(m.Config.Digest.String())] == nil {
		t.Errorf("config %+v", m.Config)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers, want 1", len(m.Layers))
	}
	l := m.Layers[0]
	if l.MediaType != SimpleSigningMediaType || l.Annotations[SignatureAnnotation] == "" {
		t.Errorf("layer %+v", l)
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(sig.Blobs[digest.Digest(l.Digest.String())], &p); err != nil {
		t.Fatal(err)
	}
	if p.Critical.Type != payload.CosignSignatureType || p.Critical.Image.DockerManifestDigest != img.digest.String() ||
		p.Critical.Identity.DockerReference != img.dockerRef {
		t.Errorf("payload %+v", p.Critical)
	}
}

func TestSignImageMergesUpstreamSignatures(t *testing.T) {
	u := registrytest.NewUpstream(t)
	upstreamSigner, upstreamPub := testKey(t, 1)
	airlock, airlockPub := testKey(t, 0)
	img := pushTestImage(t, u, "team/svc", "v1")
	tag := mustTag(t, SignatureTag, img.digest)

	up, _, err := upstreamSigner.SignImage(img.digest, img.size, img.mediaType, "docker.io/team/svc", nil)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, up, tag)

	existing, err := FetchSignatures(t.Context(), img.repo, img.digest)
	if err != nil || existing == nil {
		t.Fatalf("FetchSignatures = %v, %v", existing, err)
	}
	if existing.Digest != up.Digest || !bytes.Equal(existing.Manifest, up.Manifest) || len(existing.Blobs) != len(up.Blobs) {
		t.Fatalf("FetchSignatures returned %s, pushed %s", existing.Digest, up.Digest)
	}

	merged, _, err := airlock.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, existing)
	if err != nil {
		t.Fatal(err)
	}
	if n := layerCount(t, merged); n != 2 {
		t.Fatalf("merged signature has %d layers, want 2", n)
	}
	// Re-signing with the merged manifest as "existing" replaces Airlock's
	// earlier signature instead of piling up copies.
	again, _, err := airlock.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, &merged)
	if err != nil {
		t.Fatal(err)
	}
	if n := layerCount(t, again); n != 2 {
		t.Fatalf("re-signed signature has %d layers, want 2", n)
	}
	pushArtifact(t, img.repo, again, tag)

	for name, pub := range map[string][]byte{"upstream key": upstreamPub, "airlock key": airlockPub} {
		v, err := verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
		if err != nil || !v.Verified || v.Signatures != 2 {
			t.Errorf("%s: Verify = %+v, %v", name, v, err)
		}
	}

	// A missing blob in "existing" is an error, not a silently dropped
	// upstream signature.
	broken := *existing
	broken.Blobs = map[digest.Digest][]byte{}
	if _, _, err := airlock.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, &broken); err == nil {
		t.Error("SignImage with missing existing blobs succeeded")
	}

	unsigned := pushTestImage(t, u, "team/svc", "v2")
	if a, err := FetchSignatures(t.Context(), unsigned.repo, unsigned.digest); err != nil || a != nil {
		t.Errorf("FetchSignatures(unsigned) = %v, %v", a, err)
	}
}

func layerCount(t *testing.T, a Artifact) int {
	t.Helper()
	m, err := v1.ParseManifest(bytes.NewReader(a.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if a.Blobs[digest.Digest(l.Digest.String())] == nil {
			t.Fatalf("blob of layer %s missing", l.Digest)
		}
	}
	return len(m.Layers)
}

func TestSignatureReferrer(t *testing.T) {
	u := registrytest.NewUpstream(t)
	signer, pub := testKey(t, 0)
	_, otherPub := testKey(t, 1)
	img := pushTestImage(t, u, "library/ref", "1")

	_, ref, err := signer.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m ociManifest
	if err := json.Unmarshal(ref.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest.String() != img.digest.String() || m.Subject.Size != img.size ||
		string(m.Subject.MediaType) != img.mediaType || m.ArtifactType != SignatureArtifactType ||
		string(m.Config.MediaType) != SignatureArtifactType {
		t.Fatalf("referrer manifest %s", ref.Manifest)
	}
	// Only the referrer, no .sig tag.
	pushArtifact(t, img.repo, ref, "")

	verifiesOnlyWith(t, img, pub, otherPub, Verification{Signatures: 1, Verified: true, Signer: "key " + signer.Fingerprint(), Layout: LayoutReferrers})
}

func TestAttest(t *testing.T) {
	u := registrytest.NewUpstream(t)
	signer, pub := testKey(t, 0)
	img := pushTestImage(t, u, "library/att", "1")

	spdx := []byte(`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app","packages":[{"name":"busybox","versionInfo":"1.36.1"}]}`)
	vuln := []byte(`{"invocation":{"parameters":null,"uri":"","event_id":"","builder.id":""},` +
		`"scanner":{"uri":"pkg:github/anchore/grype@0.90.0","version":"0.90.0","db":{"uri":"","version":"6"},"result":{"matches":[]}},` +
		`"metadata":{"scanStartedOn":"2025-01-01T00:00:00Z","scanFinishedOn":"2025-01-01T00:00:05Z"}}`)
	approval := []byte(`{"approvedBy":"gate","policyVersion":"7"}`)
	const approvalType = "https://airlock.dev/approval/v1"
	atts := []Attestation{
		{PredicateType: PredicateSPDX, Predicate: spdx},
		{PredicateType: PredicateVuln, Predicate: vuln},
		{PredicateType: approvalType, Predicate: approval},
	}
	att, refs, err := signer.Attest(img.digest, img.size, img.mediaType, img.dockerRef, atts)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != len(atts) {
		t.Fatalf("%d referrers, want %d", len(refs), len(atts))
	}
	pushArtifact(t, img.repo, att, mustTag(t, AttestationTag, img.digest))
	for _, r := range refs {
		pushArtifact(t, img.repo, r, "")
	}

	// cosign's own verifier, as `cosign verify-attestation --key` runs it.
	co := &cosign.CheckOpts{
		SigVerifier:        mustVerifier(t, pub),
		IgnoreTlog:         true,
		ClaimVerifier:      cosign.IntotoSubjectClaimVerifier,
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithContext(t.Context()))},
	}
	verified, _, err := cosign.VerifyImageAttestations(t.Context(), img.repo.Digest(img.digest.String()), co)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, s := range verified {
		p, err := s.Payload()
		if err != nil {
			t.Fatal(err)
		}
		var env ssldsse.Envelope
		if err := json.Unmarshal(p, &env); err != nil {
			t.Fatal(err)
		}
		stmt, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st in_toto.Statement
		if err := json.Unmarshal(stmt, &st); err != nil {
			t.Fatal(err)
		}
		if st.Type != in_toto.StatementInTotoV01 || len(st.Subject) != 1 ||
			st.Subject[0].Digest["sha256"] != img.digest.Encoded() || st.Subject[0].Name != img.dockerRef {
			t.Errorf("statement header %+v", st.StatementHeader)
		}
		got[st.PredicateType] = true
		ann, _ := s.Annotations()
		if ann[PredicateTypeAnnotation] != st.PredicateType {
			t.Errorf("layer annotation predicateType = %q, statement says %q", ann[PredicateTypeAnnotation], st.PredicateType)
		}
		switch st.PredicateType {
		case PredicateSPDX: // --type spdxjson decodes an SPDXStatement
			var s in_toto.SPDXStatement
			if err := json.Unmarshal(stmt, &s); err != nil {
				t.Error(err)
			}
		case PredicateVuln: // --type vuln decodes a CosignVulnStatement
			var s attestation.CosignVulnStatement
			if err := json.Unmarshal(stmt, &s); err != nil || s.Predicate.Scanner.Version != "0.90.0" {
				t.Errorf("vuln statement: %+v, %v", s.Predicate, err)
			}
		}
	}
	for _, a := range atts {
		if !got[a.PredicateType] {
			t.Errorf("predicate %s not verified; got %v", a.PredicateType, got)
		}
	}

	// The other key does not verify them.
	_, otherPub := testKey(t, 1)
	co.SigVerifier = mustVerifier(t, otherPub)
	if _, _, err := cosign.VerifyImageAttestations(t.Context(), img.repo.Digest(img.digest.String()), co); err == nil {
		t.Error("attestations verified with the wrong key")
	}

	// The referrers list them with their predicate types, and Verify does
	// not mistake attestations for signatures.
	idx, err := remote.Referrers(img.repo.Digest(img.digest.String()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range im.Manifests {
		if d.ArtifactType != AttestationArtifactType {
			t.Errorf("referrer artifactType %q", d.ArtifactType)
		}
		seen[d.Annotations[ReferrerPredicateTypeAnnotation]] = true
	}
	if len(im.Manifests) != len(atts) || !seen[PredicateSPDX] || !seen[PredicateVuln] || !seen[approvalType] {
		t.Errorf("referrers %+v", im.Manifests)
	}
	_, err = verifyErr(t, img, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	wantErr(t, err, ErrNoSignature)
}

func TestAttestRejectsBadPredicates(t *testing.T) {
	signer, _ := testKey(t, 0)
	d := digest.FromString("image")
	for name, a := range map[string]Attestation{
		"not json":         {PredicateType: PredicateSPDX, Predicate: []byte("{")},
		"no type":          {Predicate: []byte("{}")},
		"vuln wrong shape": {PredicateType: PredicateVuln, Predicate: []byte(`{"metadata":{"scanStartedOn":"yesterday"}}`)},
	} {
		if _, _, err := signer.Attest(d, 100, "application/vnd.oci.image.manifest.v1+json", "registry.example/app", []Attestation{a}); err == nil {
			t.Errorf("%s: Attest succeeded", name)
		}
	}
	if _, _, err := signer.Attest(d, 100, "application/vnd.oci.image.manifest.v1+json", "registry.example/app", nil); err == nil {
		t.Error("Attest without attestations succeeded")
	}
	if _, _, err := signer.SignImage("sha256:abc", 100, "application/vnd.oci.image.manifest.v1+json", "registry.example/app", nil); err == nil {
		t.Error("SignImage with a malformed digest succeeded")
	}
}

func TestTags(t *testing.T) {
	d := digest.FromString("x")
	if s, _ := SignatureTag(d); s != "sha256-"+d.Encoded()+".sig" {
		t.Errorf("SignatureTag = %q", s)
	}
	if s, _ := AttestationTag(d); s != "sha256-"+d.Encoded()+".att" {
		t.Errorf("AttestationTag = %q", s)
	}
	if _, err := SignatureTag(digest.SHA512.FromString("x")); err == nil {
		t.Error("sha512 digest accepted")
	}
}
