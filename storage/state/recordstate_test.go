package state

import (
	"encoding/json"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestRecordState: the quick read of a record's state agrees with
// decoding the record, however the record is laid out: as json.Marshal
// writes it, indented, with its keys in another order, with a nested
// value or escaped strings before the state, and with the state's name
// inside another value (a repository, a step) meaning nothing.
func TestRecordState(t *testing.T) {
	img := Image{
		Ref:   Ref{Upstream: "docker.io", Repository: "library/app", Digest: digest.FromString("x")},
		State: StateRejected, Reason: `policy: "state":"approved"`,
		Steps: []StepResult{{Step: "scan", Status: "approved"}},
	}
	compact, err := json.Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	indented, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, record string
		want         State
		wantErr      bool
	}{
		{"compact", string(compact), StateRejected, false},
		{"indented", string(indented), StateRejected, false},
		{"state first", `{"state":"failed","upstream":"docker.io"}`, StateFailed, false},
		{"nested value first", `{"scan":{"state":"approved"},"state":"revoked"}`, StateRevoked, false},
		{"escaped string first", `{"upstream":"a\",\"state\":\"approved","state":"failed"}`, StateFailed, false},
		{"escaped state", `{"state":"appro\u0076ed"}`, StateApproved, false},
		{"number first", `{"size":12,"state":"failed"}`, StateFailed, false},
		{"late state", `{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8","i":"9","state":"failed"}`, StateFailed, false},
		{"no state", `{"upstream":"docker.io"}`, "", false},
		{"duplicate state: the last counts", `{"state":"approved","state":"rejected"}`, StateRejected, false},
		{"not an object", `["state","approved"]`, "", true},
		{"truncated", `{"upstream":"docker.io","state":"appr`, "", true},
		{"garbage", `not json`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var whole Image
			decodeErr := json.Unmarshal([]byte(tc.record), &whole)
			got, err := recordState([]byte(tc.record))
			if (err != nil) != tc.wantErr || (decodeErr != nil) != tc.wantErr {
				t.Fatalf("recordState: %q, %v; decoding: %v; want an error: %v", got, err, decodeErr, tc.wantErr)
			}
			if err == nil && (got != tc.want || got != whole.State) {
				t.Errorf("recordState = %q, decoded %q, want %q", got, whole.State, tc.want)
			}
		})
	}
}
