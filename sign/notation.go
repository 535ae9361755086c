package sign

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/dir"
	"github.com/notaryproject/notation-go/signer"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Notary Project (Notation) signature layout: an OCI 1.1 referrer of the
// image whose only layer is a JWS or COSE envelope.
const (
	// NotationArtifactType is the artifact type of a Notation signature
	// manifest.
	NotationArtifactType = "application/vnd.cncf.notary.signature"
	// NotationJWS and NotationCOSE are the envelope media types.
	NotationJWS  = "application/jose+json"
	NotationCOSE = "application/cose"
	// notationThumbprints is the annotation notation sign sets on signature
	// manifests: the sha256 thumbprints of the signing certificate chain,
	// a JSON array of hex strings (`notation ls` shows it).
	notationThumbprints = "io.cncf.notary.x509chain.thumbprint#S256"
)

// ErrNotationPolicy means the Notation trust policy has no statement whose
// registryScopes cover the image: a configuration error, not a verdict.
var ErrNotationPolicy = errors.New("no notation trust policy statement applies")

// maxNotationSignatures bounds how many signature referrers of one image
// are read and verified: an upstream could attach thousands.
const maxNotationSignatures = 32

// NotationTrust is a Notary Project trust policy and the trust store its
// trustStores entries name, as `notation` keeps them: trustpolicy.json (OCI
// policy, version 1.0) and the truststore directory holding
// x509/<type>/<name>/*.crt.
type NotationTrust struct {
	policy *trustpolicy.Document
	store  string
}

// LoadNotationTrust reads and validates a trust policy document and checks
// that the trust store directory exists. storeDir is notation's
// "truststore" directory (the one holding x509/).
func LoadNotationTrust(policyFile, storeDir string) (NotationTrust, error) {
	raw, err := os.ReadFile(policyFile)
	if err != nil {
		return NotationTrust{}, fmt.Errorf("notation trust policy: %w", err)
	}
	var doc trustpolicy.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return NotationTrust{}, fmt.Errorf("notation trust policy %s: %w", policyFile, err)
	}
	if err := doc.Validate(); err != nil {
		return NotationTrust{}, fmt.Errorf("notation trust policy %s: %w", policyFile, err)
	}
	if fi, err := os.Stat(filepath.Join(storeDir, "x509")); err != nil || !fi.IsDir() {
		return NotationTrust{}, fmt.Errorf("notation trust store %s: no x509 directory (it holds x509/ca/<name>/*.crt, as notation cert add writes under truststore/)", storeDir)
	}
	return NotationTrust{policy: &doc, store: storeDir}, nil
}

// trustStoreFS maps notation's "truststore/x509/…" paths onto a directory
// that is itself the trust store, so it can live anywhere.
type trustStoreFS struct {
	fs.FS
	root string
}

func (t trustStoreFS) SysPath(items ...string) (string, error) {
	p := path.Join(items...)
	p = strings.TrimPrefix(p, dir.TrustStoreDir+"/")
	return filepath.Join(t.root, filepath.FromSlash(p)), nil
}

func (t NotationTrust) verifier() (notation.Verifier, error) {
	if t.policy == nil {
		return nil, errors.New("sign: notation trust policy not loaded")
	}
	ts := truststore.NewX509TrustStore(trustStoreFS{FS: os.DirFS(t.store), root: t.store})
	// No plugin manager: a trust policy naming a verification plugin fails
	// verification instead of running an executable.
	return verifier.NewWithOptions(t.policy, ts, nil, verifier.VerifierOptions{})
}

// NotationVerification is the outcome of VerifyNotation.
type NotationVerification struct {
	// Signatures is how many Notation signature referrers were found.
	Signatures int
	// Verified reports whether one of them verified.
	Verified bool
	// Signer names the verified signature's certificate: leaf subject and
	// the subject of the chain's root.
	Signer string
	// Envelope is the verified signature's envelope media type.
	Envelope string
	// Kept is the verified signature manifest with its blobs, to serve next
	// to Airlock's own.
	Kept *Artifact
}

