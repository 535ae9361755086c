package gate

import (
	"context"
	"fmt"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/state"
)

// WithNotation makes the sign step also sign in the Notary Project format
// with key and certificate chain, as signing.notation configures: the
// signature is one more referrer of the image, served only while the image
// is approved, like every artifact Airlock makes.
func (g *SignStep) WithNotation(c config.NotationSigning) (*SignStep, error) {
	ns, err := sign.LoadNotationSigner(c.Key, c.CertificateChain, c.Format)
	if err != nil {
		return nil, fmt.Errorf("signing.notation: %w", err)
	}
	g.notation = ns
	return g, nil
}

// notationReferrers returns Airlock's own Notation signature of img (when
// signing.notation is set) and the upstream's Notation signature that
// verifies under the signature rule (when the rule has Notation trust), to
// serve as referrers next to Airlock's cosign artifacts. Nothing unverified
// from the upstream is kept; the upstream being down is no reason not to
// sign.
func (g *SignStep) notationReferrers(ctx context.Context, img state.Image) ([]sign.Artifact, error) {
	var out []sign.Artifact
	if g.notation != nil {
		a, err := g.notation.Sign(ctx, img.Digest, img.Size, img.MediaType)
		if err != nil {
			return nil, fmt.Errorf("notation sign %s: %w", img.Ref, err)
		}
		out = append(out, a)
	}
	rule := g.verify.For(img.Upstream, img.Repository)
	if rule.Mode == config.VerifyNone || rule.Mode == "" || rule.Notation == nil {
		return out, nil
	}
	reg, ok := g.upstreams.Get(img.Upstream)
	if !ok {
		return out, nil
	}
	res, err := verifyNotation(ctx, rule, reg, img)
	switch {
	case err == nil && res.Kept != nil:
		out = append(out, *res.Kept)
	case err != nil && res.Signatures > 0:
		g.log.Warn("sign: upstream notation signature not kept", "image", img.Ref.String(), "err", err)
	}
	return out, nil
}
