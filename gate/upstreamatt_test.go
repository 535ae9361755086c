package gate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
)

// attKeys caches test key pairs: scrypt makes each one cost about a second
// under -race.
var attKeys struct {
	sync.Mutex
	signers []*sign.Signer
	pubs    [][]byte
}

// attSigner returns the i-th cached key and its public key file in dir.
func attSigner(t *testing.T, i int) (*sign.Signer, string) {
	t.Helper()
	attKeys.Lock()
	for len(attKeys.signers) <= i {
		priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := sign.LoadSigner(priv, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		attKeys.signers = append(attKeys.signers, s)
		attKeys.pubs = append(attKeys.pubs, pub)
	}
	s, pub := attKeys.signers[i], attKeys.pubs[i]
	attKeys.Unlock()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("key%d.pub", i))
	if err := os.WriteFile(p, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return s, p
}

type attRawManifest struct {
	raw []byte
	mt  string
}

func (m attRawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m attRawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }

// pushUpstreamArtifact uploads a's blobs to repo on up and puts its manifest
// under tag (by digest when tag is "").
func pushUpstreamArtifact(t *testing.T, up *registrytest.Upstream, repo string, a sign.Artifact, tag string) {
	t.Helper()
	r, err := name.NewRepository(up.Host()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range a.Blobs {
		if err := remote.WriteLayer(r, static.NewLayer(b, types.OCILayer), remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
	}
	var ref name.Reference = r.Digest(a.Digest.String())
	if tag != "" {
		ref = r.Tag(tag)
	}
	if err := remote.Put(ref, attRawManifest{a.Manifest, a.MediaType}, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

// publishedImage is a vulnerable image pushed to the upstream.
type publishedImage struct {
	repo      string
	digest    digest.Digest
	size      int64
	mediaType string
}

func (p publishedImage) ref() state.Ref {
	return state.Ref{Upstream: "docker.io", Repository: p.repo, Digest: p.digest}
}

// pushVulnerable pushes an Alpine image with openssl 3.0.1-r0 (opensslCVE)
// and, with publisher set, the publisher's signature of it.
func pushVulnerable(t *testing.T, up *registrytest.Upstream, repo string, publisher *sign.Signer) publishedImage {
	t.Helper()
	img := registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "openssl", Version: "3.0.1-r0"}, registrytest.Pkg{Name: strings.ReplaceAll(repo, "/", "-"), Version: "1-r0"})
	d := up.PushImage(t, repo+":1", img)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	p := publishedImage{repo: repo, digest: digest.Digest(d.String()), size: int64(len(raw)), mediaType: string(mt)}
	if publisher != nil {
		sig, _, err := publisher.SignImage(p.digest, p.size, p.mediaType, up.Host()+"/"+repo, nil)
		if err != nil {
			t.Fatal(err)
		}
		pushUpstreamArtifact(t, up, repo, sig, attTagOf(t, sign.SignatureTag, p.digest))
	}
	return p
}

func attTagOf(t *testing.T, f func(digest.Digest) (string, error), d digest.Digest) string {
	t.Helper()
	s, err := f(d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openVEX is an OpenVEX document saying CVE-2026-3001 does not affect
// the image with digest product.
func openVEX(product digest.Digest) []byte {
	return []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://upstream.example/vex/1","author":"publisher",
	  "statements":[{"vulnerability":{"name":"CVE-2026-3001"},"products":[{"@id":"pkg:oci/app@` + strings.Replace(product.String(), ":", "%3A", 1) + `"}],
	  "status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`)
}

// upstreamAttest has s attest predicates about subject (as `cosign attest` does)
// and pushes them as the .att manifest of img.
func upstreamAttest(t *testing.T, up *registrytest.Upstream, img publishedImage, s *sign.Signer, subject digest.Digest, atts ...sign.Attestation) sign.Artifact {
	t.Helper()
	a, _, err := s.Attest(subject, img.size, img.mediaType, up.Host()+"/"+img.repo, atts)
	if err != nil {
		t.Fatal(err)
	}
	pushUpstreamArtifact(t, up, img.repo, a, attTagOf(t, sign.AttestationTag, img.digest))
	return a
}

func vexAtt(product digest.Digest) sign.Attestation {
	return sign.Attestation{PredicateType: "https://openvex.dev/ns/v0.2.0", Predicate: openVEX(product)}
}

// vexPipeline runs fetch, verify, scan, policy (and sign, with signer)
// with the signature rule mode and key file.
func vexPipeline(t *testing.T, up *registrytest.Upstream, rt http.RoundTripper, signer *sign.Signer, mode, keyFile string) *pipeline {
	t.Helper()
	return assemble(t, up, t.TempDir(), rt, newScanner(t, opensslCVE), signer, func(c *config.Config) {
		scanConfig(config.RescanRevoke)(c)
		c.Gate.Retry.MaxAttempts = 3
		c.Signatures = config.Signatures{Mode: config.VerifyNone, Rules: []config.SignatureRule{{Mode: mode, Keys: []string{keyFile}}}}
	})
}

func decideUpstream(t *testing.T, p *pipeline, img publishedImage, states ...state.State) state.Image {
	t.Helper()
	if _, err := p.engine.Request(img.ref(), "test"); err != nil {
		t.Fatal(err)
	}
	return waitFor(t, p.store, img.ref(), func(i state.Image) bool {
		for _, s := range states {
			if i.State == s {
				return true
			}
		}
		return false
	})
}

// TestUpstreamVEX: a critical CVE rejects the image unless the upstream
// attached an OpenVEX attestation, signed with the key of the image's
// signature rule, that says the image is not affected. A VEX for another
// product, an unsigned one, one signed by another key, one whose
// statement is about another digest, and any under signature mode none
// suppress nothing.
func TestUpstreamVEX(t *testing.T) {
	up := registrytest.NewUpstream(t)
	publisher, pubFile := attSigner(t, 1)
	stranger, _ := attSigner(t, 2)
	other := digest.FromString("another image")

	cases := []struct {
		name    string
		mode    string
		publish func(t *testing.T, img publishedImage)
		want    state.State
	}{
		{"signed VEX, not affected", config.VerifyRequired, func(t *testing.T, img publishedImage) {
			upstreamAttest(t, up, img, publisher, img.digest, vexAtt(img.digest))
		}, state.StateApproved},
		{"signed VEX, if-present", config.VerifyIfPresent, func(t *testing.T, img publishedImage) {
			upstreamAttest(t, up, img, publisher, img.digest, vexAtt(img.digest))
		}, state.StateApproved},
		{"no VEX", config.VerifyRequired, func(*testing.T, publishedImage) {}, state.StateRejected},
		{"VEX for another product", config.VerifyRequired, func(t *testing.T, img publishedImage) {
			upstreamAttest(t, up, img, publisher, img.digest, vexAtt(other))
		}, state.StateRejected},
		{"VEX signed by another key", config.VerifyRequired, func(t *testing.T, img publishedImage) {
			upstreamAttest(t, up, img, stranger, img.digest, vexAtt(img.digest))
		}, state.StateRejected},
		{"unsigned VEX", config.VerifyRequired, func(t *testing.T, img publishedImage) {
			pushAttLayers(t, up, img, unsignedEnvelope(t, img.digest, openVEX(img.digest)))
		}, state.StateRejected},
		{"statement about another digest", config.VerifyRequired, func(t *testing.T, img publishedImage) {
			upstreamAttest(t, up, img, publisher, other, vexAtt(img.digest))
		}, state.StateRejected},
		{"signature mode none", config.VerifyNone, func(t *testing.T, img publishedImage) {
			upstreamAttest(t, up, img, publisher, img.digest, vexAtt(img.digest))
		}, state.StateRejected},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := pushVulnerable(t, up, fmt.Sprintf("vex/up%d", i), publisher)
			tc.publish(t, img)
			p := vexPipeline(t, up, nil, nil, tc.mode, pubFile)
			got := decideUpstream(t, p, img, state.StateApproved, state.StateRejected, state.StateFailed)
			if got.State != tc.want {
				t.Fatalf("state %s (%s), want %s", got.State, got.Reason, tc.want)
			}
			switch tc.want {
			case state.StateRejected:
				if !strings.Contains(got.Reason, "CVE-2026-3001") {
					t.Errorf("reason %q does not name the CVE", got.Reason)
				}
			case state.StateApproved:
				if got.Policy == nil || len(got.Policy.Suppressed) != 1 {
					t.Fatalf("suppression not on the record: %+v", got.Policy)
				}
				s := got.Policy.Suppressed[0]
				for _, want := range []string{"CVE-2026-3001", "not_affected: vulnerable_code_not_in_execute_path", "VEX upstream attestation sha256:", "signed by key " + publisher.Fingerprint()} {
					if !strings.Contains(s, want) {
						t.Errorf("suppression %q lacks %q", s, want)
					}
				}
			}
		})
	}
}

// unsignedEnvelope is a DSSE envelope around a statement about d with no
// signature: what a publisher without the key can produce.
func unsignedEnvelope(t *testing.T, d digest.Digest, vexDoc []byte) []byte {
	t.Helper()
	stmt, err := json.Marshal(map[string]any{
		"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://openvex.dev/ns/v0.2.0",
		"subject":   []any{map[string]any{"digest": map[string]string{"sha256": d.Encoded()}}},
		"predicate": json.RawMessage(vexDoc),
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := json.Marshal(map[string]any{"payloadType": sign.InTotoPayloadType, "payload": stmt, "signatures": []any{}})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// attLayerDesc is one layer of a hand-built .att manifest.
type attLayerDesc struct {
	data []byte
	size int64 // claimed size; 0 for the real one
}

// pushAttLayers pushes a .att manifest of img with DSSE layers, as a
// publisher is free to write it.
func pushAttLayers(t *testing.T, up *registrytest.Upstream, img publishedImage, layers ...[]byte) []v1.Descriptor {
	t.Helper()
	var ds []attLayerDesc
	for _, l := range layers {
		ds = append(ds, attLayerDesc{data: l})
	}
	return pushAttDescs(t, up, img, ds)
}

func pushAttDescs(t *testing.T, up *registrytest.Upstream, img publishedImage, layers []attLayerDesc) []v1.Descriptor {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	cfg := []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`)
	blobs[digest.FromBytes(cfg)] = cfg
	m := map[string]any{
		"schemaVersion": 2, "mediaType": string(types.OCIManifestSchema1),
		"config": v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: attHash(digest.FromBytes(cfg)), Size: int64(len(cfg))},
	}
	var descs []v1.Descriptor
	for _, l := range layers {
		d := digest.FromBytes(l.data)
		blobs[d] = l.data
		size := int64(len(l.data))
		if l.size != 0 {
			size = l.size
		}
		descs = append(descs, v1.Descriptor{MediaType: sign.DSSEMediaType, Digest: attHash(d), Size: size,
			Annotations: map[string]string{sign.PredicateTypeAnnotation: "https://openvex.dev/ns/v0.2.0", sign.SignatureAnnotation: ""}})
	}
	m["layers"] = descs
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	pushUpstreamArtifact(t, up, img.repo, sign.Artifact{Manifest: raw, MediaType: string(types.OCIManifestSchema1), Digest: digest.FromBytes(raw), Blobs: blobs}, attTagOf(t, sign.AttestationTag, img.digest))
	return descs
}

func attHash(d digest.Digest) v1.Hash {
	h, _ := v1.NewHash(d.String())
	return h
}

// TestUpstreamVEXHostile: the publisher controls every byte of its .att
// manifest. A layer claiming more than the blob limit is never
// downloaded; junk layers are dropped and a genuine VEX after them still
// counts; a genuine VEX beyond the layers Airlock reads does not.
func TestUpstreamVEXHostile(t *testing.T) {
	up := registrytest.NewUpstream(t)
	publisher, pubFile := attSigner(t, 1)
	genuine := func(t *testing.T, img publishedImage) []byte {
		a, _, err := publisher.Attest(img.digest, img.size, img.mediaType, up.Host()+"/"+img.repo, []sign.Attestation{vexAtt(img.digest)})
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		if err := json.Unmarshal(a.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		return a.Blobs[digest.Digest(m.Layers[0].Digest.String())]
	}
	junk := func(img publishedImage, n int) []attLayerDesc {
		var out []attLayerDesc
		for i := range n {
			out = append(out, attLayerDesc{data: unsignedEnvelope(t, img.digest, []byte(fmt.Sprintf(`{"n":%d}`, i)))})
		}
		return out
	}

	t.Run("genuine VEX after junk", func(t *testing.T) {
		img := pushVulnerable(t, up, "hostile/after", publisher)
		huge := attLayerDesc{data: genuine(t, img), size: 1 << 30}
		// The oversized descriptor's real blob is a genuine VEX too: were it
		// downloaded despite its claimed size, it would verify.
		descs := pushAttDescs(t, up, img, append(append([]attLayerDesc{huge}, junk(img, 40)...), attLayerDesc{data: genuine(t, img)}))
		up.Reset()
		p := vexPipeline(t, up, nil, nil, config.VerifyRequired, pubFile)
		got := decideUpstream(t, p, img, state.StateApproved, state.StateRejected, state.StateFailed)
		if got.State != state.StateApproved {
			t.Fatalf("state %s (%s), want approved", got.State, got.Reason)
		}
		if n := up.CountBlobGETs(descs[0].Digest); n != 0 {
			t.Errorf("the layer claiming 1 GiB was downloaded %d times", n)
		}
	})
	t.Run("genuine VEX beyond the layers read", func(t *testing.T) {
		img := pushVulnerable(t, up, "hostile/beyond", publisher)
		descs := pushAttDescs(t, up, img, append(junk(img, 64), attLayerDesc{data: genuine(t, img)}))
		up.Reset()
		p := vexPipeline(t, up, nil, nil, config.VerifyRequired, pubFile)
		got := decideUpstream(t, p, img, state.StateApproved, state.StateRejected, state.StateFailed)
		if got.State != state.StateRejected {
			t.Fatalf("state %s (%s), want rejected", got.State, got.Reason)
		}
		if n := up.CountBlobGETs(descs[64].Digest); n != 0 {
			t.Errorf("the 65th layer was downloaded %d times", n)
		}
	})
}

// failAttestations answers 503 for every request about an image's
// cosign attestations: an upstream that is down for them.
type failAttestations struct{ next http.RoundTripper }

func (f failAttestations) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, ".att") {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: io.NopCloser(strings.NewReader("down")), Header: http.Header{}, Request: r}, nil
	}
	return f.next.RoundTrip(r)
}

// TestUpstreamVEXUnreachable: when the upstream's attestations cannot be
// read, the policy step fails (and is retried) rather than deciding
// without the VEX.
func TestUpstreamVEXUnreachable(t *testing.T) {
	up := registrytest.NewUpstream(t)
	publisher, pubFile := attSigner(t, 1)
	img := pushVulnerable(t, up, "vex/down", publisher)
	upstreamAttest(t, up, img, publisher, img.digest, vexAtt(img.digest))
	p := vexPipeline(t, up, failAttestations{http.DefaultTransport}, nil, config.VerifyRequired, pubFile)
	got := decideUpstream(t, p, img, state.StateApproved, state.StateRejected, state.StateFailed)
	if got.State != state.StateFailed || !strings.Contains(got.Reason, "upstream VEX attestations") {
		t.Fatalf("state %s (%s), want failed on the VEX attestations", got.State, got.Reason)
	}
}

// TestUpstreamAttestationsServed: with signing on, the publisher's
// verified SBOM, provenance and VEX attestations are stored next to
// Airlock's: their layers come first in Airlock's .att manifest, each has
// a referrer of its own, and everything is linked to the image as
// Airlock's artifacts (so served exactly while it is approved). An
// attestation of a predicate type Airlock does not keep is not.
func TestUpstreamAttestationsServed(t *testing.T) {
	up := registrytest.NewUpstream(t)
	airlock, _ := attSigner(t, 0)
	publisher, pubFile := attSigner(t, 1)
	img := pushVulnerable(t, up, "served/app", publisher)
	upAtt := upstreamAttest(t, up, img, publisher, img.digest,
		vexAtt(img.digest),
		sign.Attestation{PredicateType: sign.PredicateSPDX, Predicate: []byte(`{"spdxVersion":"SPDX-2.3","name":"from-the-publisher"}`)},
		sign.Attestation{PredicateType: sign.PredicateSLSAProvenance1, Predicate: []byte(`{"buildDefinition":{"buildType":"https://publisher.example/build"}}`)},
		sign.Attestation{PredicateType: "https://publisher.example/custom", Predicate: []byte(`{}`)},
	)
	p := vexPipeline(t, up, nil, airlock, config.VerifyRequired, pubFile)
	got := decideUpstream(t, p, img, state.StateApproved, state.StateRejected, state.StateFailed)
	if got.State != state.StateApproved || got.Signed == nil {
		t.Fatalf("state %s (%s), signed %v", got.State, got.Reason, got.Signed != nil)
	}
	ctx := context.Background()
	raw, err := p.content.Get(ctx, got.Signed.Att.Digest)
	if err != nil {
		t.Fatal(err)
	}
	var att v1.Manifest
	if err := json.Unmarshal(raw, &att); err != nil {
		t.Fatal(err)
	}
	var upM v1.Manifest
	if err := json.Unmarshal(upAtt.Manifest, &upM); err != nil {
		t.Fatal(err)
	}
	// The publisher's first three layers, unchanged, then Airlock's own.
	if len(att.Layers) < 4 {
		t.Fatalf(".att has %d layers", len(att.Layers))
	}
	for i := range 3 {
		if att.Layers[i].Digest != upM.Layers[i].Digest {
			t.Errorf(".att layer %d is %s, want the publisher's %s", i, att.Layers[i].Digest, upM.Layers[i].Digest)
		}
	}
	for _, l := range att.Layers[3:] {
		if l.Digest == upM.Layers[3].Digest {
			t.Error("the publisher's custom attestation is served")
		}
	}
	// Served through the serving rule, exactly as the proxy decides.
	serves := func(blob bool, d digest.Digest) bool {
		t.Helper()
		decide := p.store.ManifestDecision
		if blob {
			decide = p.store.BlobDecision
		}
		dec, err := decide("docker.io", img.repo, d)
		if err != nil {
			t.Fatal(err)
		}
		return dec.Serve
	}
	for i := range 3 {
		if !serves(true, digest.Digest(upM.Layers[i].Digest.String())) {
			t.Errorf("publisher layer %d is not served", i)
		}
	}
	if serves(true, digest.Digest(upM.Layers[3].Digest.String())) {
		t.Error("the publisher's custom attestation layer is served")
	}
	upstreamRefs := 0
	for _, r := range got.Signed.Referrers {
		b, err := p.content.Get(ctx, r.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(sign.UpstreamSignerAnnotation)) {
			continue
		}
		upstreamRefs++
		if !serves(false, r.Digest) || !bytes.Contains(b, []byte("key "+publisher.Fingerprint())) {
			t.Errorf("upstream referrer %s not served or not naming the publisher's key", r.Digest)
		}
	}
	if upstreamRefs != 3 {
		t.Errorf("%d upstream referrers, want 3", upstreamRefs)
	}
	// Revoked: none of it is served any more.
	if _, err := p.engine.Revoke(got.Ref, "test", "withdrawn"); err != nil {
		t.Fatal(err)
	}
	if serves(true, digest.Digest(upM.Layers[0].Digest.String())) || serves(false, got.Signed.Att.Digest) {
		t.Error("the publisher's attestations are served after revocation")
	}
}