// VerifyNotation verifies the upstream's Notation signatures of image
// subject (digest, size and media type as Airlock fetched and checked
// them) in repo against t. scope is the reference the trust policy's
// registryScopes are matched against: "<registry>/<repository>", without
// tag or digest.
//
// The signature manifests are found through the referrers API (or its tag
// fallback). Each must be an OCI manifest of artifact type
// NotationArtifactType whose subject is the image and whose one layer is
// a JWS or COSE envelope; anything else counts as a signature that does
// not verify. The error wraps ErrNoSignature when none was found,
// ErrBadSignature when none verifies; registry failures wrap neither.
func VerifyNotation(ctx context.Context, repo name.Repository, scope string, subject v1.Descriptor, t NotationTrust, opts ...remote.Option) (NotationVerification, error) {
	var res NotationVerification
	v, err := t.verifier()
	if err != nil {
		return res, fmt.Errorf("sign: notation verifier: %w", err)
	}
	ref := scope + "@" + subject.Digest.String()
	if _, err := t.policy.GetApplicableTrustPolicy(ref); err != nil {
		return res, fmt.Errorf("sign: notation %s: %w: %v", ref, ErrNotationPolicy, err)
	}
	ropts := append(append([]remote.Option(nil), opts...), remote.WithContext(ctx))
	nr := &notationRepo{repo: repo, subject: subject, ropts: ropts, blobs: map[string]notationSig{}}
	_, outcomes, verr := notation.Verify(ctx, v, nr, notation.VerifyOptions{ArtifactReference: ref, MaxSignatureAttempts: maxNotationSignatures})
	res.Signatures = nr.found
	if nr.err != nil {
		return res, fmt.Errorf("sign: notation signatures of %s@%s: %w", repo, subject.Digest, nr.err)
	}
	reasons := nr.rejected
	if verr == nil && len(outcomes) == 1 && outcomes[0].EnvelopeContent != nil {
		o := outcomes[0]
		if failed := unenforced(o); failed != "" {
			// "audit" or "permissive" levels log an authenticity failure and
			// let it pass; Airlock does not count such a signature.
			reasons = append(reasons, failed)
		} else {
			res.Verified = true
			res.Signer = notationSigner(o.EnvelopeContent.SignerInfo.CertificateChain)
			res.Envelope = nr.lastEnvelope
			if sig, ok := nr.blobs[nr.lastManifest]; ok {
				res.Kept = sig.artifact
			}
			return res, nil
		}
	}
	if verr != nil {
		reasons = append(reasons, verr.Error())
	}
	switch {
	case verr == nil && len(outcomes) > 0 && outcomes[0].EnvelopeContent == nil:
		// A trust policy at level "skip" verifies nothing; Airlock does not
		// count that as a verified signature.
		return res, fmt.Errorf("sign: notation %s@%s: %w: the trust policy for %s skips verification", repo, subject.Digest, ErrBadSignature, scope)
	case res.Signatures == 0:
		return res, fmt.Errorf("sign: notation %s@%s: %w", repo, subject.Digest, ErrNoSignature)
	default:
		return res, fmt.Errorf("sign: notation %s@%s: %w: %d found: %s", repo, subject.Digest, ErrBadSignature, res.Signatures, shortReasons(reasons, 4))
	}
}

// unenforced names an integrity or authenticity check that failed but was
// only logged, or "" when both passed.
func unenforced(o *notation.VerificationOutcome) string {
	for _, r := range o.VerificationResults {
		if r.Error != nil && (r.Type == trustpolicy.TypeIntegrity || r.Type == trustpolicy.TypeAuthenticity) {
			return fmt.Sprintf("%s check failed (the trust policy only logs it): %v", r.Type, r.Error)
		}
	}
	return ""
}

func shortReasons(r []string, n int) string {
	if len(r) <= n {
		return strings.Join(r, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(r[:n], "; "), len(r)-n)
}

// notationSigner labels a certificate chain: "<leaf subject> (CA <root subject>)".
func notationSigner(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return "notation: no certificate"
	}
	leaf, root := chain[0], chain[len(chain)-1]
	if len(chain) == 1 {
		return "x509 " + leaf.Subject.String()
	}
	return fmt.Sprintf("x509 %s (CA %s)", leaf.Subject.String(), root.Subject.String())
}

// notationSig is one signature manifest read from the upstream, checked.
type notationSig struct {
	envelope []byte
	layer    ocispec.Descriptor
	artifact *Artifact
}

// notationRepo is notation-go's registry.Repository over
// go-containerregistry, read-only, bound to one image. It reads each
// signature manifest and envelope while listing, so a broken referrer
// counts as a signature that does not verify instead of aborting the
// verification of the good ones.
type notationRepo struct {
	repo    name.Repository
	subject v1.Descriptor
	ropts   []remote.Option

	found        int
	rejected     []string
	blobs        map[string]notationSig // by manifest digest
	lastManifest string
	lastEnvelope string
	err          error // a registry failure: retry, don't judge
}

