package sign

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// Layouts reported in Verification.Layout.
const (
	// LayoutSigTag is cosign's classic "sha256-<hex>.sig" tag.
	LayoutSigTag = "sig-tag"
	// LayoutReferrers is an OCI 1.1 referrer of the image: a cosign OCI 1.1
	// signature manifest or a Sigstore bundle (cosign v3).
	LayoutReferrers = "referrers"
)

// ErrNoSignature means no signature was found in either layout.
var ErrNoSignature = errors.New("no signature")

// ErrBadSignature means signatures were found but none verifies under the
// trust policy.
var ErrBadSignature = errors.New("signature does not verify")

// TrustPolicy says which upstream signatures count.
type TrustPolicy struct {
	// Keys are PEM public keys; a signature verified by any key counts.
	Keys [][]byte
	// Identities are keyless signers: certificate identity and OIDC issuer,
	// each exact or a regular expression. A signature whose certificate
	// chains to TrustedRootJSON and matches any identity counts.
	Identities []Identity
	// TrustedRootJSON is a Sigstore trusted_root.json, configured offline.
	// Required for Identities; with keys it is used to check transparency
	// log entries when IgnoreTlog is false. No TUF, Rekor or Fulcio request
	// is ever made.
	TrustedRootJSON []byte
	// IgnoreTlog skips the transparency-log check (offline sites: true).
	// When false, each signature must carry a Rekor entry (classic bundle
	// annotation or Sigstore bundle) that verifies offline against
	// TrustedRootJSON. Note that a keyless certificate is then checked at
	// the current time, so short-lived Fulcio certificates only verify with
	// IgnoreTlog false (or an RFC 3161 timestamp, which this policy does not
	// configure).
	IgnoreTlog bool
	// IgnoreSCT skips the check that a keyless certificate carries a
	// certificate-transparency timestamp verifiable with TrustedRootJSON's
	// CT logs. Fulcio certificates carry one; private CAs usually do not.
	IgnoreSCT bool
}

// Identity is a keyless signer: the certificate's subject alternative name
// and the OIDC issuer extension, each matched exactly or by regexp. One of
// Subject/SubjectRegexp and one of Issuer/IssuerRegexp must be set.
type Identity struct {
	Issuer, IssuerRegexp, Subject, SubjectRegexp string
}

// Verification is the outcome of Verify.
type Verification struct {
	// Signatures is how many image signatures were found, both layouts.
	Signatures int
	// Verified reports whether one of them verified.
	Verified bool
	// Signer says who signed: "key sha256:<fingerprint of the public key>"
	// or "<subject> (issuer <issuer>)".
	Signer string
	// Layout is where the verified signature was found (LayoutSigTag or
	// LayoutReferrers); without one, where signatures were found.
	Layout string
}

// trust is one way a signature may verify: one key or one identity.
type trust struct {
	key string // "key sha256:…" for keys, "" for keyless
	co  *cosign.CheckOpts
}

// compile turns p into per-key and per-identity cosign check options.
func (p TrustPolicy) compile() ([]trust, error) {
	if len(p.Keys) == 0 && len(p.Identities) == 0 {
		return nil, errors.New("sign: trust policy has no keys and no identities")
	}
	var tm root.TrustedMaterial
	if len(p.TrustedRootJSON) > 0 {
		tr, err := root.NewTrustedRootFromJSON(p.TrustedRootJSON)
		if err != nil {
			return nil, fmt.Errorf("sign: trusted root: %w", err)
		}
		tm = tr
	}
	base := func() *cosign.CheckOpts {
		return &cosign.CheckOpts{
			TrustedMaterial: tm,
			IgnoreTlog:      p.IgnoreTlog,
			IgnoreSCT:       p.IgnoreSCT,
			// Never look anything up online: a Rekor entry must come with
			// the signature.
			Offline: true,
			// The payload must name the digest being verified, as the
			// cosign CLI checks by default (--check-claims).
			ClaimVerifier: cosign.SimpleClaimVerifier,
		}
	}
	var out []trust
	for i, k := range p.Keys {
		v, fp, err := loadVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("sign: trust policy key %d: %w", i, err)
		}
		co := base()
		co.SigVerifier = v
		out = append(out, trust{key: "key " + fp, co: co})
	}
	for i, id := range p.Identities {
		if (id.Subject == "" && id.SubjectRegexp == "") || (id.Issuer == "" && id.IssuerRegexp == "") {
			return nil, fmt.Errorf("sign: trust policy identity %d: both a subject and an issuer (exact or regexp) are required", i)
		}
		if tm == nil {
			return nil, fmt.Errorf("sign: trust policy identity %d: keyless identities need a trusted root", i)
		}
		co := base()
		co.Identities = []cosign.Identity{{
			Issuer: id.Issuer, IssuerRegExp: id.IssuerRegexp,
			Subject: id.Subject, SubjectRegExp: id.SubjectRegexp,
		}}
		out = append(out, trust{co: co})
	}
	return out, nil
}

