package sign

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	slsa01 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.1"
	slsa02 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.2"
	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cattestation "github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
)

// LayoutAttTag is cosign's classic "sha256-<hex>.att" tag, where `cosign
// attest` puts attestations (UpstreamAttestation.Layout).
const LayoutAttTag = "att-tag"

// Predicate types of the upstream attestations VerifiedAttestations keeps,
// next to PredicateSPDX and PredicateCycloneDX.
const (
	// PredicateOpenVEX is OpenVEX's predicate type (`cosign attest --type
	// openvex`); versioned forms ("https://openvex.dev/ns/v0.2.0") count too.
	PredicateOpenVEX = cattestation.OpenVexNamespace
	// PredicateSLSAProvenance02 is SLSA provenance v0.2 (--type slsaprovenance).
	PredicateSLSAProvenance02 = slsa02.PredicateSLSAProvenance
	// PredicateSLSAProvenance1 is SLSA provenance v1 (--type slsaprovenance1).
	PredicateSLSAProvenance1 = slsa1.PredicateSLSAProvenance

	// UpstreamSignerAnnotation is set on the referrer manifest Airlock
	// builds for an upstream attestation (MergeAttestations): who signed it,
	// as UpstreamAttestation.Signer says, so the referrers list tells the
	// publisher's attestations from Airlock's own.
	UpstreamSignerAnnotation = "dev.airlock.upstream.signer"
)

// Bounds on what VerifiedAttestations reads of an upstream. The upstream
// publisher is an adversary: every count and size it controls is capped
// before anything is downloaded.
const (
	// MaxUpstreamAttestations is the most verified attestations kept per
	// image; further ones are dropped.
	MaxUpstreamAttestations = 16
	// maxAttestationBlob bounds one DSSE envelope or Sigstore bundle (an
	// SBOM of a large image, base64 in an envelope, runs to megabytes).
	maxAttestationBlob = 16 << 20
	// maxAttestationBytes bounds all blobs read for one image.
	maxAttestationBytes = 64 << 20
	// maxAttestationLayers bounds the layers read from one manifest.
	maxAttestationLayers = 64
	// maxAttestationReferrers bounds the referrer manifests looked at.
	maxAttestationReferrers = 64
	// maxDroppedReasons bounds the reasons returned (the count is complete).
	maxDroppedReasons = 32
)

// Annotations cosign reads from an attestation layer besides its payload.
const (
	certificateAnnotation = static.CertificateAnnotationKey
	chainAnnotation       = static.ChainAnnotationKey
	rekorBundleAnnotation = static.BundleAnnotationKey
	timestampAnnotation   = static.RFC3161TimestampAnnotationKey
)

// IsSBOMPredicate reports whether predicateType is an SBOM: SPDX or
// CycloneDX, with or without a version suffix.
func IsSBOMPredicate(predicateType string) bool {
	return hasTypePrefix(predicateType, PredicateSPDX) || hasTypePrefix(predicateType, PredicateCycloneDX)
}

// IsProvenancePredicate reports whether predicateType is SLSA provenance
// v0.1, v0.2 or v1.
func IsProvenancePredicate(predicateType string) bool {
	switch predicateType {
	case slsa01.PredicateSLSAProvenance, PredicateSLSAProvenance02, PredicateSLSAProvenance1:
		return true
	}
	return false
}

// IsVEXPredicate reports whether predicateType is OpenVEX, any version.
func IsVEXPredicate(predicateType string) bool {
	return hasTypePrefix(predicateType, PredicateOpenVEX)
}

func hasTypePrefix(t, base string) bool { return t == base || strings.HasPrefix(t, base+"/") }

// keptPredicate: the predicate types VerifiedAttestations keeps.
func keptPredicate(t string) bool {
	return IsSBOMPredicate(t) || IsProvenancePredicate(t) || IsVEXPredicate(t)
}

