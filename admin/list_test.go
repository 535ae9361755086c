package admin

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/state"
)

// TestListImagesFilters: GET /api/v1/images keeps the images of one state
// (?state=), of one repository (?repo=<upstream>/<repository>) and
// flagged or not (?flagged=), together; an unknown state or a flagged
// that is not a boolean is a 400. A repository is matched whole: one
// whose name only starts the same is not in it.
func TestListImagesFilters(t *testing.T) {
	a := newTestAPI(t)
	put := func(upstream, repo, seed string, to state.State) state.Ref {
		t.Helper()
		ref := state.Ref{Upstream: upstream, Repository: repo, Digest: digest.FromString(seed)}
		if _, _, err := a.store.Request(ref, "pull"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.store.Transition(ref, state.Change{To: to, Actor: state.ActorPipeline, Action: "test", Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	app1 := put("docker.io", "library/app", "1", state.StateApproved).String()
	app2 := put("docker.io", "library/app", "2", state.StateRejected).String()
	appx := put("docker.io", "library/app-extra", "3", state.StateApproved).String()
	ghcrRef := put("ghcr.io", "library/app", "4", state.StateApproved)
	ghcr := ghcrRef.String()
	if _, err := a.store.Transition(ghcrRef, state.Change{To: state.StateApproved, Actor: state.ActorPipeline, Action: "rescan", Reason: "new CVE",
		Mutate: func(i *state.Image) error { i.Flag = "rescan: 1 new critical"; return nil }}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{app1, app2, appx, ghcr}},
		{"?state=approved", []string{app1, appx, ghcr}},
		{"?repo=docker.io/library/app", []string{app1, app2}},
		{"?state=approved&repo=docker.io/library/app", []string{app1}},
		{"?repo=ghcr.io/library/app", []string{ghcr}},
		{"?repo=docker.io/library", nil},
		{"?repo=quay.io/nothing", nil},
		{"?state=approved&flagged=true", []string{ghcr}},
		{"?state=approved&flagged=false", []string{app1, appx}},
		{"?flagged=1&repo=docker.io/library/app", nil},
	} {
		code, body := a.call(t, bootstrap, http.MethodGet, "/api/v1/images"+tc.query, "")
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.query, code, body)
		}
		var out struct {
			Images []ListedImage `json:"images"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		var got []string
		for _, i := range out.Images {
			got = append(got, i.Ref.String())
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/images%s: %v, want %v", tc.query, got, want)
		}
	}
	for _, q := range []string{"?state=nope", "?flagged=yes"} {
		if code, body := a.call(t, bootstrap, http.MethodGet, "/api/v1/images"+q, ""); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, code, body)
		}
	}
}
