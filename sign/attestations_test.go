package sign

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// stmtFor is an in-toto v0.1 statement about d, as `cosign attest` writes it.
func stmtFor(t *testing.T, d digest.Digest, predicateType string, predicate any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": predicateType,
		"subject":       []any{map[string]any{"name": "upstream.example/app", "digest": map[string]string{"sha256": d.Encoded()}}},
		"predicate":     predicate,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envelope signs stmt with sv as a DSSE envelope, as `cosign attest` does.
func envelope(t *testing.T, sv signature.Signer, stmt []byte) []byte {
	t.Helper()
	env, err := dsse.WrapSigner(sv, InTotoPayloadType).SignMessage(bytes.NewReader(stmt))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// attLayer is a classic attestation layer holding env.
func attLayer(env []byte, predicateType string) layer {
	return layer{data: env, mediaType: DSSEMediaType, annotations: map[string]string{PredicateTypeAnnotation: predicateType, SignatureAnnotation: ""}}
}

// pushAtt pushes layers as img's classic .att manifest.
func pushAtt(t *testing.T, img testImage, layers ...layer) Artifact {
	t.Helper()
	ci, err := classicImage(layers)
	if err != nil {
		t.Fatal(err)
	}
	a, err := imageArtifact(ci)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, a, mustTag(t, AttestationTag, img.digest))
	return a
}

// pushAttReferrer pushes layers as a cosign OCI 1.1 attestation referrer of img.
func pushAttReferrer(t *testing.T, img testImage, layers ...layer) {
	t.Helper()
	subject, err := subjectDescriptor(img.digest, img.size, img.mediaType)
	if err != nil {
		t.Fatal(err)
	}
	r, err := referrerArtifact(InTotoPayloadType, subject, "", nil, layers, nil)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, r, "")
}