// UpstreamAttestation is one attestation the upstream attached to an
// image that verified under the trust policy.
type UpstreamAttestation struct {
	// PredicateType is the in-toto statement's predicate type, as signed.
	PredicateType string
	// Statement is the in-toto statement exactly as signed (the DSSE
	// payload); Predicate is its predicate.
	Statement []byte
	Predicate json.RawMessage
	// Signer says who signed, as Verification.Signer does.
	Signer string
	// Layout is where it was found: LayoutAttTag or LayoutReferrers.
	Layout string
	// Source is the digest of the upstream blob it was read from: the
	// DSSE envelope layer, or the Sigstore bundle. Records name it.
	Source digest.Digest

	// Envelope and Annotations are the classic cosign attestation layer
	// to serve (a DSSE envelope, DSSEMediaType): MergeAttestations puts it
	// into Airlock's ".att" manifest and into a referrer of its own. The
	// annotations are only those cosign reads (predicate type, empty
	// signature, certificate, chain, Rekor bundle, RFC 3161 timestamp), and
	// the layer was checked to verify under the same trust policy with
	// cosign's classic verifier, so `cosign verify-attestation` with the
	// publisher's key verifies it through Airlock.
	//
	// Envelope is nil when the attestation cannot be served that way, and
	// NotServed says why: a keyless Sigstore bundle's transparency-log
	// entry does not carry over to the classic layout, and serving the
	// bundle itself as a referrer would switch the cosign v2 CLI to bundle
	// mode for every image attestation, Airlock's own included.
	Envelope    []byte
	Annotations map[string]string
	NotServed   string
}

// VerifiedAttestations returns the upstream's attestations of image d in
// repository repo that are evidence for d, reading the classic
// "sha256-<hex>.att" tag (DSSE envelopes in layers, as `cosign attest`
// writes) and d's OCI 1.1 referrers (the referrers API or its tag
// fallback): cosign's OCI 1.1 attestation manifests and Sigstore v0.3
// bundles whose statement is not cosign's sign predicate.
//
// An attestation is kept only if it is an in-toto statement with an SBOM
// (SPDX, CycloneDX), SLSA provenance or OpenVEX predicate, one of its
// subjects is d, and it verifies under p with cosign's library
// (VerifyImageAttestation, checking the statement subject as `cosign
// verify-attestation` does, or VerifyNewBundle for bundles). At most
// MaxUpstreamAttestations are kept, every blob is at most 16 MiB and every
// manifest at most 4 MiB, at most 64 MiB are read in all, and at most 64
// layers per manifest and 64 referrers are looked at. Everything else is
// dropped, and dropped says why (at most 32 reasons, then how many more).
// opts carry the upstream's auth and transport.
//
// The error is for what retrying may fix: the upstream unreachable or
// answering with an error other than 404. What was kept before it is
// returned alongside. Hostile or broken content is never an error, only
// a dropped reason.
func VerifiedAttestations(ctx context.Context, repo name.Repository, d digest.Digest, p TrustPolicy, opts ...remote.Option) (kept []UpstreamAttestation, dropped []string, err error) {
	if err := checkDigest(d); err != nil {
		return nil, nil, err
	}
	trusts, err := p.compile()
	if err != nil {
		return nil, nil, err
	}
	// Attestations carry an in-toto statement, not a simple-signing
	// payload: check its subject as `cosign verify-attestation` does.
	for i := range trusts {
		co := *trusts[i].co
		co.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
		trusts[i].co = &co
	}
	h, err := v1.NewHash(d.String())
	if err != nil {
		return nil, nil, fmt.Errorf("sign: digest %s: %w", d, err)
	}
	want, _ := hex.DecodeString(d.Encoded())
	c := &attCollector{
		ctx: ctx, repo: repo, d: d, h: h, want: want, trusts: trusts,
		ropts:  append(append([]remote.Option(nil), opts...), remote.WithContext(ctx)),
		budget: maxAttestationBytes,
		seen:   map[digest.Digest]bool{},
	}
	tag, _ := AttestationTag(d) // d already checked
	err = c.dsseManifest(repo.Tag(tag), LayoutAttTag, "tag "+tag)
	if err == nil {
		err = c.referrers()
	}
	if err != nil {
		err = fmt.Errorf("sign: upstream attestations of %s@%s: %w", repo, d, err)
	}
	return c.kept, c.reasons(), err
}

