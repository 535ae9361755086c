package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// fourEyesDetail is the part of GET /api/v1/images/<IMAGE> that shows
// pending approvals, declared here to pin the JSON field names.
type fourEyesDetail struct {
	Image struct {
		State      string `json:"state"`
		ApprovedBy string `json:"approved_by"`
		Approvals  []struct {
			Actor  string    `json:"actor"`
			Reason string    `json:"reason"`
			At     time.Time `json:"at"`
		} `json:"approvals"`
	} `json:"image"`
	ApprovalsRequired int `json:"approvals_required"`
}

// actionAnswer is the answer of POST /api/v1/approve.
type actionAnswer struct {
	State             string `json:"state"`
	Message           string `json:"message"`
	Error             string `json:"error"`
	ApprovalsRequired int    `json:"approvals_required"`
	Approvals         []struct {
		Actor string `json:"actor"`
	} `json:"approvals"`
}

// TestFourEyes: with gate.approvals_required: 2 an image is served only
// once two different identities have approved it. The first approval is
// recorded and shown as pending while pulls stay DENIED; the same
// approver again changes nothing; a second approver approves. A revoke or
// a rescan ends pending approvals, and the bootstrap admin counts as one
// identity like any other.
func TestFourEyes(t *testing.T) {
	t.Parallel()
	crane := requireTool(t, "crane", gopathBin("crane"))
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{NoHold: true, Edit: func(cfg string) string {
		return strings.Replace(cfg, "  lease: 3s\n", "  lease: 3s\n  approvals_required: 2\n", 1)
	}})
	home := t.TempDir()
	env := []string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}

	// Two approvers, each with a token of their own.
	tokens := map[string]string{}
	for _, name := range []string{"alice", "bob"} {
		out, err := al.cli(t, "tokens", "create", "--name", name, "--role", "approver", "--expires", "1d", "--json")
		mustSucceed(t, "airlock tokens create "+name, out, err)
		var created struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(out), &created); err != nil || !strings.HasPrefix(created.Token, "alk_") {
			t.Fatalf("tokens create %s: %v\n%s", name, err, out)
		}
		tokens[name] = created.Token
	}
	tokens["admin"] = adminToken
	approve := func(who, image, reason string) (int, actionAnswer) {
		t.Helper()
		body := strings.NewReader(`{"image": "` + image + `", "reason": "` + reason + `"}`)
		r := doHTTP(t, http.MethodPost, al.AdminURL+"/api/v1/approve", body,
			map[string]string{"Authorization": "Bearer " + tokens[who], "Content-Type": "application/json"})
		var a actionAnswer
		if err := json.Unmarshal(r.Body, &a); err != nil {
			t.Fatalf("approve by %s: %d %s", who, r.Status, r.Body)
		}
		return r.Status, a
	}
	show := func(image string) fourEyesDetail {
		t.Helper()
		r := al.admin(t, http.MethodGet, "/api/v1/images/"+image, nil)
		var d fourEyesDetail
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &d) != nil {
			t.Fatalf("show %s: %d %s", image, r.Status, r.Body)
		}
		return d
	}
	const repo = "library/four-eyes"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 2048, types.OCIManifestSchema1))
	image := "docker.io/" + repo + "@" + d.String()
	ref := al.Host + "/" + repo + ":v1"
	craneManifest := func(step string) (string, error) {
		t.Helper()
		return runTool(t, env, crane, "manifest", "--insecure", ref)
	}
	refused := func(step string) {
		t.Helper()
		out, err := craneManifest(step)
		if err == nil || !strings.Contains(out, "DENIED") {
			t.Fatalf("%s: crane manifest = %v, want DENIED\n%s", step, err, out)
		}
		_, err = pull(al.Ref(t, repo+"@"+d.String()))
		assertDenied(t, step, err)
	}

	refused("first pull")
	al.waitState(t, image, stateTimeout, "awaiting-approval")

	// Alice approves (the CLI, with her token): recorded, not approved.
	aliceFile := writeTemp(t, "alice.token", tokens["alice"])
	out, err := al.cli(t, "approve", image, "--reason", "reviewed the SBOM", "--token-file", aliceFile)
	mustSucceed(t, "airlock approve by alice", out, err)
	if !strings.Contains(out, "approval 1 of 2 recorded (alice); pending a second approver") || !strings.Contains(out, "awaiting-approval") {
		t.Errorf("airlock approve by alice printed:\n%s", out)
	}
	refused("after alice's approval")
	det := show(image)
	if det.Image.State != "awaiting-approval" || det.ApprovalsRequired != 2 || len(det.Image.Approvals) != 1 ||
		det.Image.Approvals[0].Actor != "alice" || det.Image.Approvals[0].Reason != "reviewed the SBOM" || det.Image.Approvals[0].At.IsZero() {
		t.Fatalf("pending approval not shown: %+v", det)
	}

	// Alice again: refused, nothing changes.
	status, ans := approve("alice", image, "really sure")
	if status != http.StatusConflict || !strings.Contains(ans.Error, "approval 1 of 2 by alice already recorded; a different approver must approve") {
		t.Fatalf("alice again: %d %+v", status, ans)
	}
	out, err = al.cli(t, "approve", image, "--token-file", aliceFile)
	if err == nil || !strings.Contains(out, "409") || !strings.Contains(out, "a different approver must approve") {
		t.Errorf("airlock approve by alice again: %v\n%s", err, out)
	}
	refused("after alice's second try")
	if det := show(image); len(det.Image.Approvals) != 1 || det.Image.State != "awaiting-approval" {
		t.Fatalf("after alice's second try: %+v", det)
	}

	// Bob approves: approved, and served.
	status, ans = approve("bob", image, "agreed")
	if status != http.StatusOK || ans.State != "approved" || ans.ApprovalsRequired != 2 || len(ans.Approvals) != 0 {
		t.Fatalf("bob: %d %+v", status, ans)
	}
	out, err = craneManifest("after bob")
	mustSucceed(t, "crane manifest after bob's approval", out, err)
	if sum := sha256.Sum256([]byte(out)); "sha256:"+hex.EncodeToString(sum[:]) != d.String() {
		t.Errorf("crane manifest served another manifest than %s", d)
	}
	if _, err := pull(al.Ref(t, repo+"@"+d.String())); err != nil {
		t.Fatalf("pull after two approvals: %v", err)
	}
	if det := show(image); det.Image.ApprovedBy != "bob" || len(det.Image.Approvals) != 0 {
		t.Errorf("approved record: %+v", det)
	}
	var approvals []string
	for _, e := range al.audit(t, image) {
		if e.Action == "approve" {
			approvals = append([]string{e.Actor + ": " + e.From + "->" + e.To + ": " + e.Reason}, approvals...)
		}
	}
	want := []string{
		"alice: awaiting-approval->awaiting-approval: approval 1 of 2: reviewed the SBOM",
		"bob: awaiting-approval->approved: approval 2 of 2 (with alice): agreed",
	}
	if strings.Join(approvals, "\n") != strings.Join(want, "\n") {
		t.Errorf("approve entries in the audit log:\n%s\nwant:\n%s", strings.Join(approvals, "\n"), strings.Join(want, "\n"))
	}

	// Revoked: alice's approval of the revoked image is pending; a rescan
	// ends it, so bob's is again only the first.
	al.action(t, "revoke", image, "CVE found")
	refused("after revoke")
	if status, ans := approve("alice", image, "false positive"); status != http.StatusAccepted || ans.State != "revoked" ||
		ans.Message != "approval 1 of 2 recorded (alice); pending a second approver" {
		t.Fatalf("alice after revoke: %d %+v", status, ans)
	}
	refused("revoked, one approval")
	al.action(t, "rescan", image, "check again")
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	if det := show(image); len(det.Image.Approvals) != 0 {
		t.Fatalf("approvals survived the rescan: %+v", det.Image.Approvals)
	}
	if status, ans := approve("bob", image, "fixed"); status != http.StatusAccepted || ans.Message != "approval 1 of 2 recorded (bob); pending a second approver" {
		t.Fatalf("bob after rescan: %d %+v", status, ans)
	}
	refused("rescanned, one approval")
	// The bootstrap admin is one more identity: the second approver.
	if status, ans := approve("admin", image, "second look"); status != http.StatusOK || ans.State != "approved" {
		t.Fatalf("admin after bob: %d %+v", status, ans)
	}
	out, err = craneManifest("after bob and admin")
	mustSucceed(t, "crane manifest after bob's and admin's approval", out, err)
}