// Verify checks the upstream's signatures of image digest d in repository
// repo. opts carry the upstream's auth and transport (remote.WithAuth,
// remote.WithTransport, …); the ambient Docker keychain is not used.
//
// It reads the classic "sha256-<hex>.sig" tag and the image's OCI 1.1
// referrers (the referrers API, or its "sha256-<hex>" tag fallback):
// cosign OCI 1.1 signature manifests and Sigstore v0.3 bundles whose DSSE
// statement has cosign's sign predicate, as cosign v3 writes. Referrers
// with other predicates (attestations) are not signatures and are ignored.
//
// The error wraps ErrNoSignature when nothing was found, ErrBadSignature
// when signatures were found but none verifies. Other errors (registry
// unreachable, malformed policy) wrap neither; the Verification returned
// alongside still counts what was found.
func Verify(ctx context.Context, repo name.Repository, d digest.Digest, p TrustPolicy, opts ...remote.Option) (Verification, error) {
	if err := checkDigest(d); err != nil {
		return Verification{}, err
	}
	trusts, err := p.compile()
	if err != nil {
		return Verification{}, err
	}
	h, err := v1.NewHash(d.String())
	if err != nil {
		return Verification{}, fmt.Errorf("sign: digest %s: %w", d, err)
	}
	ropts := append(append([]remote.Option(nil), opts...), remote.WithContext(ctx))
	oopts := []ociremote.Option{ociremote.WithRemoteOptions(ropts...)}

	var (
		res      Verification
		failures []string
		fetchErr []error
	)
	fail := func(what string, err error) {
		if len(failures) < 8 {
			failures = append(failures, fmt.Sprintf("%s: %v", what, err))
		}
	}

	// Classic layout.
	tag, _ := SignatureTag(d) // d already checked
	sigs, err := classicSignatures(repo.Tag(tag), oopts)
	if err != nil {
		fetchErr = append(fetchErr, fmt.Errorf("tag %s: %w", tag, err))
	}
	if len(sigs) > 0 {
		res.Signatures += len(sigs)
		res.Layout = LayoutSigTag
		if who, ok := verifyClassic(ctx, sigs, h, trusts, fail); ok {
			res.Verified, res.Signer = true, who
		}
	}

	// OCI 1.1 referrers.
	found, who, ok, errs := verifyReferrers(ctx, repo, d, h, trusts, ropts, oopts, fail)
	fetchErr = append(fetchErr, errs...)
	res.Signatures += found
	if res.Layout == "" && found > 0 {
		res.Layout = LayoutReferrers
	}
	if ok && !res.Verified {
		res.Verified, res.Signer, res.Layout = true, who, LayoutReferrers
	}

	switch {
	case res.Verified:
		return res, nil
	case len(fetchErr) > 0:
		return res, fmt.Errorf("sign: verify %s@%s: %w", repo, d, errors.Join(fetchErr...))
	case res.Signatures == 0:
		return res, fmt.Errorf("sign: verify %s@%s: %w", repo, d, ErrNoSignature)
	default:
		return res, fmt.Errorf("sign: verify %s@%s: %w: %d found: %s", repo, d, ErrBadSignature, res.Signatures, strings.Join(failures, "; "))
	}
}