// attCollector reads, checks and verifies one image's attestations.
type attCollector struct {
	ctx    context.Context
	repo   name.Repository
	d      digest.Digest
	h      v1.Hash
	want   []byte
	trusts []trust
	ropts  []remote.Option

	budget  int64
	seen    map[digest.Digest]bool
	kept    []UpstreamAttestation
	dropped []string
	more    int
}

func (c *attCollector) drop(where, why string) {
	if len(c.dropped) < maxDroppedReasons {
		c.dropped = append(c.dropped, where+": "+why)
		return
	}
	c.more++
}

func (c *attCollector) reasons() []string {
	if c.more == 0 {
		return c.dropped
	}
	return append(c.dropped, fmt.Sprintf("and %d more", c.more))
}

// fail sorts a fetch error: what retrying may fix is returned, anything
// else is dropped with its reason.
func (c *attCollector) fail(where string, err error) error {
	if fetchFailed(err) {
		return fmt.Errorf("%s: %w", where, err)
	}
	c.drop(where, err.Error())
	return nil
}

// fetchFailed reports whether err is the registry or network failing rather
// than the content being bad: a registry error other than 404, a network
// error, or the context ending.
func fetchFailed(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode != http.StatusNotFound
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var nerr net.Error
	var uerr *url.Error
	return errors.As(err, &nerr) || errors.As(err, &uerr)
}

// admit checks one blob descriptor against the bounds before anything is
// downloaded, and charges it to the budget.
func (c *attCollector) admit(where string, desc v1.Descriptor) bool {
	src := digest.Digest(desc.Digest.String())
	switch {
	case c.seen[src]:
		return false // the same blob in both layouts
	case len(c.kept) >= MaxUpstreamAttestations:
		c.drop(where, fmt.Sprintf("more than %d attestations", MaxUpstreamAttestations))
	case desc.Size <= 0 || desc.Size > maxAttestationBlob:
		c.drop(where, fmt.Sprintf("size %d is not within 1..%d bytes", desc.Size, maxAttestationBlob))
	case desc.Size > c.budget:
		c.drop(where, fmt.Sprintf("over the limit of %d bytes read per image", maxAttestationBytes))
	default:
		c.seen[src] = true
		c.budget -= desc.Size
		return true
	}
	return false
}

// manifest fetches an attestation manifest (an image manifest, at most
// maxSignatureBlob bytes, charged to the budget). found is false for a 404.
func (c *attCollector) manifest(ref name.Reference, where string) (m *ociManifest, found bool, err error) {
	desc, err := remote.Get(ref, c.ropts...)
	if err != nil {
		if isNotFound(err) {
			return nil, false, nil
		}
		return nil, true, c.fail(where, err)
	}
	if len(desc.Manifest) > maxSignatureBlob {
		c.drop(where, fmt.Sprintf("manifest of %d bytes exceeds %d", len(desc.Manifest), maxSignatureBlob))
		return nil, true, nil
	}
	if int64(len(desc.Manifest)) > c.budget {
		c.drop(where, fmt.Sprintf("over the limit of %d bytes read per image", maxAttestationBytes))
		return nil, true, nil
	}
	c.budget -= int64(len(desc.Manifest))
	switch desc.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	default:
		c.drop(where, fmt.Sprintf("media type %s is not an image manifest", desc.MediaType))
		return nil, true, nil
	}
	if m, err = parseManifest(desc.Manifest); err != nil {
		c.drop(where, err.Error())
		return nil, true, nil
	}
	return m, true, nil
}

