package gate

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
)

// TestDecideSignatures is the signature rule's table: which combinations
// of cosign and Notation outcomes pass, reject or retry under each mode
// and require.
func TestDecideSignatures(t *testing.T) {
	ok := func(f string) formatCheck {
		return formatCheck{rec: state.SignatureCheck{Format: f, Signatures: 1, Verified: true, Signer: f + "-signer"}}
	}
	absent := func(f string) formatCheck {
		return formatCheck{rec: state.SignatureCheck{Format: f}, absent: true}
	}
	bad := func(f string) formatCheck {
		return formatCheck{rec: state.SignatureCheck{Format: f, Signatures: 1, Detail: "wrong key"}, bad: true}
	}
	down := func(f string) formatCheck {
		return formatCheck{rec: state.SignatureCheck{Format: f}, err: errors.New("upstream 503")}
	}
	const (
		cos = config.RequireCosign
		not = config.RequireNotation
		req = config.VerifyRequired
		ifp = config.VerifyIfPresent
	)
	tests := []struct {
		name   string
		mode   string
		all    bool
		checks []formatCheck
		want   Outcome // -1: a retryable error
		format string
		detail string
	}{
		{"either: notation alone verifies", req, false, []formatCheck{absent(cos), ok(not)}, Pass, "notation", "notation signature by notation-signer"},
		{"either: cosign alone verifies", req, false, []formatCheck{ok(cos), absent(not)}, Pass, "cosign", "cosign signature by"},
		{"either: one verifies, the other is bad", req, false, []formatCheck{bad(cos), ok(not)}, Pass, "notation", ""},
		{"either: one verifies, the other is down", req, false, []formatCheck{ok(cos), down(not)}, Pass, "cosign", ""},
		{"either: both verify", req, false, []formatCheck{ok(cos), ok(not)}, Pass, "cosign+notation", ""},
		{"either: unsigned, required", req, false, []formatCheck{absent(cos), absent(not)}, Reject, "", "no signature"},
		{"either: unsigned, if-present", ifp, false, []formatCheck{absent(cos), absent(not)}, Pass, "", "unsigned"},
		{"either: bad, if-present", ifp, false, []formatCheck{absent(cos), bad(not)}, Reject, "", "notation: wrong key"},
		{"either: bad and down: retry", req, false, []formatCheck{bad(cos), down(not)}, -1, "", ""},
		{"either: unsigned and down: retry", ifp, false, []formatCheck{absent(cos), down(not)}, -1, "", ""},
		{"notation only: verifies", req, false, []formatCheck{ok(not)}, Pass, "notation", ""},
		{"notation only: bad", req, false, []formatCheck{bad(not)}, Reject, "", "does not verify"},
		{"both: both verify", req, true, []formatCheck{ok(cos), ok(not)}, Pass, "cosign+notation", ""},
		{"both: one missing, required", req, true, []formatCheck{ok(cos), absent(not)}, Reject, "cosign", "no notation signature"},
		{"both: one missing, if-present", ifp, true, []formatCheck{ok(cos), absent(not)}, Pass, "cosign", "if-present allows"},
		{"both: one bad", ifp, true, []formatCheck{ok(cos), bad(not)}, Reject, "cosign", "does not verify"},
		{"both: one bad, other down: reject", req, true, []formatCheck{down(cos), bad(not)}, Reject, "", "does not verify"},
		{"both: one down: retry", req, true, []formatCheck{ok(cos), down(not)}, -1, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := decideSignatures(tc.mode, tc.all, tc.checks)
			if tc.want == -1 {
				if err == nil {
					t.Fatalf("got %v (%s), want a retryable error", v.Outcome, v.Detail)
				}
				return
			}
			if err != nil || v.Outcome != tc.want {
				t.Fatalf("got %v (%s), %v; want %v", v.Outcome, v.Detail, err, tc.want)
			}
			if !strings.Contains(v.Detail, tc.detail) {
				t.Errorf("detail %q lacks %q", v.Detail, tc.detail)
			}
			var img state.Image
			v.Update(&img)
			rec := img.Verification
			if rec.Format != tc.format || len(rec.Checks) != len(tc.checks) {
				t.Errorf("record format %q with %d checks, want %q with %d", rec.Format, len(rec.Checks), tc.format, len(tc.checks))
			}
			if rec.Verified != (tc.want == Pass && tc.format != "" && (!tc.all || tc.format == "cosign+notation")) {
				t.Errorf("record verified = %v", rec.Verified)
			}
		})
	}
}