func spdxDoc(name string) map[string]any {
	return map[string]any{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": name}
}

func vexDoc(d digest.Digest) map[string]any {
	return map[string]any{
		"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://upstream.example/vex/1", "author": "upstream",
		"statements": []any{map[string]any{
			"vulnerability": map[string]any{"name": "CVE-2026-3001"},
			"products":      []any{map[string]any{"@id": "pkg:oci/app@" + d.String()}},
			"status":        "not_affected", "justification": "vulnerable_code_not_present",
		}},
	}
}

func byType(kept []UpstreamAttestation) map[string]UpstreamAttestation {
	m := map[string]UpstreamAttestation{}
	for _, a := range kept {
		m[a.PredicateType] = a
	}
	return m
}

// TestVerifiedAttestationsLayouts: the publisher's SBOM, VEX and
// provenance attestations are read from the classic .att tag, from cosign
// OCI 1.1 attestation referrers and from Sigstore bundles, verified, and
// kept with what it takes to serve them; other predicate types, and
// everything under a key nobody trusts, are dropped with a reason.
func TestVerifiedAttestationsLayouts(t *testing.T) {
	u := registrytest.NewUpstream(t)
	publisher, pub := testKey(t, 1)
	_, otherPub := testKey(t, 2)
	img := pushTestImage(t, u, "att/app", "v1")

	// Classic .att, written by Attest exactly as `cosign attest` writes it.
	att, _, err := publisher.Attest(img.digest, img.size, img.mediaType, img.dockerRef, []Attestation{
		{PredicateType: PredicateSPDX, Predicate: mustJSON(t, spdxDoc("app"))},
		{PredicateType: "https://openvex.dev/ns/v0.2.0", Predicate: mustJSON(t, vexDoc(img.digest))},
		{PredicateType: PredicateSLSAProvenance1, Predicate: []byte(`{"buildDefinition":{"buildType":"https://example.com/build"}}`)},
		{PredicateType: "https://example.com/custom/v1", Predicate: []byte(`{}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, att, mustTag(t, AttestationTag, img.digest))
	// A cosign OCI 1.1 attestation referrer (CycloneDX).
	cdx := stmtFor(t, img.digest, PredicateCycloneDX, map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5"})
	pushAttReferrer(t, img, attLayer(envelope(t, publisher.sv, cdx), PredicateCycloneDX))
	// A key-signed Sigstore bundle (SLSA v0.2), as cosign v3 writes it.
	prov := stmtFor(t, img.digest, PredicateSLSAProvenance02, map[string]any{"builder": map[string]any{"id": "https://example.com/builder"}})
	pushBundle(t, img, publisher.sv, publisher.PublicKeyPEM(), prov, PredicateSLSAProvenance02)

	kept, dropped, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	got := byType(kept)
	want := map[string]string{
		PredicateSPDX:                   LayoutAttTag,
		"https://openvex.dev/ns/v0.2.0": LayoutAttTag,
		PredicateSLSAProvenance1:        LayoutAttTag,
		PredicateCycloneDX:              LayoutReferrers,
		PredicateSLSAProvenance02:       LayoutReferrers,
	}
	if len(kept) != len(want) {
		t.Errorf("kept %d attestations, want %d; dropped %q", len(kept), len(want), dropped)
	}
	for pt, layout := range want {
		a, ok := got[pt]
		switch {
		case !ok:
			t.Errorf("%s not kept; dropped %q", pt, dropped)
		case a.Layout != layout || a.Signer != "key "+publisher.Fingerprint():
			t.Errorf("%s: layout %s signer %s", pt, a.Layout, a.Signer)
		case a.Envelope == nil || a.Annotations[PredicateTypeAnnotation] != pt || a.NotServed != "":
			t.Errorf("%s: not servable: %q %v", pt, a.NotServed, a.Annotations)
		case !json.Valid(a.Predicate) || !bytes.Contains(a.Statement, []byte(img.digest.Encoded())):
			t.Errorf("%s: statement %s", pt, a.Statement)
		}
	}
	if v := got["https://openvex.dev/ns/v0.2.0"]; !bytes.Contains(v.Predicate, []byte("CVE-2026-3001")) {
		t.Errorf("VEX predicate %s", v.Predicate)
	}
	if len(dropped) != 1 || !strings.Contains(dropped[0], "https://example.com/custom/v1") {
		t.Errorf("dropped %q, want the custom predicate", dropped)
	}

	// Under a key nobody used, nothing is kept and each says why.
	kept, dropped, err = VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{otherPub}, IgnoreTlog: true})
	if err != nil || len(kept) != 0 {
		t.Fatalf("other key: kept %d, err %v", len(kept), err)
	}
	if n := countContaining(dropped, "does not verify"); n != len(want) {
		t.Errorf("other key: %d dropped as not verifying, want %d: %q", n, len(want), dropped)
	}
	// A policy wanting a transparency-log entry keeps none of these.
	if kept, _, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}}); err != nil || len(kept) != 0 {
		t.Errorf("tlog required: kept %d, err %v", len(kept), err)
	}
	// No attestations at all: nothing, and no error.
	bare := pushTestImage(t, u, "att/bare", "v1")
	if kept, dropped, err := VerifiedAttestations(t.Context(), bare.repo, bare.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true}); len(kept)+len(dropped) != 0 || err != nil {
		t.Errorf("bare image: kept %d dropped %q err %v", len(kept), dropped, err)
	}
	if _, _, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{}); err == nil {
		t.Error("no trust material: no error")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countContaining(list []string, s string) int {
	n := 0
	for _, l := range list {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// TestVerifiedAttestationsHostile: a publisher's .att manifest holds one
// genuine attestation and everything else a publisher could put there;
// only the genuine one is kept, each other layer is dropped for its own
// reason, and oversized layers are never downloaded.
func TestVerifiedAttestationsHostile(t *testing.T) {
	u := registrytest.NewUpstream(t)
	publisher, pub := testKey(t, 1)
	stranger, _ := testKey(t, 2)
	img := pushTestImage(t, u, "hostile/app", "v1")
	other := pushTestImage(t, u, "hostile/app", "v2")

	good := envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("good")))
	forged := func() []byte {
		var e dsseEnvelope
		if err := json.Unmarshal(envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("signed"))), &e); err != nil {
			t.Fatal(err)
		}
		// The publisher's signature over one statement, another statement.
		var o dsseEnvelope
		if err := json.Unmarshal(envelope(t, stranger.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("swapped"))), &o); err != nil {
			t.Fatal(err)
		}
		e.Payload = o.Payload
		return mustJSON(t, e)
	}()
	unsigned := mustJSON(t, dsseEnvelope{PayloadType: InTotoPayloadType, Payload: b64(stmtFor(t, img.digest, PredicateSPDX, spdxDoc("unsigned")))})
	notInToto := mustJSON(t, dsseEnvelope{PayloadType: "application/json", Payload: b64([]byte(`{}`))})
	noStatement := envelope(t, publisher.sv, []byte(`["not","a","statement"]`))

	cases := []struct {
		l    layer
		why  string
		size int64 // descriptor size to claim, if not the real one
	}{
		{attLayer(good, PredicateSPDX), "", 0},
		{attLayer(envelope(t, publisher.sv, stmtFor(t, other.digest, PredicateSPDX, spdxDoc("other"))), PredicateSPDX), "statement subject is not", 0},
		{attLayer(envelope(t, stranger.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("stranger"))), PredicateSPDX), "does not verify", 0},
		{attLayer(forged, PredicateSPDX), "does not verify", 0},
		{attLayer(unsigned, PredicateSPDX), "does not verify", 0},
		{attLayer(notInToto, PredicateSPDX), "payload type", 0},
		{attLayer(noStatement, PredicateSPDX), "not an in-toto statement", 0},
		// A genuine envelope whose layer claims another media type.
		{layer{data: envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("tar"))), mediaType: string(types.OCILayer)}, "not a DSSE envelope", 0},
		// A genuine envelope labelled SPDX but signed as something else:
		// the label is the upstream's, the statement decides.
		{attLayer(envelope(t, publisher.sv, stmtFor(t, img.digest, "https://example.com/anything", map[string]any{})), PredicateSPDX), "is not an SBOM", 0},
		// A descriptor claiming more than the limit: never downloaded.
		{attLayer(envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("huge"))), PredicateSPDX), "size", maxAttestationBlob + 1},
		// Annotations beyond the bound.
		{layer{data: envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("ann"))), mediaType: DSSEMediaType,
			annotations: map[string]string{certificateAnnotation: strings.Repeat("A", maxMergedAnnotation)}}, "annotations of", 0},
	}
	var layers []layer
	for _, c := range cases {
		layers = append(layers, c.l)
	}
	a := pushAtt(t, img, layers...)
	// Rewrite the manifest's claimed sizes where a case asks for it.
	m, err := parseManifest(a.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var huge v1.Hash
	for i, c := range cases {
		if c.size != 0 {
			m.Layers[i].Size = c.size
			huge = m.Layers[i].Digest
		}
	}
	raw := mustJSON(t, m)
	if err := remote.Put(img.repo.Tag(mustTag(t, AttestationTag, img.digest)), rawManifest{raw, string(types.OCIManifestSchema1)}, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}

	u.Reset()
	kept, dropped, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || !bytes.Equal(kept[0].Envelope, good) {
		t.Fatalf("kept %d, want the one genuine attestation; dropped %q", len(kept), dropped)
	}
	if len(dropped) != len(cases)-1 {
		t.Errorf("dropped %d, want %d: %q", len(dropped), len(cases)-1, dropped)
	}
	for i, c := range cases[1:] {
		if i >= len(dropped) || !strings.Contains(dropped[i], c.why) {
			t.Errorf("layer %d: dropped %q, want %q", i+2, at(dropped, i), c.why)
		}
	}
	if n := u.CountBlobGETs(huge); n != 0 {
		t.Errorf("the oversized layer was downloaded %d times", n)
	}
}

func at(list []string, i int) string {
	if i < len(list) {
		return list[i]
	}
	return ""
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestVerifiedAttestationsBounds: many genuine attestations keep at most
// MaxUpstreamAttestations, read at most maxAttestationLayers layers of a
// manifest, and download nothing once the cap is reached.
func TestVerifiedAttestationsBounds(t *testing.T) {
	u := registrytest.NewUpstream(t)
	publisher, pub := testKey(t, 1)
	img := pushTestImage(t, u, "many/app", "v1")
	var layers []layer
	for i := range maxAttestationLayers + 36 {
		layers = append(layers, attLayer(envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc(fmt.Sprint(i)))), PredicateSPDX))
	}
	a := pushAtt(t, img, layers...)
	u.Reset()
	kept, dropped, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != MaxUpstreamAttestations {
		t.Errorf("kept %d, want %d", len(kept), MaxUpstreamAttestations)
	}
	// 48 layers over the cap (one line each, up to maxDroppedReasons, then a
	// count) and one line for the 36 layers never read.
	if n := countContaining(dropped, "more than"); n != maxDroppedReasons {
		t.Errorf("%d lines about the cap: %q", n, dropped)
	}
	if last := dropped[len(dropped)-1]; last != fmt.Sprintf("and %d more", maxAttestationLayers-MaxUpstreamAttestations-maxDroppedReasons+1) {
		t.Errorf("last reason %q", last)
	}
	m, err := parseManifest(a.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	fetched := 0
	for _, l := range m.Layers {
		fetched += u.CountBlobGETs(l.Digest)
	}
	if fetched != MaxUpstreamAttestations {
		t.Errorf("%d layer blobs downloaded, want %d", fetched, MaxUpstreamAttestations)
	}
}

// TestVerifiedAttestationsKeyless: a keyless classic attestation verifies
// against the identity and is served; a keyless bundle verifies and
// counts (as VEX evidence) but is not served, and says why.
func TestVerifiedAttestationsKeyless(t *testing.T) {
	const (
		subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
		issuer  = "https://token.actions.githubusercontent.com"
	)
	u := registrytest.NewUpstream(t)
	ca := newTestCA(t, "airlock-test-fulcio")
	sv, certPEM := ca.issue(t, subject, issuer)
	policy := TrustPolicy{Identities: []Identity{{Subject: subject, Issuer: issuer}}, TrustedRootJSON: ca.trustedRoot(t), IgnoreTlog: true, IgnoreSCT: true}
	img := pushTestImage(t, u, "keyless/att", "v1")

	l := attLayer(envelope(t, sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("keyless"))), PredicateSPDX)
	l.annotations[certificateAnnotation] = string(certPEM)
	l.annotations[chainAnnotation] = string(ca.pem)
	l.annotations["org.example/extra"] = "dropped from what is served"
	pushAtt(t, img, l)
	pushBundle(t, img, sv, certPEM, stmtFor(t, img.digest, PredicateOpenVEX, vexDoc(img.digest)), PredicateOpenVEX)

	kept, dropped, err := VerifiedAttestations(t.Context(), img.repo, img.digest, policy)
	if err != nil {
		t.Fatal(err)
	}
	got := byType(kept)
	if len(kept) != 2 {
		t.Fatalf("kept %d, dropped %q", len(kept), dropped)
	}
	wantSigner := subject + " (issuer " + issuer + ")"
	sbom, vex := got[PredicateSPDX], got[PredicateOpenVEX]
	if sbom.Signer != wantSigner || sbom.Envelope == nil || sbom.Annotations[certificateAnnotation] != string(certPEM) || sbom.Annotations["org.example/extra"] != "" {
		t.Errorf("keyless classic: %+v", sbom.Annotations)
	}
	if vex.Signer != wantSigner || vex.Envelope != nil || !strings.Contains(vex.NotServed, "keyless") || vex.Layout != LayoutReferrers {
		t.Errorf("keyless bundle: signer %q served %v (%s)", vex.Signer, vex.Envelope != nil, vex.NotServed)
	}
	// Another identity: nothing.
	other := policy
	other.Identities = []Identity{{Subject: "https://github.com/evil/app", Issuer: issuer}}
	if kept, _, err := VerifiedAttestations(t.Context(), img.repo, img.digest, other); err != nil || len(kept) != 0 {
		t.Errorf("other identity: kept %d, %v", len(kept), err)
	}
}

// TestVerifiedAttestationsUpstreamDown: an unreachable upstream is an
// error (the policy step retries), not "no attestations".
func TestVerifiedAttestationsUpstreamDown(t *testing.T) {
	u := registrytest.NewUpstream(t)
	_, pub := testKey(t, 1)
	img := pushTestImage(t, u, "down/app", "v1")
	u.Stop()
	_, _, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err == nil {
		t.Fatal("no error from a stopped upstream")
	}
}

// TestMergeAttestations: verified upstream attestations are merged into
// Airlock's .att before Airlock's own, and cosign's library verifies the
// publisher's SBOM with the publisher's key and Airlock's with Airlock's,
// from the merged manifest in a registry; each upstream attestation also
// gets a referrer.
func TestMergeAttestations(t *testing.T) {
	u := registrytest.NewUpstream(t)
	airlock, airlockPub := testKey(t, 0)
	publisher, pub := testKey(t, 1)
	img := pushTestImage(t, u, "merge/app", "v1")
	upAtt, _, err := publisher.Attest(img.digest, img.size, img.mediaType, img.dockerRef, []Attestation{{PredicateType: PredicateSPDX, Predicate: mustJSON(t, spdxDoc("publisher"))}})
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, upAtt, mustTag(t, AttestationTag, img.digest))
	pushBundle(t, img, publisher.sv, publisher.PublicKeyPEM(), stmtFor(t, img.digest, PredicateCycloneDX, map[string]any{"bomFormat": "CycloneDX"}), PredicateCycloneDX)
	kept, _, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil || len(kept) != 2 {
		t.Fatalf("kept %d, %v", len(kept), err)
	}
	own, _, err := airlock.Attest(img.digest, img.size, img.mediaType, img.dockerRef, []Attestation{{PredicateType: PredicateSPDX, Predicate: mustJSON(t, spdxDoc("airlock"))}})
	if err != nil {
		t.Fatal(err)
	}
	merged, refs, err := MergeAttestations(img.digest, img.size, img.mediaType, own, kept)
	if err != nil {
		t.Fatal(err)
	}
	if layerCount(t, merged) != 3 || len(refs) != 2 {
		t.Fatalf("merged %d layers, %d referrers", layerCount(t, merged), len(refs))
	}
	for _, r := range refs {
		m, err := parseManifest(r.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == nil || m.Subject.Digest.String() != img.digest.String() || m.Annotations[UpstreamSignerAnnotation] != "key "+publisher.Fingerprint() || r.ArtifactType != AttestationArtifactType {
			t.Errorf("referrer %s: %+v", r.Digest, m)
		}
	}

	// Serve the merged manifest from another registry, as Airlock would,
	// and verify it with cosign's library the way the CLI does.
	served := registrytest.NewUpstream(t)
	simg := pushTestImageFrom(t, served, img)
	pushArtifact(t, simg.repo, merged, mustTag(t, AttestationTag, img.digest))
	verified := func(pubPEM []byte) map[string]int {
		co := &cosign.CheckOpts{SigVerifier: mustVerifier(t, pubPEM), IgnoreTlog: true, ClaimVerifier: cosign.IntotoSubjectClaimVerifier,
			RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithContext(t.Context()))}}
		atts, _, err := cosign.VerifyImageAttestations(t.Context(), simg.repo.Digest(img.digest.String()), co)
		if err != nil {
			t.Fatalf("cosign.VerifyImageAttestations: %v", err)
		}
		out := map[string]int{}
		for _, a := range atts {
			p, _ := a.Payload()
			var e dsseEnvelope
			_ = json.Unmarshal(p, &e)
			raw, _ := base64.StdEncoding.DecodeString(e.Payload)
			var st inTotoStatement
			_ = json.Unmarshal(raw, &st)
			out[st.PredicateType]++
			if bytes.Contains(raw, []byte(`"name":"publisher"`)) {
				out["publisher"]++
			}
		}
		return out
	}
	if got := verified(pub); got[PredicateSPDX] != 1 || got[PredicateCycloneDX] != 1 || got["publisher"] != 1 {
		t.Errorf("with the publisher's key: %v", got)
	}
	if got := verified(airlockPub); got[PredicateSPDX] != 1 || got[PredicateCycloneDX] != 0 || got["publisher"] != 0 {
		t.Errorf("with Airlock's key: %v", got)
	}

	// Nothing servable: Airlock's manifest unchanged.
	same, refs, err := MergeAttestations(img.digest, img.size, img.mediaType, own, []UpstreamAttestation{{PredicateType: PredicateOpenVEX, NotServed: "keyless"}})
	if err != nil || same.Digest != own.Digest || len(refs) != 0 {
		t.Errorf("nothing to merge: digest %s vs %s, %d referrers, %v", same.Digest, own.Digest, len(refs), err)
	}
}

// pushTestImageFrom copies img's manifest and blobs into another registry.
func pushTestImageFrom(t *testing.T, to *registrytest.Upstream, img testImage) testImage {
	t.Helper()
	src, err := remote.Image(img.repo.Digest(img.digest.String()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	repo := img.repo.RepositoryStr()
	to.PushImage(t, repo+":copy", src)
	out := img
	out.repo = to.Ref(t, repo+":copy").Context()
	return out
}

// TestVerifiedAttestationsReferrerBounds: of a referrers list the
// publisher floods, at most maxAttestationReferrers are read; a referrer
// advertising a manifest over the limit is not fetched; a genuine
// attestation within the bound is still kept.
func TestVerifiedAttestationsReferrerBounds(t *testing.T) {
	u := registrytest.NewUpstream(t)
	publisher, pub := testKey(t, 1)
	img := pushTestImage(t, u, "flood/app", "v1")
	subject, err := subjectDescriptor(img.digest, img.size, img.mediaType)
	if err != nil {
		t.Fatal(err)
	}
	var digests []digest.Digest
	push := func(l layer) {
		r, err := referrerArtifact(InTotoPayloadType, subject, "", nil, []layer{l}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pushArtifact(t, img.repo, r, "")
		digests = append(digests, r.Digest)
	}
	push(attLayer(envelope(t, publisher.sv, stmtFor(t, img.digest, PredicateSPDX, spdxDoc("genuine"))), PredicateSPDX))
	for i := range maxAttestationReferrers + 5 {
		push(attLayer(mustJSON(t, dsseEnvelope{PayloadType: InTotoPayloadType, Payload: b64(stmtFor(t, img.digest, PredicateSPDX, spdxDoc(fmt.Sprint("junk", i))))}), PredicateSPDX))
	}
	// Claim a huge size for the second referrer in the fallback index.
	fallback := img.repo.Tag(strings.Replace(img.digest.String(), ":", "-", 1))
	desc, err := remote.Get(fallback, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(desc.Manifest, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != len(digests) {
		t.Fatalf("fallback index lists %d referrers, want %d", len(idx.Manifests), len(digests))
	}
	// The genuine one first, as the publisher may order it.
	for i, m := range idx.Manifests {
		if m.Digest.String() == digests[0].String() {
			idx.Manifests[0], idx.Manifests[i] = idx.Manifests[i], idx.Manifests[0]
		}
	}
	idx.Manifests[1].Size = 1 << 30
	if err := remote.Put(fallback, rawManifest{mustJSON(t, idx), string(types.OCIImageIndex)}, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}

	u.Reset()
	kept, dropped, err := VerifiedAttestations(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].Layout != LayoutReferrers {
		t.Fatalf("kept %d, want the genuine referrer", len(kept))
	}
	// 1 oversized + 62 junk + 1 line for those beyond the limit: 32 listed
	// and a count.
	if len(dropped) != maxDroppedReasons+1 || dropped[len(dropped)-1] != "and 32 more" {
		t.Errorf("dropped %d: %q", len(dropped), dropped)
	}
	manifestGETs := func(d v1.Hash) int {
		return u.Count("GET", "/v2/"+img.repo.RepositoryStr()+"/manifests/"+d.String())
	}
	if n := manifestGETs(idx.Manifests[1].Digest); n != 0 {
		t.Errorf("the referrer advertising 1 GiB was fetched %d times", n)
	}
	for _, m := range idx.Manifests[maxAttestationReferrers:] {
		if n := manifestGETs(m.Digest); n != 0 {
			t.Errorf("referrer %s beyond the limit was fetched %d times", m.Digest, n)
		}
	}
	if n := manifestGETs(idx.Manifests[2].Digest); n != 1 {
		t.Errorf("a referrer within the limit was fetched %d times, want 1 (the check can fail)", n)
	}
}
