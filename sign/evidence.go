package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Bounds on what VerifiedSignatures keeps of an upstream's signatures. A
// simple-signing payload is a few hundred bytes and its annotations (the
// signature, a certificate and its chain, a Rekor bundle) a few kilobytes.
const (
	// MaxMergedSignatures is the most upstream signatures kept per image.
	MaxMergedSignatures = 8
	maxMergedPayload    = 16 << 10
	maxMergedAnnotation = 64 << 10
)

// VerifiedSignatures returns the upstream's classic signatures of image d
// (the layers of its "sha256-<hex>.sig" manifest) that are evidence for d,
// as a classic signature artifact to pass to Signer.SignImage, or nil when
// none is. A layer is kept only if it is a simple-signing payload of at
// most 16 KiB that names exactly d as its docker-manifest-digest, and its
// signature verifies under p; at most MaxMergedSignatures are kept.
// Everything else (other media types, payloads naming other digests,
// signatures that do not verify, oversized layers) is dropped, and dropped
// says why, one line per layer, for the log.
//
// This is what makes upstream signatures evidence rather than content:
// whatever else the upstream put into its .sig manifest never reaches
// Airlock's storage.
func VerifiedSignatures(ctx context.Context, repo name.Repository, d digest.Digest, p TrustPolicy, opts ...remote.Option) (kept *Artifact, dropped []string, err error) {
	if err := checkDigest(d); err != nil {
		return nil, nil, err
	}
	trusts, err := p.compile()
	if err != nil {
		return nil, nil, err
	}
	h, err := v1.NewHash(d.String())
	if err != nil {
		return nil, nil, fmt.Errorf("sign: digest %s: %w", d, err)
	}
	ropts := append(append([]remote.Option(nil), opts...), remote.WithContext(ctx))
	tag, _ := SignatureTag(d) // d already checked
	sigs, err := classicSignatures(repo.Tag(tag), []ociremote.Option{ociremote.WithRemoteOptions(ropts...)})
	if err != nil {
		if isNotFound(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("sign: upstream signatures of %s@%s: %w", repo, d, err)
	}
	var layers []layer
	for i, s := range sigs {
		drop := func(why string) { dropped = append(dropped, fmt.Sprintf("layer %d: %s", i+1, why)) }
		if len(layers) == MaxMergedSignatures {
			drop(fmt.Sprintf("more than %d signatures", MaxMergedSignatures))
			continue
		}
		mt, err := s.MediaType()
		if err != nil || string(mt) != SimpleSigningMediaType {
			drop(fmt.Sprintf("media type %q is not a simple-signing payload", mt))
			continue
		}
		body, err := s.Payload()
		if err != nil {
			drop("payload: " + err.Error())
			continue
		}
		if len(body) > maxMergedPayload {
			drop(fmt.Sprintf("payload of %d bytes exceeds %d", len(body), maxMergedPayload))
			continue
		}
		var sci payload.SimpleContainerImage
		if err := json.Unmarshal(body, &sci); err != nil {
			drop("payload is not simple-signing JSON: " + err.Error())
			continue
		}
		if sci.Critical.Type != payload.CosignSignatureType || sci.Critical.Image.DockerManifestDigest != d.String() {
			drop(fmt.Sprintf("payload names %q, not %s", sci.Critical.Image.DockerManifestDigest, d))
			continue
		}
		ann, err := s.Annotations()
		if err != nil {
			drop("annotations: " + err.Error())
			continue
		}
		n := 0
		for k, v := range ann {
			n += len(k) + len(v)
		}
		if n > maxMergedAnnotation {
			drop(fmt.Sprintf("annotations of %d bytes exceed %d", n, maxMergedAnnotation))
			continue
		}
		verified := false
		for _, t := range trusts {
			if _, err := cosign.VerifyImageSignature(ctx, s, h, t.co); err == nil {
				verified = true
				break
			}
		}
		if !verified {
			drop("signature does not verify under the signature policy")
			continue
		}
		layers = append(layers, layer{data: body, mediaType: SimpleSigningMediaType, annotations: ann})
	}
	if len(layers) == 0 {
		return nil, dropped, nil
	}
	img, err := classicImage(layers)
	if err != nil {
		return nil, dropped, err
	}
	a, err := imageArtifact(img)
	if err != nil {
		return nil, dropped, err
	}
	return &a, dropped, nil
}

// isNotFound reports whether err is a registry's 404.
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
