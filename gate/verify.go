package gate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// VerifyStep checks the upstream's signatures of an image, cosign and
// Notary Project (Notation), against the signature rule of its upstream
// and repository.
//
// A rule's mode says what an image needs: required, a signature that
// verifies; if-present, no signature or one that verifies (signatures that
// exist but do not verify reject the image); none, nothing. Its require
// says which formats count: either (default: a verified cosign or Notation
// signature is enough; under if-present, signatures of a format that do
// not verify reject the image only when no other format verified), cosign,
// notation, or both (each must verify; under if-present, each format
// present must verify).
type VerifyStep struct {
	upstreams *upstream.Set
	policy    config.Signatures
}

// NewVerifyStep returns the verify step. Notation trust policies are read
// now, so a broken one stops `serve` at start, and again at every
// verification, so they can be changed without a restart.
func NewVerifyStep(ups *upstream.Set, p config.Signatures) (*VerifyStep, error) {
	for i, r := range p.Rules {
		if n := r.Notation; n != nil {
			if _, err := sign.LoadNotationTrust(n.TrustPolicy, n.TrustStore); err != nil {
				return nil, fmt.Errorf("signatures.rules[%d].notation: %w", i, err)
			}
		}
	}
	return &VerifyStep{upstreams: ups, policy: p}, nil
}

// Name implements Step.
func (v *VerifyStep) Name() string { return "verify" }

// State implements Step.
func (v *VerifyStep) State() state.State { return state.StateVerifying }

// formatCheck is one format's outcome.
type formatCheck struct {
	rec state.SignatureCheck
	// absent: no signature of the format; bad: found, none verifies.
	absent, bad bool
	err         error // could not tell: retry (or Permanent)
}

// Run implements Step.
func (v *VerifyStep) Run(ctx context.Context, s *Subject) (Verdict, error) {
	img := s.Image
	rule := v.policy.For(img.Upstream, img.Repository)
	if rule.Mode == config.VerifyNone || rule.Mode == "" {
		return Verdict{Outcome: Skip, Detail: "signature policy: none"}, nil
	}
	reg, ok := v.upstreams.Get(img.Upstream)
	if !ok {
		return Verdict{}, Permanent(fmt.Errorf("upstream %q is no longer configured", img.Upstream))
	}
	useCosign, useNotation, all := rule.Formats()
	var checks []formatCheck
	if useCosign {
		checks = append(checks, v.cosign(ctx, rule, reg, img))
	}
	if useNotation {
		checks = append(checks, v.notation(ctx, rule, reg, img))
	}
	return decideSignatures(rule.Mode, all, checks)
}

// decideSignatures turns each format's outcome into the step's verdict:
// the rule in VerifyStep's doc, in one place.
func decideSignatures(mode string, all bool, checks []formatCheck) (Verdict, error) {
	rec := &state.Verification{Mode: mode, Require: config.RequireEither}
	if all {
		rec.Require = config.RequireBoth
	} else if len(checks) == 1 {
		rec.Require = checks[0].rec.Format
	}
	var verified, bad, missing []string
	var errs []error
	for _, c := range checks {
		rec.Checks = append(rec.Checks, c.rec)
		rec.Signatures += c.rec.Signatures
		switch {
		case c.err != nil:
			errs = append(errs, c.err)
		case c.rec.Verified:
			verified = append(verified, c.rec.Format)
			if rec.Signer == "" {
				rec.Signer, rec.Layout = c.rec.Signer, c.rec.Layout
			}
		case c.bad:
			bad = append(bad, c.rec.Format+": "+c.rec.Detail)
		default:
			missing = append(missing, c.rec.Format)
		}
	}
	rec.Verified = len(verified) > 0 && (!all || len(verified) == len(checks))
	rec.Format = strings.Join(verified, "+")
	verdict := func(o Outcome, detail string) (Verdict, error) {
		rec.Detail = detail
		return Verdict{Outcome: o, Detail: detail, Update: func(i *state.Image) { i.Verification = rec }}, nil
	}
	switch {
	case !all && len(verified) > 0:
		return verdict(Pass, signedBy(rec))
	case all && len(bad) > 0, !all && len(errs) == 0 && len(bad) > 0:
		return verdict(Reject, "signature does not verify: "+strings.Join(bad, "; "))
	case len(errs) > 0:
		// A format the registry could not be asked about may still verify
		// (or, with require both, still fail): retry, never guess.
		for _, err := range errs {
			var p permanentError
			if errors.As(err, &p) {
				return Verdict{}, err
			}
		}
		return Verdict{}, errors.Join(errs...)
	case rec.Verified:
		return verdict(Pass, signedBy(rec))
	case mode == config.VerifyRequired && len(verified) == 0:
		return verdict(Reject, "no signature (signature policy: required)")
	case mode == config.VerifyRequired:
		return verdict(Reject, "no "+strings.Join(missing, " and ")+" signature (signature policy: required, require: both)")
	case len(verified) > 0:
		return verdict(Pass, signedBy(rec)+"; no "+strings.Join(missing, " and ")+" signature, which if-present allows")
	default:
		return verdict(Pass, "unsigned; signature policy if-present lets it pass")
	}
}

