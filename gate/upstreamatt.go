package gate

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/policy"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
	"github.com/airlockproxy/airlock/vex"
)

// Upstream attestations: the SBOM, provenance and OpenVEX attestations an
// upstream publisher attached to an image (cosign's ".att" tag, OCI 1.1
// referrers, Sigstore bundles) are evidence under the image's signature
// rule, exactly like upstream signatures (see SignStep.upstreamEvidence).
//
//   - Only attestations that verify under the rule's cosign trust material
//     (its keys or keyless identities, checked with cosign's library) and
//     whose in-toto subject is the image's digest count; with signature
//     mode none, or a rule without cosign keys or identities, none is even
//     read. The publisher is an adversary: an unsigned VEX is only their
//     claim that their CVEs do not matter, and an unsigned SBOM is only
//     their word about what the image holds.
//   - The policy step applies the verified OpenVEX documents to the
//     decision like policy.vex files, before them, so the operator's own
//     documents have the last word. A statement suppresses a match only if
//     its product names this image's digest (vex.Set.Suppresses), and the
//     record says which upstream attestation (blob digest and signer) did.
//   - The sign step serves the verified attestations next to Airlock's own:
//     their DSSE layers go into Airlock's ".att" manifest before Airlock's
//     layers (`cosign verify-attestation --key publisher.pub` verifies them
//     through Airlock, `--key airlock.pub` Airlock's), and each gets an OCI
//     1.1 referrer built by Airlock (annotation sign.UpstreamSignerAnnotation
//     names the signer). Like everything Airlock signs, they are served
//     exactly while the image is approved.

// upstreamAttestations reads the attestations upstreams attach to images.
// A nil *upstreamAttestations reads none.
type upstreamAttestations struct {
	upstreams *upstream.Set
	verify    config.Signatures
	log       *slog.Logger
}

// read returns img's upstream attestations that verify under its
// signature rule (none without a rule with cosign trust material). The
// error is for what retrying may fix (the upstream unreachable); what was
// read before it is returned alongside.
func (u *upstreamAttestations) read(ctx context.Context, img state.Image) ([]sign.UpstreamAttestation, error) {
	if u == nil {
		return nil, nil
	}
	rule := u.verify.For(img.Upstream, img.Repository)
	if rule.Mode == config.VerifyNone || rule.Mode == "" || (len(rule.Keys) == 0 && len(rule.Identities) == 0) {
		return nil, nil
	}
	reg, ok := u.upstreams.Get(img.Upstream)
	if !ok {
		return nil, nil
	}
	trust, err := trustPolicy(rule)
	if err != nil {
		return nil, err
	}
	kept, dropped, err := sign.VerifiedAttestations(ctx, reg.Repository(img.Repository), img.Digest, trust, reg.RemoteOptions()...)
	if len(dropped) > 0 {
		u.log.Warn("upstream attestations dropped", "image", img.Ref.String(), "dropped", len(dropped), "why", shortList(dropped, 4))
	}
	return kept, err
}

// withUpstreamVEX makes the policy decision apply the OpenVEX attestations
// the upstream attached to an image that verify under the image's
// signature rule (verify), read through ups.
func (p *PolicyStep) withUpstreamVEX(ups *upstream.Set, verify config.Signatures) *PolicyStep {
	p.upstream = &upstreamAttestations{upstreams: ups, verify: verify, log: slog.Default()}
	return p
}

// vex returns the statements of img's verified upstream OpenVEX
// attestations, each document named by its attestation's blob digest and
// signer. Nothing is read when in has no vulnerability to suppress. An
// upstream that cannot be reached fails the step (retried; a rescan keeps
// the image approved): deciding without its VEX would reject an image the
// VEX clears. A document that is not OpenVEX is ignored and logged: it is
// the publisher's mistake, and ignoring it suppresses nothing.
func (u *upstreamAttestations) vex(ctx context.Context, img state.Image, in *policy.Input) (*vex.Set, error) {
	set := &vex.Set{}
	if u == nil || len(in.Vulnerabilities) == 0 {
		return set, nil
	}
	atts, err := u.read(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("upstream VEX attestations of %s: %w", img.Ref, err)
	}
	for _, a := range atts {
		if !sign.IsVEXPredicate(a.PredicateType) {
			continue
		}
		source := fmt.Sprintf("upstream attestation %s signed by %s", a.Source, a.Signer)
		if err := set.Add(source, a.Predicate); err != nil {
			u.log.Warn("policy: upstream VEX attestation ignored", "image", img.Ref.String(), "err", err)
		}
	}
	return set, nil
}

// upstreamAttestations returns Airlock's attestation manifest att and
// referrers refs with the verified upstream attestations of img merged in
// (sign.MergeAttestations). As with upstream signatures, an upstream that
// cannot be reached is no reason not to sign: what could be read is kept,
// and the rest is logged.
func (g *SignStep) upstreamAttestations(ctx context.Context, img state.Image, att sign.Artifact, refs []sign.Artifact) (sign.Artifact, []sign.Artifact) {
	u := &upstreamAttestations{upstreams: g.upstreams, verify: g.verify, log: g.log}
	atts, err := u.read(ctx, img)
	if err != nil {
		g.log.Warn("sign: upstream attestations not all read", "image", img.Ref.String(), "err", err)
	}
	var serve []sign.UpstreamAttestation
	for _, a := range atts {
		if a.Envelope == nil {
			g.log.Info("sign: upstream attestation not served", "image", img.Ref.String(), "source", a.Source.String(), "predicate_type", a.PredicateType, "why", a.NotServed)
			continue
		}
		serve = append(serve, a)
	}
	if len(serve) == 0 {
		return att, refs
	}
	merged, upRefs, err := sign.MergeAttestations(img.Digest, img.Size, img.MediaType, att, serve)
	if err != nil {
		g.log.Warn("sign: upstream attestations not kept", "image", img.Ref.String(), "err", err)
		return att, refs
	}
	return merged, append(refs[:len(refs):len(refs)], upRefs...)
}