// dsseManifest reads a manifest whose layers are DSSE envelopes: the
// classic .att manifest or a cosign OCI 1.1 attestation referrer.
func (c *attCollector) dsseManifest(ref name.Reference, layout, where string) error {
	m, found, err := c.manifest(ref, where)
	if m == nil || err != nil {
		if !found && layout == LayoutReferrers {
			c.drop(where, "listed but not found")
		}
		return err
	}
	for i, l := range m.Layers {
		if i == maxAttestationLayers {
			c.drop(where, fmt.Sprintf("%d layers beyond the limit of %d not read", len(m.Layers)-i, maxAttestationLayers))
			break
		}
		if err := c.dsseLayer(fmt.Sprintf("%s layer %d", where, i+1), l, layout); err != nil {
			return err
		}
	}
	return nil
}

// dsseLayer checks and verifies one DSSE envelope layer.
func (c *attCollector) dsseLayer(where string, desc v1.Descriptor, layout string) error {
	if string(desc.MediaType) != DSSEMediaType {
		c.drop(where, fmt.Sprintf("media type %q is not a DSSE envelope", desc.MediaType))
		return nil
	}
	ann := servedAnnotations(desc.Annotations)
	if n := annotationBytes(ann); n > maxMergedAnnotation {
		c.drop(where, fmt.Sprintf("annotations of %d bytes exceed %d", n, maxMergedAnnotation))
		return nil
	}
	if !c.admit(where, desc) {
		return nil
	}
	src := digest.Digest(desc.Digest.String())
	body, err := fetchBlobMax(c.repo.Digest(src.String()), desc.Size, maxAttestationBlob, c.ropts)
	if err != nil {
		return c.fail(where, err)
	}
	var env dsseEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		c.drop(where, "not a DSSE envelope: "+err.Error())
		return nil
	}
	if env.PayloadType != InTotoPayloadType {
		c.drop(where, fmt.Sprintf("payload type %q is not an in-toto statement", env.PayloadType))
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		c.drop(where, "payload: "+err.Error())
		return nil
	}
	st, ok := c.statement(where, raw)
	if !ok {
		return nil
	}
	sig, err := attestationSignature(body, ann)
	if err != nil {
		c.drop(where, err.Error())
		return nil
	}
	who, ok := c.verifyDSSE(where, sig)
	if !ok {
		return nil
	}
	ann[PredicateTypeAnnotation] = st.PredicateType // the signed one, not the upstream's label
	c.kept = append(c.kept, UpstreamAttestation{
		PredicateType: st.PredicateType, Statement: raw, Predicate: st.Predicate,
		Signer: who, Layout: layout, Source: src, Envelope: body, Annotations: ann,
	})
	return nil
}

// statement parses an in-toto statement and checks it is one to keep and
// about this image. Statements with cosign's sign predicate (signatures,
// not attestations) are skipped without a reason.
func (c *attCollector) statement(where string, raw []byte) (inTotoStatement, bool) {
	var st inTotoStatement
	if err := json.Unmarshal(raw, &st); err != nil {
		c.drop(where, "not an in-toto statement: "+err.Error())
		return st, false
	}
	switch {
	case !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/"):
		c.drop(where, fmt.Sprintf("statement type %q is not in-toto", st.Type))
	case st.PredicateType == CosignSignPredicateType:
	case !keptPredicate(st.PredicateType):
		c.drop(where, fmt.Sprintf("predicate type %q is not an SBOM, provenance or VEX", st.PredicateType))
	case !st.about(c.d):
		c.drop(where, fmt.Sprintf("statement subject is not %s", c.d))
	default:
		return st, true
	}
	return st, false
}