func signedBy(rec *state.Verification) string {
	var parts []string
	for _, c := range rec.Checks {
		if c.Verified {
			parts = append(parts, c.Format+" signature by "+c.Signer)
		}
	}
	return "signed: " + strings.Join(parts, ", ")
}

// cosign verifies the image's cosign signatures.
func (v *VerifyStep) cosign(ctx context.Context, rule config.SignatureRule, reg *upstream.Registry, img state.Image) formatCheck {
	c := formatCheck{rec: state.SignatureCheck{Format: config.RequireCosign}}
	trust, err := trustPolicy(rule)
	if err != nil {
		c.err = Permanent(err)
		return c
	}
	res, err := sign.Verify(ctx, reg.Repository(img.Repository), img.Digest, trust, reg.RemoteOptions()...)
	c.rec.Signatures, c.rec.Verified, c.rec.Signer, c.rec.Layout = res.Signatures, res.Verified, res.Signer, res.Layout
	c.judge(img, res.Verified, err)
	return c
}

// judge sorts a format's verification error: verified, absent, bad, or an
// error to retry (Permanent for a configuration error).
func (c *formatCheck) judge(img state.Image, verified bool, err error) {
	switch {
	case err == nil && verified:
		c.rec.Detail = "signed by " + c.rec.Signer
	case errors.Is(err, sign.ErrNoSignature):
		c.absent, c.rec.Detail = true, "no signature"
	case errors.Is(err, sign.ErrBadSignature):
		c.bad, c.rec.Detail = true, err.Error()
	case errors.Is(err, sign.ErrNotationPolicy):
		c.err = Permanent(fmt.Errorf("signature rule for %s/%s: %w", img.Upstream, img.Repository, err))
	case err != nil:
		c.err = fmt.Errorf("verify %s signatures of %s: %w", c.rec.Format, img.Ref, err)
	default:
		c.bad, c.rec.Detail = true, "signature does not verify"
	}
}

// notation verifies the image's Notary Project signatures.
func (v *VerifyStep) notation(ctx context.Context, rule config.SignatureRule, reg *upstream.Registry, img state.Image) formatCheck {
	c := formatCheck{rec: state.SignatureCheck{Format: config.RequireNotation}}
	res, err := verifyNotation(ctx, rule, reg, img)
	c.rec.Signatures, c.rec.Verified, c.rec.Signer, c.rec.Envelope = res.Signatures, res.Verified, res.Signer, res.Envelope
	c.judge(img, res.Verified, err)
	return c
}

// verifyNotation runs sign.VerifyNotation for img under rule: the trust
// policy's registryScopes match the image's Airlock name
// "<upstream>/<repository>".
func verifyNotation(ctx context.Context, rule config.SignatureRule, reg *upstream.Registry, img state.Image) (sign.NotationVerification, error) {
	if rule.Notation == nil {
		return sign.NotationVerification{}, errors.New("no notation trust configured")
	}
	trust, err := sign.LoadNotationTrust(rule.Notation.TrustPolicy, rule.Notation.TrustStore)
	if err != nil {
		return sign.NotationVerification{}, Permanent(err)
	}
	h, err := v1.NewHash(string(img.Digest))
	if err != nil {
		return sign.NotationVerification{}, Permanent(err)
	}
	subject := v1.Descriptor{MediaType: types.MediaType(img.MediaType), Digest: h, Size: img.Size}
	return sign.VerifyNotation(ctx, reg.Repository(img.Repository), img.Upstream+"/"+img.Repository, subject, trust, reg.RemoteOptions()...)
}

// trustPolicy reads a rule's cosign trust material from its files.
func trustPolicy(r config.SignatureRule) (sign.TrustPolicy, error) {
	// Key-signed images verify offline without a transparency log entry;
	// keyless certificates are short-lived, so their Rekor entry (checked
	// offline against the trusted root) proves when they were used.
	p := sign.TrustPolicy{IgnoreTlog: len(r.Identities) == 0}
	for _, k := range r.Keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return p, fmt.Errorf("signature key: %w", err)
		}
		p.Keys = append(p.Keys, b)
	}
	for _, id := range r.Identities {
		p.Identities = append(p.Identities, sign.Identity{Issuer: id.Issuer, IssuerRegexp: id.IssuerRegexp, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp})
	}
	if r.TrustedRoot != "" {
		b, err := os.ReadFile(r.TrustedRoot)
		if err != nil {
			return p, fmt.Errorf("trusted root: %w", err)
		}
		p.TrustedRootJSON = b
	}
	return p, nil
}