// Resolve returns the image's descriptor as Airlock verified it, never what
// the upstream says now.
func (r *notationRepo) Resolve(_ context.Context, reference string) (ocispec.Descriptor, error) {
	if reference != r.subject.Digest.String() {
		return ocispec.Descriptor{}, fmt.Errorf("reference %q is not the image being verified", reference)
	}
	return ocispec.Descriptor{MediaType: string(r.subject.MediaType), Digest: digest.Digest(r.subject.Digest.String()), Size: r.subject.Size}, nil
}

// ListSignatures passes the checked signature manifests to fn, once.
func (r *notationRepo) ListSignatures(_ context.Context, _ ocispec.Descriptor, fn func([]ocispec.Descriptor) error) error {
	idx, err := remote.Referrers(r.repo.Digest(r.subject.Digest.String()), r.ropts...)
	if err != nil {
		r.err = fmt.Errorf("referrers: %w", err)
		return r.err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		r.err = fmt.Errorf("referrers: %w", err)
		return r.err
	}
	var good []ocispec.Descriptor
	for _, desc := range im.Manifests {
		at := desc.ArtifactType
		if at == "" || at == emptyConfigMediaType {
			// Old tag-fallback indexes lose the artifact type: read it.
			if at, err = artifactTypeOf(r.repo.Digest(desc.Digest.String()), r.ropts); err != nil {
				if !retryable(err) {
					continue // not readable as a manifest: not a signature
				}
				r.err = fmt.Errorf("referrer %s: %w", desc.Digest, err)
				return r.err
			}
		}
		if at != NotationArtifactType {
			continue
		}
		if r.found >= maxNotationSignatures {
			r.rejected = append(r.rejected, fmt.Sprintf("more than %d signatures: the rest are not read", maxNotationSignatures))
			break
		}
		r.found++
		sig, err := r.read(desc)
		if err != nil {
			var bad badNotation
			if !errors.As(err, &bad) {
				r.err = fmt.Errorf("signature %s: %w", desc.Digest, err)
				return r.err
			}
			r.rejected = append(r.rejected, fmt.Sprintf("signature %s: %v", desc.Digest, err))
			continue
		}
		r.blobs[desc.Digest.String()] = sig
		good = append(good, ocispec.Descriptor{MediaType: string(desc.MediaType), Digest: digest.Digest(desc.Digest.String()), Size: desc.Size})
	}
	if len(good) == 0 {
		return nil
	}
	return fn(good)
}

// badNotation is a signature manifest that is not a well-formed Notation
// signature of this image: judged, not retried.
type badNotation struct{ error }

func (r *notationRepo) read(desc v1.Descriptor) (notationSig, error) {
	if desc.Size <= 0 || desc.Size > maxSignatureBlob {
		return notationSig{}, badNotation{fmt.Errorf("manifest size %d is outside 1..%d", desc.Size, maxSignatureBlob)}
	}
	ref := r.repo.Digest(desc.Digest.String())
	got, err := remote.Get(ref, r.ropts...)
	if err != nil {
		if retryable(err) {
			return notationSig{}, err
		}
		return notationSig{}, badNotation{fmt.Errorf("manifest: %w", err)}
	}
	if got.MediaType != types.OCIManifestSchema1 {
		return notationSig{}, badNotation{fmt.Errorf("media type %s is not an OCI image manifest", got.MediaType)}
	}
	m, err := parseManifest(got.Manifest)
	if err != nil {
		return notationSig{}, badNotation{err}
	}
	switch {
	case m.ArtifactType != NotationArtifactType && string(m.Config.MediaType) != NotationArtifactType:
		return notationSig{}, badNotation{fmt.Errorf("artifact type %q is not %s", m.ArtifactType, NotationArtifactType)}
	case m.Subject == nil || m.Subject.Digest != r.subject.Digest:
		return notationSig{}, badNotation{errors.New("its subject is not this image")}
	case len(m.Layers) != 1:
		return notationSig{}, badNotation{fmt.Errorf("%d layers, a signature has one envelope", len(m.Layers))}
	}
	l := m.Layers[0]
	if l.MediaType != NotationJWS && l.MediaType != NotationCOSE {
		return notationSig{}, badNotation{fmt.Errorf("envelope media type %s is not %s or %s", l.MediaType, NotationJWS, NotationCOSE)}
	}
	env, err := fetchBlob(r.repo.Digest(l.Digest.String()), l.Size, r.ropts)
	if err != nil {
		if retryable(err) {
			return notationSig{}, err
		}
		return notationSig{}, badNotation{fmt.Errorf("envelope: %w", err)}
	}
	a := &Artifact{
		Manifest:     got.Manifest,
		MediaType:    string(got.MediaType),
		Digest:       digest.Digest(got.Digest.String()),
		ArtifactType: NotationArtifactType,
		Blobs:        map[digest.Digest][]byte{digest.Digest(l.Digest.String()): env},
	}
	// Keep the config too (the empty config, or notation's older layout's
	// signature config), bounded like every signature blob.
	cd := digest.Digest(m.Config.Digest.String())
	if _, ok := a.Blobs[cd]; !ok {
		cfg, err := fetchBlob(r.repo.Digest(m.Config.Digest.String()), m.Config.Size, r.ropts)
		if err != nil {
			if retryable(err) {
				return notationSig{}, err
			}
			return notationSig{}, badNotation{fmt.Errorf("config: %w", err)}
		}
		a.Blobs[cd] = cfg
	}
	return notationSig{envelope: env, layer: ocispec.Descriptor{MediaType: string(l.MediaType), Digest: digest.Digest(l.Digest.String()), Size: l.Size}, artifact: a}, nil
}

