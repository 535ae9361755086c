package sign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
)

// Media types, artifact types and annotation keys of the layouts Airlock
// writes and reads. The values are cosign's own.
const (
	// SimpleSigningMediaType is the layer media type of a classic cosign
	// image signature (the "simple signing" JSON payload).
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// DSSEMediaType is the layer media type of a classic cosign attestation:
	// a DSSE envelope around an in-toto statement.
	DSSEMediaType = "application/vnd.dsse.envelope.v1+json"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement. It
	// is also the artifact type of Airlock's attestation referrers, as
	// cosign uses for attestation referrers.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// SignatureArtifactType is the artifact type (and config media type) of a
	// signature referrer in cosign's OCI 1.1 layout (`cosign sign
	// --registry-referrers-mode=oci-1-1`, read by `cosign verify
	// --experimental-oci11`). Airlock's own signature referrers use it.
	SignatureArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// AttestationArtifactType is the artifact type of Airlock's attestation
	// referrers.
	AttestationArtifactType = InTotoPayloadType
	// BundleArtifactType is the artifact type of a Sigstore bundle referrer,
	// which cosign v3 (or v2 with --new-bundle-format) writes for signatures
	// and attestations.
	BundleArtifactType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// CosignSignPredicateType is the in-toto predicate type cosign uses for an
	// image signature in a Sigstore bundle.
	CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1"

	// SignatureAnnotation holds the base64 signature on a classic layer.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// PredicateTypeAnnotation is the annotation cosign puts on each classic
	// attestation layer.
	PredicateTypeAnnotation = "predicateType"
	// ReferrerPredicateTypeAnnotation names the predicate type on Airlock's
	// attestation referrer manifests, so the referrers list tells an SBOM
	// from a vulnerability report without fetching either.
	ReferrerPredicateTypeAnnotation = "in-toto.io/predicate-type"
	// CreatedAnnotation is the OCI creation-time annotation set on referrers.
	CreatedAnnotation = "org.opencontainers.image.created"

	emptyConfigMediaType = "application/vnd.oci.empty.v1+json"
)

// Artifact is a manifest Airlock produced plus every blob it references,
// ready to store.
type Artifact struct {
	// Manifest is the exact manifest bytes; Digest is their sha256.
	Manifest []byte
	// MediaType is the manifest's media type (always an OCI image manifest).
	MediaType string
	// Digest is the manifest digest.
	Digest digest.Digest
	// ArtifactType is the OCI 1.1 artifact type for referrers ("" for the
	// classic tag layout).
	ArtifactType string
	// Blobs holds the config and every layer by digest.
	Blobs map[digest.Digest][]byte
}

// SignatureTag returns the classic cosign tag "sha256-<hex>.sig" that holds
// the signatures of image digest d.
func SignatureTag(d digest.Digest) (string, error) { return suffixTag(d, "sig") }

// AttestationTag returns the classic cosign tag "sha256-<hex>.att" that holds
// the attestations of image digest d.
func AttestationTag(d digest.Digest) (string, error) { return suffixTag(d, "att") }

func suffixTag(d digest.Digest, suffix string) (string, error) {
	if err := checkDigest(d); err != nil {
		return "", err
	}
	return strings.Replace(d.String(), ":", "-", 1) + "." + suffix, nil
}

func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("sign: digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("sign: digest %s: only sha256 is supported", d)
	}
	return nil
}

// layer is one layer to put into a manifest.
type layer struct {
	data        []byte
	mediaType   string
	annotations map[string]string
}

// classicImage builds a cosign-style signatures image (the manifest behind
// a .sig or .att tag): an OCI manifest whose config is a minimal image
// config and whose layers carry the payloads, built with the same
// go-containerregistry mutations cosign uses.
func classicImage(layers []layer) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:       static.NewLayer(l.data, types.MediaType(l.mediaType)),
			Annotations: l.annotations,
		})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("sign: build manifest: %w", err)
	}
	return img, nil
}

