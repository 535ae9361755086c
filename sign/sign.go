// Package sign signs and attests the images Airlock approves and verifies
// the signatures upstream registries publish, using cosign's formats and
// libraries, entirely offline (no Rekor, no Fulcio, no TUF).
//
// What Airlock writes uses cosign's classic layout, which every cosign
// release verifies: the signature manifest behind tag "sha256-<hex>.sig"
// (one simple-signing layer per signature) and the attestation manifest
// behind "sha256-<hex>.att" (one DSSE envelope layer per in-toto
// statement). The same content is also produced as OCI 1.1 referrers
// (subject = the image): signatures in cosign's OCI 1.1 layout, attestations
// as one DSSE-layer manifest each. Airlock deliberately writes no Sigstore
// bundles: cosign v2.6 switches `cosign verify` to bundle mode as soon as
// it sees one among the referrers, and bundle mode cannot verify offline
// without a trusted root.
//
// Verification of upstream signatures reads both layouts: the classic
// ".sig" tag and, through the referrers API (or its tag fallback), cosign
// OCI 1.1 signature manifests and Sigstore v0.3 bundles as cosign v3 writes
// them.
package sign

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/in-toto/in-toto-golang/in_toto"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Well-known predicate types for Attest.
const (
	// PredicateSPDX is the SPDX predicate type; `cosign verify-attestation
	// --type spdxjson` (and --type spdx) selects it.
	PredicateSPDX = in_toto.PredicateSPDX
	// PredicateVuln is cosign's vulnerability-scan predicate type;
	// `cosign verify-attestation --type vuln` selects it. Its predicate must
	// decode as cosign's CosignVulnPredicate.
	PredicateVuln = attestation.CosignVulnProvenanceV01
	// PredicateCycloneDX is the CycloneDX predicate type (--type cyclonedx).
	PredicateCycloneDX = in_toto.PredicateCycloneDX
)

// Attestation is one predicate to attest about an image.
type Attestation struct {
	// PredicateType is the in-toto predicate type URI, e.g.
	// "https://spdx.dev/Document", PredicateVuln, or Airlock's approval type.
	PredicateType string
	// Predicate is the predicate as JSON.
	Predicate []byte
}

// now is the clock for referrer creation annotations.
var now = time.Now

// SignImage signs manifest digest d, whose manifest is size bytes of
// mediaType, with a cosign simple-signing payload claiming docker-reference
// dockerRef (e.g. "registry.example/library/nginx").
//
// sig is the classic signature manifest that tag "sha256-<hex>.sig" holds.
// If existing (an upstream .sig manifest with its blobs, see
// FetchSignatures) is not nil, its layers come first, unchanged, so
// upstream signatures stay verifiable next to Airlock's; a layer that is an
// earlier signature by this same key over the same payload is replaced
// rather than repeated. referrer is an OCI 1.1 manifest (subject = d,
// artifactType SignatureArtifactType) carrying only Airlock's signature.
func (s *Signer) SignImage(d digest.Digest, size int64, mediaType, dockerRef string, existing *Artifact) (sig Artifact, referrer Artifact, err error) {
	subject, err := subjectDescriptor(d, size, mediaType)
	if err != nil {
		return Artifact{}, Artifact{}, err
	}
	ref, err := name.NewDigest(dockerRef + "@" + d.String())
	if err != nil {
		return Artifact{}, Artifact{}, fmt.Errorf("sign: docker reference %q: %w", dockerRef, err)
	}
	body, err := payload.Cosign{Image: ref, ClaimedIdentity: dockerRef}.MarshalJSON()
	if err != nil {
		return Artifact{}, Artifact{}, fmt.Errorf("sign: payload: %w", err)
	}
	raw, err := s.sv.SignMessage(bytes.NewReader(body))
	if err != nil {
		return Artifact{}, Artifact{}, fmt.Errorf("sign: sign %s: %w", d, err)
	}
	own := layer{
		data:        body,
		mediaType:   SimpleSigningMediaType,
		annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(raw)},
	}

	var layers []layer
	if existing != nil {
		prev, err := artifactLayers(existing)
		if err != nil {
			return Artifact{}, Artifact{}, fmt.Errorf("sign: existing signatures: %w", err)
		}
		for _, l := range prev {
			if s.isOwnSignature(l, body) {
				continue
			}
			layers = append(layers, l)
		}
	}
	layers = append(layers, own)

	img, err := classicImage(layers)
	if err != nil {
		return Artifact{}, Artifact{}, err
	}
	if sig, err = imageArtifact(img); err != nil {
		return Artifact{}, Artifact{}, err
	}

	// The referrer follows cosign's OCI 1.1 signature layout: the classic
	// signature manifest with config.mediaType set to the artifact type and
	// a subject, so `cosign verify --experimental-oci11` reads it too.
	ownImg, err := classicImage([]layer{own})
	if err != nil {
		return Artifact{}, Artifact{}, err
	}
	cfg, err := ownImg.RawConfigFile()
	if err != nil {
		return Artifact{}, Artifact{}, fmt.Errorf("sign: config: %w", err)
	}
	referrer, err = referrerArtifact(SignatureArtifactType, subject, SignatureArtifactType, cfg, []layer{own},
		map[string]string{CreatedAnnotation: now().UTC().Format(time.RFC3339)})
	if err != nil {
		return Artifact{}, Artifact{}, err
	}
	return sig, referrer, nil
}