// FetchSignatureBlob returns the envelope read while listing.
func (r *notationRepo) FetchSignatureBlob(_ context.Context, desc ocispec.Descriptor) ([]byte, ocispec.Descriptor, error) {
	sig, ok := r.blobs[desc.Digest.String()]
	if !ok {
		return nil, ocispec.Descriptor{}, fmt.Errorf("signature %s was not listed", desc.Digest)
	}
	r.lastManifest, r.lastEnvelope = desc.Digest.String(), sig.layer.MediaType
	return sig.envelope, sig.layer, nil
}

// PushSignature is not supported: Airlock never writes to an upstream.
func (r *notationRepo) PushSignature(context.Context, string, []byte, ocispec.Descriptor, map[string]string) (ocispec.Descriptor, ocispec.Descriptor, error) {
	return ocispec.Descriptor{}, ocispec.Descriptor{}, errors.New("sign: the upstream is read-only")
}

// NotationSigner signs approved images with a Notation key and certificate
// chain, so tools that verify with notation (Ratify, AKS image integrity)
// trust Airlock's approval.
type NotationSigner struct {
	signer     *signer.GenericSigner
	envelope   string
	thumbprint string
}

// LoadNotationSigner reads a PEM private key and its certificate chain
// (leaf first, as notation wants it). format is "jws" (default) or "cose".
func LoadNotationSigner(keyFile, chainFile, format string) (*NotationSigner, error) {
	s, err := signer.NewGenericSignerFromFiles(keyFile, chainFile)
	if err != nil {
		return nil, fmt.Errorf("sign: notation key %s / certificate chain %s: %w", keyFile, chainFile, err)
	}
	ns := &NotationSigner{signer: s}
	switch format {
	case "", "jws":
		ns.envelope = NotationJWS
	case "cose":
		ns.envelope = NotationCOSE
	default:
		return nil, fmt.Errorf("sign: notation signature format %q is not jws or cose", format)
	}
	chain, err := readChain(chainFile)
	if err != nil {
		return nil, err
	}
	tps := make([]string, len(chain))
	for i, c := range chain {
		sum := sha256.Sum256(c.Raw)
		tps[i] = hex.EncodeToString(sum[:])
	}
	tp, _ := json.Marshal(tps)
	ns.thumbprint = string(tp)
	return ns, nil
}

func readChain(file string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("sign: notation certificate chain: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sign: notation certificate chain %s: %w", file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sign: notation certificate chain %s: no certificate", file)
	}
	return out, nil
}

// Sign returns the Notation signature referrer of an image.
func (n *NotationSigner) Sign(ctx context.Context, d digest.Digest, size int64, mediaType string) (Artifact, error) {
	subject, err := subjectDescriptor(d, size, mediaType)
	if err != nil {
		return Artifact{}, err
	}
	env, _, err := n.signer.Sign(ctx, ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: size}, notation.SignerSignOptions{
		SignatureMediaType: n.envelope,
		SigningAgent:       "airlock",
	})
	if err != nil {
		return Artifact{}, fmt.Errorf("sign: notation sign %s: %w", d, err)
	}
	return referrerArtifact(NotationArtifactType, subject, "", nil, []layer{{data: env, mediaType: n.envelope}}, map[string]string{
		notationThumbprints: n.thumbprint,
		CreatedAnnotation:   now().UTC().Format(time.RFC3339),
	})
}

// retryable reports whether err is the registry or the network failing
// (server errors, throttling, connections, timeouts), worth a retry, rather
// than the upstream sending something that is not a valid signature.
func retryable(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 500 || terr.StatusCode == http.StatusTooManyRequests
	}
	var uerr *url.Error
	var nerr net.Error
	return errors.As(err, &uerr) || errors.As(err, &nerr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
