package gate

import (
	"context"
	"fmt"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// PolicyStep makes the final decision once every check has passed.
type PolicyStep struct {
	policy string
}

// NewPolicyStep returns the policy step for gate.policy.
func NewPolicyStep(policy string) (*PolicyStep, error) {
	switch policy {
	case config.PolicyManual, config.PolicyAuto:
		return &PolicyStep{policy: policy}, nil
	}
	return nil, fmt.Errorf("unknown gate policy %q", policy)
}

// Name implements Step.
func (p *PolicyStep) Name() string { return "policy" }

// State implements Step: the decision is instant and keeps the state.
func (p *PolicyStep) State() state.State { return "" }

// Run implements Step.
func (p *PolicyStep) Run(_ context.Context, s *Subject) (Verdict, error) {
	switch p.policy {
	case config.PolicyAuto:
		return Verdict{Outcome: Pass, Detail: "auto policy: approved once every step passed"}, nil
	default:
		if s.Rescan {
			// Under the manual policy there is nothing to re-check: the
			// admin's approval stands.
			return Verdict{Outcome: Pass, Detail: "manual policy: the admin's approval stands"}, nil
		}
		return Verdict{Outcome: Hold, Detail: "manual policy: waiting for an admin to approve"}, nil
	}
}