// verifyDSSE verifies a classic attestation layer under every trust with
// cosign's classic verifier and says who signed it.
func (c *attCollector) verifyDSSE(where string, sig oci.Signature) (string, bool) {
	var first error
	for _, t := range c.trusts {
		if _, _, err := cosign.VerifyImageAttestation(c.ctx, oneSignature{sig: sig}, c.h, t.co); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		return signerLabel(t, sig), true
	}
	if where != "" {
		c.drop(where, fmt.Sprintf("does not verify under the signature policy: %v", first))
	}
	return "", false
}

// signerLabel names who signed sig under t, as Verify does.
func signerLabel(t trust, sig oci.Signature) string {
	if t.key != "" {
		return t.key
	}
	cert, err := sig.Cert()
	if err != nil || cert == nil {
		return "certificate"
	}
	sum, err := certificate.SummarizeCertificate(cert)
	if err != nil {
		return "certificate"
	}
	return identityLabel(sum)
}

// referrers reads d's attestation referrers.
func (c *attCollector) referrers() error {
	idx, err := remote.Referrers(c.repo.Digest(c.d.String()), c.ropts...)
	if err != nil {
		return c.fail("referrers", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return c.fail("referrers", err)
	}
	for i, desc := range im.Manifests {
		if i == maxAttestationReferrers {
			c.drop("referrers", fmt.Sprintf("%d referrers beyond the limit of %d not read", len(im.Manifests)-i, maxAttestationReferrers))
			break
		}
		where := "referrer " + desc.Digest.String()
		if desc.Size > maxSignatureBlob {
			c.drop(where, fmt.Sprintf("manifest of %d bytes exceeds %d", desc.Size, maxSignatureBlob))
			continue
		}
		ref := c.repo.Digest(desc.Digest.String())
		at := desc.ArtifactType
		if at == "" || at == emptyConfigMediaType {
			// See verifyReferrers: older clients record the empty config's
			// media type in the fallback index.
			if at, err = artifactTypeOf(ref, c.ropts); err != nil {
				if err := c.fail(where, err); err != nil {
					return err
				}
				continue
			}
		}
		switch {
		case at == InTotoPayloadType || at == DSSEMediaType:
			err = c.dsseManifest(ref, LayoutReferrers, where)
		case strings.HasPrefix(at, "application/vnd.dev.sigstore.bundle"):
			if pt, has := desc.Annotations[bundlePredicateAnnotation]; has && pt == CosignSignPredicateType {
				continue // a signature
			}
			err = c.bundle(ref, where)
		}
		// Other artifact types (signatures, anything else) are not
		// cosign attestations.
		if err != nil {
			return err
		}
	}
	return nil
}

// bundle reads, checks and verifies one Sigstore bundle referrer.
func (c *attCollector) bundle(ref name.Digest, where string) error {
	m, found, err := c.manifest(ref, where)
	if m == nil || err != nil {
		if !found {
			c.drop(where, "listed but not found")
		}
		return err
	}
	if len(m.Layers) != 1 || !strings.HasPrefix(string(m.Layers[0].MediaType), "application/vnd.dev.sigstore.bundle") {
		c.drop(where, "not a single Sigstore bundle layer")
		return nil
	}
	l := m.Layers[0]
	if !c.admit(where, l) {
		return nil
	}
	src := digest.Digest(l.Digest.String())
	raw, err := fetchBlobMax(c.repo.Digest(src.String()), l.Size, maxAttestationBlob, c.ropts)
	if err != nil {
		return c.fail(where, err)
	}
	b := &sgbundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		c.drop(where, "bundle: "+err.Error())
		return nil
	}
	if !b.MinVersion("v0.3") {
		c.drop(where, "bundle version older than v0.3")
		return nil
	}
	env := b.GetDsseEnvelope()
	if env == nil || env.GetPayloadType() != InTotoPayloadType {
		c.drop(where, "bundle holds no DSSE in-toto statement")
		return nil
	}
	st, ok := c.statement(where, env.GetPayload())
	if !ok {
		return nil
	}
	var first error
	who, ok := verifyBundle(c.ctx, b, c.want, c.trusts, func(err error) {
		if first == nil {
			first = err
		}
	})
	if !ok {
		c.drop(where, fmt.Sprintf("bundle does not verify under the signature policy: %v", first))
		return nil
	}
	a := UpstreamAttestation{
		PredicateType: st.PredicateType, Statement: env.GetPayload(), Predicate: st.Predicate,
		Signer: who, Layout: LayoutReferrers, Source: src,
	}
	// A key-signed bundle's envelope is a classic attestation layer as it
	// is: the signature covers the statement, not the bundle around it.
	// It is served only if that layer verifies under the same policy.
	if b.GetVerificationMaterial().GetPublicKey() == nil {
		a.NotServed = "a keyless Sigstore bundle cannot be served in cosign's classic layout"
	} else if classic, err := classicEnvelope(b); err != nil {
		a.NotServed = err.Error()
	} else {
		ann := map[string]string{PredicateTypeAnnotation: st.PredicateType, SignatureAnnotation: ""}
		sig, err := attestationSignature(classic, ann)
		if err == nil {
			_, ok = c.verifyDSSE("", sig)
		}
		if err != nil || !ok {
			a.NotServed = "its envelope alone does not verify under the signature policy (a transparency-log entry is required)"
		} else {
			a.Envelope, a.Annotations = classic, ann
		}
	}
	c.kept = append(c.kept, a)
	return nil
}