// isOwnSignature reports whether l is a signature by this signer over body.
func (s *Signer) isOwnSignature(l layer, body []byte) bool {
	if l.mediaType != SimpleSigningMediaType || !bytes.Equal(l.data, body) {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(l.annotations[SignatureAnnotation])
	if err != nil {
		return false
	}
	return s.sv.VerifySignature(bytes.NewReader(raw), bytes.NewReader(body)) == nil
}

// artifactLayers returns the layers of a classic signature manifest with
// their blobs, checking each blob against its digest.
func artifactLayers(a *Artifact) ([]layer, error) {
	m, err := parseManifest(a.Manifest)
	if err != nil {
		return nil, err
	}
	out := make([]layer, 0, len(m.Layers))
	for _, desc := range m.Layers {
		d := digest.Digest(desc.Digest.String())
		b, ok := a.Blobs[d]
		if !ok {
			return nil, fmt.Errorf("layer %s: blob missing", d)
		}
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
		if d.Algorithm().FromBytes(b) != d {
			return nil, fmt.Errorf("layer %s: blob does not match its digest", d)
		}
		out = append(out, layer{data: b, mediaType: string(desc.MediaType), annotations: desc.Annotations})
	}
	return out, nil
}

// Attest signs one in-toto statement per attestation (subject: dockerRef
// with digest d) as a DSSE envelope, exactly as `cosign attest` does.
//
// att is the classic manifest for tag "sha256-<hex>.att": one DSSE layer per
// attestation, annotated with its predicateType. referrers holds one OCI
// 1.1 referrer manifest per attestation (subject = d, artifactType
// AttestationArtifactType, annotation ReferrerPredicateTypeAnnotation), in
// the order of atts.
func (s *Signer) Attest(d digest.Digest, size int64, mediaType, dockerRef string, atts []Attestation) (att Artifact, referrers []Artifact, err error) {
	subject, err := subjectDescriptor(d, size, mediaType)
	if err != nil {
		return Artifact{}, nil, err
	}
	if len(atts) == 0 {
		return Artifact{}, nil, errors.New("sign: attest: no attestations")
	}
	if _, err := name.NewDigest(dockerRef + "@" + d.String()); err != nil {
		return Artifact{}, nil, fmt.Errorf("sign: docker reference %q: %w", dockerRef, err)
	}
	wrapped := dsse.WrapSigner(s.sv, InTotoPayloadType)
	created := now().UTC().Format(time.RFC3339)

	layers := make([]layer, 0, len(atts))
	for _, a := range atts {
		stmt, err := statement(d, dockerRef, a)
		if err != nil {
			return Artifact{}, nil, err
		}
		env, err := wrapped.SignMessage(bytes.NewReader(stmt))
		if err != nil {
			return Artifact{}, nil, fmt.Errorf("sign: attest %s (%s): %w", d, a.PredicateType, err)
		}
		l := layer{
			data:      env,
			mediaType: DSSEMediaType,
			// cosign's attestation layers carry an empty signature
			// annotation (the signature is inside the envelope).
			annotations: map[string]string{PredicateTypeAnnotation: a.PredicateType, SignatureAnnotation: ""},
		}
		layers = append(layers, l)
		r, err := referrerArtifact(AttestationArtifactType, subject, "", nil, []layer{l}, map[string]string{
			CreatedAnnotation:               created,
			ReferrerPredicateTypeAnnotation: a.PredicateType,
		})
		if err != nil {
			return Artifact{}, nil, err
		}
		referrers = append(referrers, r)
	}
	img, err := classicImage(layers)
	if err != nil {
		return Artifact{}, nil, err
	}
	if att, err = imageArtifact(img); err != nil {
		return Artifact{}, nil, err
	}
	return att, referrers, nil
}

// statement builds the in-toto v0.1 statement cosign generates for a
// predicate, after checking the predicate is what cosign's verifiers expect.
func statement(d digest.Digest, dockerRef string, a Attestation) ([]byte, error) {
	if a.PredicateType == "" {
		return nil, errors.New("sign: attestation without predicate type")
	}
	if !json.Valid(a.Predicate) {
		return nil, fmt.Errorf("sign: predicate %s is not valid JSON", a.PredicateType)
	}
	if a.PredicateType == PredicateVuln {
		// `cosign verify-attestation --type vuln` decodes the predicate into
		// this struct and fails on anything it cannot hold.
		var v attestation.CosignVulnPredicate
		if err := json.Unmarshal(a.Predicate, &v); err != nil {
			return nil, fmt.Errorf("sign: vuln predicate: %w", err)
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, a.Predicate); err != nil {
		return nil, fmt.Errorf("sign: predicate %s: %w", a.PredicateType, err)
	}
	st := in_toto.Statement{
		StatementHeader: in_toto.StatementHeader{
			Type:          in_toto.StatementInTotoV01,
			PredicateType: a.PredicateType,
			Subject: []in_toto.Subject{{
				Name:   dockerRef,
				Digest: map[string]string{"sha256": d.Encoded()},
			}},
		},
		Predicate: json.RawMessage(compact.Bytes()),
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("sign: statement: %w", err)
	}
	return b, nil
}