// classicSignatures reads the signatures manifest behind tag, if any.
func classicSignatures(ref name.Reference, oopts []ociremote.Option) ([]oci.Signature, error) {
	ss, err := ociremote.Signatures(ref, oopts...)
	if err != nil {
		return nil, err
	}
	list, err := ss.Get()
	if err != nil {
		return nil, err
	}
	out := make([]oci.Signature, 0, len(list))
	for i, s := range list {
		// Signature payloads are tiny; don't let an upstream make us
		// download big blobs in their place.
		n, err := s.Size()
		if err != nil {
			return nil, fmt.Errorf("signature layer %d: %w", i+1, err)
		}
		if n > maxSignatureBlob {
			return nil, fmt.Errorf("signature layer %d: %d bytes exceed the limit of %d", i+1, n, maxSignatureBlob)
		}
		// Copy reads the payload once instead of once per trust.
		c, err := static.Copy(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// verifyClassic tries every signature against every trust.
func verifyClassic(ctx context.Context, sigs []oci.Signature, h v1.Hash, trusts []trust, fail func(string, error)) (string, bool) {
	for i, s := range sigs {
		for _, t := range trusts {
			if _, err := cosign.VerifyImageSignature(ctx, s, h, t.co); err != nil {
				fail(fmt.Sprintf("signature %d", i+1), err)
				continue
			}
			if t.key != "" {
				return t.key, true
			}
			cert, err := s.Cert()
			if err != nil || cert == nil {
				return "certificate", true // verified by cosign, so it has one
			}
			sum, err := certificate.SummarizeCertificate(cert)
			if err != nil {
				return "certificate", true
			}
			return identityLabel(sum), true
		}
	}
	return "", false
}

func identityLabel(sum certificate.Summary) string {
	return fmt.Sprintf("%s (issuer %s)", sum.SubjectAlternativeName, sum.Issuer)
}

// bundlePredicateAnnotation is set by cosign on bundle referrer manifests.
const bundlePredicateAnnotation = "dev.sigstore.bundle.predicateType"

// verifyReferrers lists d's referrers and verifies the signatures among
// them. It returns how many signatures it found and who signed the first
// that verified.
func verifyReferrers(ctx context.Context, repo name.Repository, d digest.Digest, h v1.Hash, trusts []trust, ropts []remote.Option, oopts []ociremote.Option, fail func(string, error)) (found int, who string, ok bool, errs []error) {
	subject := repo.Digest(d.String())
	idx, err := remote.Referrers(subject, ropts...)
	if err != nil {
		return 0, "", false, []error{fmt.Errorf("referrers: %w", err)}
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return 0, "", false, []error{fmt.Errorf("referrers: %w", err)}
	}
	want, _ := hex.DecodeString(d.Encoded())
	for _, desc := range im.Manifests {
		ref := repo.Digest(desc.Digest.String())
		at := desc.ArtifactType
		if at == "" || at == emptyConfigMediaType {
			// The artifact type is missing, or is the empty config's media
			// type: older clients (go-containerregistry before v0.21, so
			// cosign v2.6's own binary) ignore a manifest's top-level
			// artifactType when they maintain the referrers tag fallback.
			// Read the manifest to find out what it is.
			if at, err = artifactTypeOf(ref, ropts); err != nil {
				errs = append(errs, fmt.Errorf("referrer %s: %w", desc.Digest, err))
				continue
			}
		}
		switch {
		case at == SignatureArtifactType:
			sigs, err := classicSignatures(ref, oopts)
			if err != nil {
				errs = append(errs, fmt.Errorf("referrer %s: %w", desc.Digest, err))
				continue
			}
			found += len(sigs)
			if !ok {
				who, ok = verifyClassic(ctx, sigs, h, trusts, fail)
			}
		case strings.HasPrefix(at, "application/vnd.dev.sigstore.bundle"):
			if pt, has := desc.Annotations[bundlePredicateAnnotation]; has && pt != CosignSignPredicateType {
				continue // an attestation, not a signature
			}
			b, err := ociremote.Bundle(ref, oopts...)
			if err != nil {
				errs = append(errs, fmt.Errorf("referrer %s: %w", desc.Digest, err))
				continue
			}
			if !isSignBundle(b) {
				continue
			}
			found++
			if ok {
				continue
			}
			who, ok = verifyBundle(ctx, b, want, trusts, func(err error) { fail("bundle "+desc.Digest.String(), err) })
		}
	}
	return found, who, ok, errs
}

// isSignBundle reports whether b is a cosign image signature: a DSSE
// envelope around an in-toto statement with cosign's sign predicate.
func isSignBundle(b *sgbundle.Bundle) bool {
	env := b.GetDsseEnvelope()
	if env == nil || env.GetPayloadType() != InTotoPayloadType {
		return false
	}
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(env.GetPayload(), &st); err != nil {
		return false
	}
	return st.PredicateType == CosignSignPredicateType
}

// verifyBundle verifies a Sigstore bundle with sigstore-go (through
// cosign), requiring its statement subject to be the image digest.
func verifyBundle(ctx context.Context, b *sgbundle.Bundle, want []byte, trusts []trust, fail func(error)) (string, bool) {
	for _, t := range trusts {
		co := *t.co
		if co.TrustedMaterial == nil {
			// A key needs no trusted root, but cosign's bundle verifier
			// wants one to hang the key on.
			co.TrustedMaterial = &root.BaseTrustedMaterial{}
		}
		res, err := cosign.VerifyNewBundle(ctx, &co, sgverify.WithArtifactDigest("sha256", want), b)
		if err != nil {
			fail(err)
			continue
		}
		if t.key != "" {
			return t.key, true
		}
		if res.Signature != nil && res.Signature.Certificate != nil {
			return identityLabel(*res.Signature.Certificate), true
		}
		return "certificate", true
	}
	return "", false
}

// artifactTypeOf reads a manifest's artifact type (or config media type).
func artifactTypeOf(ref name.Digest, ropts []remote.Option) (string, error) {
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return "", err
	}
	m, err := parseManifest(desc.Manifest)
	if err != nil {
		return "", err
	}
	if m.ArtifactType != "" {
		return m.ArtifactType, nil
	}
	return string(m.Config.MediaType), nil
}

// maxSignatureBlob bounds each blob FetchSignatures reads; signature
// payloads are a few hundred bytes, certificates a few kilobytes.
const maxSignatureBlob = 4 << 20

// maxSignatureLayers matches cosign's own limit on signature layers.
const maxSignatureLayers = 1000

// FetchSignatures returns the upstream's classic signature manifest
// ("sha256-<hex>.sig") for d with its config and layer blobs, or nil if
// there is none, so Airlock can serve it and merge it with its own. Blobs
// are checked against their digests while they are read.
func FetchSignatures(ctx context.Context, repo name.Repository, d digest.Digest, opts ...remote.Option) (*Artifact, error) {
	tag, err := SignatureTag(d)
	if err != nil {
		return nil, err
	}
	ropts := append(append([]remote.Option(nil), opts...), remote.WithContext(ctx))
	desc, err := remote.Get(repo.Tag(tag), ropts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sign: fetch %s:%s: %w", repo, tag, err)
	}
	switch desc.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	default:
		return nil, fmt.Errorf("sign: fetch %s:%s: unexpected media type %s", repo, tag, desc.MediaType)
	}
	m, err := parseManifest(desc.Manifest)
	if err != nil {
		return nil, fmt.Errorf("sign: fetch %s:%s: %w", repo, tag, err)
	}
	if len(m.Layers) > maxSignatureLayers {
		return nil, fmt.Errorf("sign: fetch %s:%s: %d layers exceed the limit of %d", repo, tag, len(m.Layers), maxSignatureLayers)
	}
	a := &Artifact{
		Manifest:  desc.Manifest,
		MediaType: string(desc.MediaType),
		Digest:    digest.Digest(desc.Digest.String()),
		Blobs:     make(map[digest.Digest][]byte, len(m.Layers)+1),
	}
	for _, bd := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		dg := digest.Digest(bd.Digest.String())
		if _, ok := a.Blobs[dg]; ok {
			continue
		}
		b, err := fetchBlob(repo.Digest(bd.Digest.String()), bd.Size, ropts)
		if err != nil {
			return nil, fmt.Errorf("sign: fetch %s:%s: blob %s: %w", repo, tag, dg, err)
		}
		a.Blobs[dg] = b
	}
	return a, nil
}

// fetchBlob reads one small blob; go-containerregistry verifies its digest.
func fetchBlob(ref name.Digest, size int64, ropts []remote.Option) ([]byte, error) {
	return fetchBlobMax(ref, size, maxSignatureBlob, ropts)
}
