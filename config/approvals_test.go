package config

import "testing"

// TestApprovalsRequired covers gate.approvals_required: default 1, 1..5
// loaded as written, anything else refused naming the key.
func TestApprovalsRequired(t *testing.T) {
	noEnvToken(t)
	if got := Default().Gate.ApprovalsRequired; got != 1 {
		t.Errorf("default approvals_required = %d, want 1", got)
	}
	for _, tc := range []struct {
		yaml    string
		want    int
		wantErr string
	}{
		{"", 1, ""},
		{"gate: {approvals_required: 1}", 1, ""},
		{"gate: {approvals_required: 2}", 2, ""},
		{"gate: {approvals_required: 5}", 5, ""},
		{"gate: {approvals_required: 0}", 0, "gate.approvals_required: 0 is outside 1..5"},
		{"gate: {approvals_required: -1}", 0, "gate.approvals_required: -1 is outside 1..5"},
		{"gate: {approvals_required: 6}", 0, "gate.approvals_required: 6 is outside 1..5"},
		{"gate: {approvals_required: two}", 0, "approvals_required"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			if c := loadYAML(t, tc.yaml+"\n", tc.wantErr); c != nil && c.Gate.ApprovalsRequired != tc.want {
				t.Errorf("approvals_required = %d, want %d", c.Gate.ApprovalsRequired, tc.want)
			}
		})
	}
}
