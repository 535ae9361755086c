package gate

import (
	"fmt"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// Pipeline assembles the steps cfg asks for, in order: fetch; verify
// (cosign and Notation) when a signature rule applies; scan and lifecycle
// (base OS and publisher end of life) under the scan policy (sc must then
// be set); malware when malware.clamd is set; the policy decision; sign
// (cosign, and Notation with signing.notation) when signer is set.
func Pipeline(cfg *config.Config, ups *upstream.Set, cs *content.Store, st *state.Store, sc Scanner, signer *sign.Signer) ([]Step, error) {
	fetch, err := NewFetchStep(ups, cs, st, cfg.Gate.Platforms, cfg.Limits.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("gate.platforms: %w", err)
	}
	steps := []Step{fetch}
	if verifies(cfg.Signatures) {
		vs, err := NewVerifyStep(ups, cfg.Signatures)
		if err != nil {
			return nil, err
		}
		steps = append(steps, vs)
	}
	if cfg.Gate.Policy == config.PolicyScan {
		if sc == nil {
			return nil, fmt.Errorf("gate.policy %s needs a scanner", cfg.Gate.Policy)
		}
		steps = append(steps, NewScanStep(sc, cs, st), NewLifecycleStep(sc, ups, cs, cfg.Policy, cfg.Limits.MaxManifestBytes))
	}
	if cfg.Malware.Clamd != "" {
		mw, err := NewMalwareStep(cfg.Malware, cs)
		if err != nil {
			return nil, fmt.Errorf("malware.clamd: %w", err)
		}
		steps = append(steps, mw)
	}
	policy, err := NewPolicyStep(cfg.Gate.Policy, cfg.Policy)
	if err != nil {
		return nil, err
	}
	steps = append(steps, policy.withUpstreamVEX(ups, cfg.Signatures))
	if signer != nil {
		ss := NewSignStep(signer, ups, cs, st, cfg.Signing, cfg.Policy, cfg.Signatures)
		if n := cfg.Signing.Notation; n != nil {
			if ss, err = ss.WithNotation(*n); err != nil {
				return nil, err
			}
		}
		steps = append(steps, ss)
	}
	return steps, nil
}

// verifies reports whether any signature rule asks for verification.
func verifies(s config.Signatures) bool {
	if s.Mode != config.VerifyNone {
		return true
	}
	for _, r := range s.Rules {
		if r.Mode != config.VerifyNone {
			return true
		}
	}
	return false
}