// dsseEnvelope is a DSSE envelope in its JSON form, as cosign stores it in
// a classic attestation layer.
type dsseEnvelope struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []dsseSignature `json:"signatures"`
}

type dsseSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// classicEnvelope renders a bundle's DSSE envelope in its JSON form.
func classicEnvelope(b *sgbundle.Bundle) ([]byte, error) {
	env := b.GetDsseEnvelope()
	e := dsseEnvelope{PayloadType: env.GetPayloadType(), Payload: base64.StdEncoding.EncodeToString(env.GetPayload())}
	for _, s := range env.GetSignatures() {
		e.Signatures = append(e.Signatures, dsseSignature{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())})
	}
	if len(e.Signatures) == 0 {
		return nil, errors.New("bundle envelope has no signature")
	}
	return json.Marshal(e)
}

// inTotoStatement is the part of an in-toto statement (v0.1 or v1) read here.
type inTotoStatement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

// about reports whether one of the statement's subjects is d.
func (st inTotoStatement) about(d digest.Digest) bool {
	for _, s := range st.Subject {
		if s.Digest[string(d.Algorithm())] == d.Encoded() {
			return true
		}
	}
	return false
}

// servedAnnotations keeps, of an attestation layer's annotations, those
// cosign reads; the signature annotation is always present and empty, as
// cosign writes attestation layers.
func servedAnnotations(in map[string]string) map[string]string {
	out := map[string]string{SignatureAnnotation: ""}
	if pt, ok := in[PredicateTypeAnnotation]; ok {
		out[PredicateTypeAnnotation] = pt
	}
	for _, k := range []string{certificateAnnotation, chainAnnotation, rekorBundleAnnotation, timestampAnnotation} {
		if v := in[k]; v != "" {
			out[k] = v
		}
	}
	return out
}

func annotationBytes(ann map[string]string) int {
	n := 0
	for k, v := range ann {
		n += len(k) + len(v)
	}
	return n
}

