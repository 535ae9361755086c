package sign

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// sigLayer is a classic signature layer by s over a payload naming d.
func sigLayer(t *testing.T, s *Signer, dockerRef string, d digest.Digest) layer {
	t.Helper()
	ref, err := name.NewDigest(dockerRef + "@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.sv.SignMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return layer{data: body, mediaType: SimpleSigningMediaType, annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(raw)}}
}

// TestVerifiedSignaturesDropsHostileLayers: a publisher's .sig manifest
// holds one real signature and everything else a publisher could put
// there; only the real one survives, and merging it with Airlock's own
// signature stores nothing else.
func TestVerifiedSignaturesDropsHostileLayers(t *testing.T) {
	u := registrytest.NewUpstream(t)
	publisher, publisherPub := testKey(t, 1)
	stranger, _ := testKey(t, 2)
	airlock, _ := testKey(t, 0)
	img := pushTestImage(t, u, "team/svc", "v1")
	other := pushTestImage(t, u, "team/svc", "v2")
	otherManifest, err := remoteManifest(t, other)
	if err != nil {
		t.Fatal(err)
	}

	good := sigLayer(t, publisher, "docker.io/team/svc", img.digest)
	// Distinct bytes: layers with equal digests collapse into one.
	asTar := sigLayer(t, publisher, "docker.io/team/tar", img.digest)
	asTar.mediaType = "application/vnd.oci.image.layer.v1.tar"
	layers := []layer{
		good,
		sigLayer(t, publisher, "docker.io/team/svc", other.digest), // names another image
		sigLayer(t, stranger, "docker.io/team/svc", img.digest),    // a key nobody trusts
		// Another image's manifest dressed as a signature.
		{data: otherManifest, mediaType: SimpleSigningMediaType, annotations: good.annotations},
		// A real signature payload with a layer media type.
		asTar,
		// A valid payload with a forged signature.
		{data: sigLayer(t, publisher, "docker.io/team/forged", img.digest).data, mediaType: SimpleSigningMediaType, annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString([]byte("forged"))}},
	}
	hostile, err := classicImage(layers)
	if err != nil {
		t.Fatal(err)
	}
	a, err := imageArtifact(hostile)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, a, mustTag(t, SignatureTag, img.digest))

	trust := TrustPolicy{Keys: [][]byte{publisherPub}, IgnoreTlog: true}
	kept, dropped, err := VerifiedSignatures(t.Context(), img.repo, img.digest, trust)
	if err != nil {
		t.Fatal(err)
	}
	if kept == nil || layerCount(t, *kept) != 1 || len(dropped) != len(layers)-1 {
		t.Fatalf("kept %v, dropped %d: %q", kept != nil, len(dropped), dropped)
	}
	merged, _, err := airlock.SignImage(img.digest, img.size, img.mediaType, img.dockerRef, kept)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(merged.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		b := merged.Blobs[digest.Digest(l.Digest.String())]
		if bytes.Equal(b, otherManifest) || string(l.MediaType) != SimpleSigningMediaType {
			t.Errorf("merged signature carries a hostile layer %s (%s)", l.Digest, l.MediaType)
		}
	}
	if len(m.Layers) != 2 {
		t.Errorf("merged signature has %d layers, want the publisher's and Airlock's", len(m.Layers))
	}

	// An image without a .sig tag has no evidence, and no error.
	if kept, _, err := VerifiedSignatures(t.Context(), other.repo, other.digest, trust); kept != nil || err != nil {
		t.Errorf("unsigned image: kept %v, err %v", kept != nil, err)
	}
	// No trust material, no evidence.
	if _, _, err := VerifiedSignatures(t.Context(), img.repo, img.digest, TrustPolicy{}); err == nil {
		t.Error("VerifiedSignatures without keys or identities succeeded")
	}
}

// TestVerifiedSignaturesCap: more valid signatures than the cap keep the cap.
func TestVerifiedSignaturesCap(t *testing.T) {
	u := registrytest.NewUpstream(t)
	publisher, pub := testKey(t, 1)
	img := pushTestImage(t, u, "team/many", "v1")
	var layers []layer
	for range MaxMergedSignatures + 5 {
		layers = append(layers, sigLayer(t, publisher, "docker.io/team/many", img.digest))
	}
	hostile, err := classicImage(layers)
	if err != nil {
		t.Fatal(err)
	}
	a, err := imageArtifact(hostile)
	if err != nil {
		t.Fatal(err)
	}
	pushArtifact(t, img.repo, a, mustTag(t, SignatureTag, img.digest))
	kept, dropped, err := VerifiedSignatures(t.Context(), img.repo, img.digest, TrustPolicy{Keys: [][]byte{pub}, IgnoreTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	if kept == nil || layerCount(t, *kept) != MaxMergedSignatures || len(dropped) != 5 {
		t.Fatalf("kept %d, dropped %d", layerCount(t, *kept), len(dropped))
	}
}

// remoteManifest returns the manifest bytes of img from its upstream.
func remoteManifest(t *testing.T, img testImage) ([]byte, error) {
	t.Helper()
	desc, err := remote.Get(img.repo.Digest(img.digest.String()), remote.WithContext(t.Context()))
	if err != nil {
		return nil, err
	}
	return desc.Manifest, nil
}