// imageArtifact serialises img and collects its config and layer blobs.
func imageArtifact(img v1.Image) (Artifact, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return Artifact{}, fmt.Errorf("sign: manifest: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return Artifact{}, fmt.Errorf("sign: manifest: %w", err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return Artifact{}, fmt.Errorf("sign: config: %w", err)
	}
	blobs := map[digest.Digest][]byte{digest.Digest(m.Config.Digest.String()): cfg}
	ls, err := img.Layers()
	if err != nil {
		return Artifact{}, fmt.Errorf("sign: layers: %w", err)
	}
	for _, l := range ls {
		h, err := l.Digest()
		if err != nil {
			return Artifact{}, fmt.Errorf("sign: layer digest: %w", err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return Artifact{}, fmt.Errorf("sign: layer: %w", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return Artifact{}, fmt.Errorf("sign: layer: %w", err)
		}
		blobs[digest.Digest(h.String())] = b
	}
	return Artifact{
		Manifest:  raw,
		MediaType: string(m.MediaType),
		Digest:    digest.FromBytes(raw),
		Blobs:     blobs,
	}, nil
}

// ociManifest is an OCI 1.1 image manifest; go-containerregistry's
// v1.Manifest lacks the top-level artifactType.
type ociManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// referrerArtifact builds an OCI 1.1 referrer manifest for subject.
// configMediaType "" selects the OCI empty config ("{}"); otherwise config
// is stored under that media type.
func referrerArtifact(artifactType string, subject v1.Descriptor, configMediaType string, config []byte, layers []layer, annotations map[string]string) (Artifact, error) {
	if configMediaType == "" {
		configMediaType, config = emptyConfigMediaType, []byte("{}")
	}
	blobs := make(map[digest.Digest][]byte, len(layers)+1)
	cd := digest.FromBytes(config)
	blobs[cd] = config
	m := ociManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        descriptor(configMediaType, cd, int64(len(config)), nil),
		Layers:        make([]v1.Descriptor, 0, len(layers)),
		Subject:       &subject,
		Annotations:   annotations,
	}
	for _, l := range layers {
		ld := digest.FromBytes(l.data)
		blobs[ld] = l.data
		m.Layers = append(m.Layers, descriptor(l.mediaType, ld, int64(len(l.data)), l.annotations))
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Artifact{}, fmt.Errorf("sign: marshal referrer: %w", err)
	}
	return Artifact{
		Manifest:     raw,
		MediaType:    string(types.OCIManifestSchema1),
		Digest:       digest.FromBytes(raw),
		ArtifactType: artifactType,
		Blobs:        blobs,
	}, nil
}

func descriptor(mediaType string, d digest.Digest, size int64, annotations map[string]string) v1.Descriptor {
	h, _ := v1.NewHash(d.String()) // d comes from digest.FromBytes: always valid
	return v1.Descriptor{MediaType: types.MediaType(mediaType), Digest: h, Size: size, Annotations: annotations}
}

// subjectDescriptor describes the image being signed.
func subjectDescriptor(d digest.Digest, size int64, mediaType string) (v1.Descriptor, error) {
	if err := checkDigest(d); err != nil {
		return v1.Descriptor{}, err
	}
	if size <= 0 {
		return v1.Descriptor{}, fmt.Errorf("sign: subject %s: size %d must be positive", d, size)
	}
	if mediaType == "" {
		return v1.Descriptor{}, fmt.Errorf("sign: subject %s: media type is required", d)
	}
	h, err := v1.NewHash(d.String())
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("sign: subject %s: %w", d, err)
	}
	return v1.Descriptor{MediaType: types.MediaType(mediaType), Digest: h, Size: size}, nil
}

// parseManifest decodes an image manifest with its layer descriptors.
func parseManifest(raw []byte) (*ociManifest, error) {
	var m ociManifest
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&m); err != nil {
		return nil, fmt.Errorf("sign: parse manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("sign: parse manifest: schemaVersion %d", m.SchemaVersion)
	}
	return &m, nil
}