// attestationSignature is the classic attestation layer body with
// annotations ann as cosign reads it from a registry: certificate, chain,
// Rekor bundle and RFC 3161 timestamp from their annotations.
func attestationSignature(body []byte, ann map[string]string) (oci.Signature, error) {
	opts := []static.Option{static.WithLayerMediaType(types.MediaType(DSSEMediaType))}
	rest := map[string]string{}
	for k, v := range ann {
		rest[k] = v
	}
	delete(rest, SignatureAnnotation)
	if c := ann[certificateAnnotation]; c != "" {
		opts = append(opts, static.WithCertChain([]byte(c), []byte(ann[chainAnnotation])))
	}
	if v := ann[rekorBundleAnnotation]; v != "" {
		var rb cbundle.RekorBundle
		if err := json.Unmarshal([]byte(v), &rb); err != nil {
			return nil, fmt.Errorf("rekor bundle annotation: %w", err)
		}
		opts = append(opts, static.WithBundle(&rb))
	}
	if v := ann[timestampAnnotation]; v != "" {
		var ts cbundle.RFC3161Timestamp
		if err := json.Unmarshal([]byte(v), &ts); err != nil {
			return nil, fmt.Errorf("timestamp annotation: %w", err)
		}
		opts = append(opts, static.WithRFC3161Timestamp(&ts))
	}
	return static.NewAttestation(body, append(opts, static.WithAnnotations(rest))...)
}

// oneSignature presents one attestation as the oci.Signatures that
// cosign.VerifyImageAttestation takes; it only calls Get.
type oneSignature struct {
	oci.Signatures
	sig oci.Signature
}

func (o oneSignature) Get() ([]oci.Signature, error) { return []oci.Signature{o.sig}, nil }

// fetchBlobMax reads one blob of at most limit bytes; go-containerregistry
// verifies its digest and size while it is read.
func fetchBlobMax(ref name.Digest, size, limit int64, ropts []remote.Option) ([]byte, error) {
	if size < 0 || size > limit {
		return nil, fmt.Errorf("size %d exceeds the limit of %d bytes", size, limit)
	}
	l, err := remote.Layer(ref, ropts...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != size {
		return nil, fmt.Errorf("got %d bytes, descriptor says %d", len(b), size)
	}
	return b, nil
}

// MergeAttestations serves verified upstream attestations next to
// Airlock's own, as SignImage does with upstream signatures: att is
// Airlock's classic attestation manifest (from Attest) for image d, whose
// manifest is size bytes of mediaType. merged holds the upstream layers
// first, unchanged, then Airlock's; referrers holds one OCI 1.1 referrer
// (subject = d, artifactType AttestationArtifactType, annotations
// ReferrerPredicateTypeAnnotation and UpstreamSignerAnnotation) per
// upstream attestation, in order. Attestations without an Envelope are
// skipped. With none left, merged is att and referrers is empty.
func MergeAttestations(d digest.Digest, size int64, mediaType string, att Artifact, upstream []UpstreamAttestation) (merged Artifact, referrers []Artifact, err error) {
	subject, err := subjectDescriptor(d, size, mediaType)
	if err != nil {
		return Artifact{}, nil, err
	}
	created := now().UTC().Format(time.RFC3339)
	var layers []layer
	for _, u := range upstream {
		if u.Envelope == nil {
			continue
		}
		ann := make(map[string]string, len(u.Annotations))
		for k, v := range u.Annotations {
			ann[k] = v
		}
		l := layer{data: u.Envelope, mediaType: DSSEMediaType, annotations: ann}
		layers = append(layers, l)
		r, err := referrerArtifact(AttestationArtifactType, subject, "", nil, []layer{l}, map[string]string{
			CreatedAnnotation:               created,
			ReferrerPredicateTypeAnnotation: u.PredicateType,
			UpstreamSignerAnnotation:        u.Signer,
		})
		if err != nil {
			return Artifact{}, nil, err
		}
		referrers = append(referrers, r)
	}
	if len(layers) == 0 {
		return att, nil, nil
	}
	own, err := artifactLayers(&att)
	if err != nil {
		return Artifact{}, nil, fmt.Errorf("sign: Airlock's attestations: %w", err)
	}
	img, err := classicImage(append(layers, own...))
	if err != nil {
		return Artifact{}, nil, err
	}
	if merged, err = imageArtifact(img); err != nil {
		return Artifact{}, nil, err
	}
	return merged, referrers, nil
}
