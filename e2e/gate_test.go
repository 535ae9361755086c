package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// stateTimeout bounds how long the tests wait for the pipeline.
const stateTimeout = 30 * time.Second

// TestPullThroughGate is the core acceptance test: the first pull of every
// kind of image is DENIED while it is in quarantine; once an admin approves
// it, it is served byte for byte as upstream has it; once revoked, neither
// its manifest nor its blobs are served.
func TestPullThroughGate(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})

	cases := []struct {
		name string
		// upRepo is the repository on the upstream registry, alRepo the
		// name a client uses through airlock, adminRepo "<upstream>/<repo>".
		upRepo, alRepo, adminRepo string
		push                      func(t *testing.T, ref string) v1.Hash
		approveCLI, approveByTag  bool
		revokeCLI                 bool
	}{
		{
			name:   "docker-schema2-image",
			upRepo: "library/schema2-app", alRepo: "library/schema2-app", adminRepo: "docker.io/library/schema2-app",
			push: func(t *testing.T, ref string) v1.Hash {
				return up.PushImage(t, ref, registrytest.Image(t, 3, 4096, types.DockerManifestSchema2))
			},
			approveCLI: true, revokeCLI: true,
		},
		{
			name: "oci-image-via-alias",
			// The second upstream, reached by its path alias; its allow
			// list admits team/*.
			upRepo: "team/oci-app", alRepo: "ghcr/team/oci-app", adminRepo: "ghcr.io/team/oci-app",
			push: func(t *testing.T, ref string) v1.Hash {
				return up.PushImage(t, ref, registrytest.Image(t, 2, 8192, types.OCIManifestSchema1))
			},
		},
		{
			name:   "oci-index",
			upRepo: "library/oci-multi", alRepo: "library/oci-multi", adminRepo: "docker.io/library/oci-multi",
			push: func(t *testing.T, ref string) v1.Hash {
				return up.PushIndex(t, ref, registrytest.Index(t, types.OCIImageIndex, "linux/amd64", "linux/arm64/v8"))
			},
			approveCLI: true, approveByTag: true,
		},
		{
			name:   "docker-manifest-list",
			upRepo: "library/docker-multi", alRepo: "library/docker-multi", adminRepo: "docker.io/library/docker-multi",
			push: func(t *testing.T, ref string) v1.Hash {
				return up.PushIndex(t, ref, registrytest.Index(t, types.DockerManifestList, "linux/amd64", "linux/arm/v7", "linux/s390x"))
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := tc.push(t, tc.upRepo+":v1")
			want := mustPull(t, up.Ref(t, tc.upRepo+"@"+d.String()))
			image := tc.adminRepo + "@" + d.String()
			byTag := al.Ref(t, tc.alRepo+":v1")
			byDigest := al.Ref(t, tc.alRepo+"@"+d.String())

			// 1. The first pull starts the pipeline and is DENIED with the state.
			start := time.Now()
			_, err := pull(byTag)
			msg := assertDenied(t, "first pull", err, "quarantine", image)
			if !quarantineState.MatchString(msg) {
				t.Errorf("first pull: DENIED message %q does not say which quarantine state the image is in", msg)
			}
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("first pull took %s; the hold is 500ms", el)
			}
			t.Logf("first pull: %s", msg)

			// 2. The fetch step ends in awaiting-approval (manual policy).
			rec := al.waitState(t, image, stateTimeout, "awaiting-approval")
			if isIndexType(want.MediaType) && len(rec.Manifests) != len(want.Children) {
				t.Errorf("record lists %d platform manifests, want %d", len(rec.Manifests), len(want.Children))
			}
			if got, wantN := len(rec.Blobs), len(want.blobs()); got != wantN {
				t.Errorf("record lists %d blobs, want %d", got, wantN)
			}
			_, err = pull(byDigest)
			assertDenied(t, "pull by digest while awaiting approval", err, "awaiting-approval", image)
			for _, b := range want.blobs() {
				assertBlobRefused(t, al, tc.alRepo, b)
			}

			// 3. Approve, by CLI or API, by digest or by tag.
			target := image
			if tc.approveByTag {
				target = tc.adminRepo + ":v1"
			}
			if tc.approveCLI {
				out, err := al.cli(t, "approve", target, "--reason", "e2e: reviewed "+tc.name)
				if err != nil {
					t.Fatalf("airlock approve %s: %v\n%s", target, err, out)
				}
				if !strings.Contains(out, "approved") || !strings.Contains(out, d.String()) {
					t.Errorf("airlock approve printed %q, want the digest and its new state", out)
				}
			} else {
				if got := al.action(t, "approve", target, "e2e: reviewed "+tc.name); got.State != "approved" {
					t.Fatalf("approve answered state %q", got.State)
				}
			}
			if rec, _ := al.image(t, image); rec.Image.State != "approved" || !strings.HasPrefix(rec.Image.ApprovedBy, "admin") {
				t.Errorf("after approve: state %q approved_by %q, want approved by an admin", rec.Image.State, rec.Image.ApprovedBy)
			}

			// 4. Served, byte for byte, by tag and by digest.
			assertSame(t, "pull by tag", want, mustPull(t, byTag))
			assertSame(t, "pull by digest", want, mustPull(t, byDigest))
			// Blobs are served per repository: not from one that has no approved image holding them.
			for _, b := range want.blobs() {
				if r := al.getBlob(t, "library/unrelated", b.String()); r.Status == http.StatusOK {
					t.Errorf("blob %s is served from an unrelated repository", b)
				}
			}
			// containerd's ?ns= routing reaches the same image and is echoed back.
			ns, nsRepo, _ := strings.Cut(tc.adminRepo, "/")
			r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+nsRepo+"/manifests/"+d.String()+"?ns="+ns, nil, map[string]string{"Accept": manifestAccept})
			if r.Status != http.StatusOK || r.Header.Get("OCI-Namespace") != ns || !bytes.Equal(r.Body, want.Manifest) {
				t.Errorf("GET by digest with ?ns=%s: %d, OCI-Namespace %q, %d bytes; want 200, %s and the upstream manifest",
					ns, r.Status, r.Header.Get("OCI-Namespace"), len(r.Body), ns)
			}
			head, err := remote.Head(byTag)
			if err != nil {
				t.Fatalf("HEAD by tag: %v", err)
			}
			if head.Digest != d || head.MediaType != want.MediaType || head.Size != int64(len(want.Manifest)) {
				t.Errorf("HEAD by tag: %s %s %d, want %s %s %d", head.Digest, head.MediaType, head.Size, d, want.MediaType, len(want.Manifest))
			}

			// 5. Revoke: nothing of it is served any more.
			reason := "e2e: CVE-0000-1234 found in " + tc.name
			if tc.revokeCLI {
				out, err := al.cli(t, "revoke", image, "--reason", reason)
				if err != nil || !strings.Contains(out, "revoked") {
					t.Fatalf("airlock revoke %s: %v\n%s", image, err, out)
				}
			} else {
				al.action(t, "revoke", image, reason)
			}
			for _, ref := range []name.Reference{byTag, byDigest} {
				_, err := remote.Get(ref)
				assertDenied(t, "manifest GET after revoke "+ref.String(), err, "revoked", image, reason)
				_, err = remote.Head(ref)
				assertDenied(t, "manifest HEAD after revoke "+ref.String(), err)
			}
			for _, b := range want.blobs() {
				assertBlobRefused(t, al, tc.alRepo, b)
			}
			for _, c := range want.Children {
				if r := al.getManifest(t, tc.alRepo, c.Digest.String()); r.Status == http.StatusOK {
					t.Errorf("platform manifest %s of the revoked index is still served", c.Digest)
				}
			}
		})
	}

	t.Run("allow-list", func(t *testing.T) {
		t.Parallel()
		up.PushImage(t, "other/app:v1", registrytest.Image(t, 1, 512, types.OCIManifestSchema1))
		_, err := pull(al.Ref(t, "ghcr/other/app:v1"))
		assertDenied(t, "pull outside the allow list", err, "allow list")
		for _, img := range al.images(t, "") {
			if img.Repository == "other/app" {
				t.Errorf("a repository outside the allow list got an image record: %+v", img)
			}
		}
	})
}

// approveFirstPull pulls ref through airlock (DENIED), waits for the fetch
// and approves image via the admin API.
func approveFirstPull(t *testing.T, al *Airlock, ref name.Reference, image string) {
	t.Helper()
	_, err := pull(ref)
	assertDenied(t, "first pull of "+ref.String(), err, "quarantine")
	al.waitState(t, image, stateTimeout, "awaiting-approval")
	al.action(t, "approve", image, "e2e: approved")
}

// TestTagMovedServesLastApproved: when a tag moves upstream to a digest in
// quarantine, airlock keeps serving the tag's last approved digest
// (tag_mode last-approved) or refuses the tag (tag_mode strict).
func TestTagMovedServesLastApproved(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"last-approved", "strict"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			up := registrytest.NewUpstream(t)
			al := startAirlock(t, up, options{TagMode: mode})
			const repo = "library/moving"
			dA := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
			wantA := mustPull(t, up.Ref(t, repo+"@"+dA.String()))
			imageA := "docker.io/" + repo + "@" + dA.String()
			byTag := al.Ref(t, repo+":v1")

			approveFirstPull(t, al, byTag, imageA)
			assertSame(t, "tag before it moved", wantA, mustPull(t, byTag))

			// The tag moves upstream.
			dB := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 2048, types.DockerManifestSchema2))
			wantB := mustPull(t, up.Ref(t, repo+"@"+dB.String()))
			imageB := "docker.io/" + repo + "@" + dB.String()

			if mode == "strict" {
				_, err := pull(byTag)
				assertDenied(t, "moved tag in strict mode", err, "quarantine", imageB)
				_, err = remote.Head(byTag)
				assertDenied(t, "HEAD of the moved tag in strict mode", err)
			} else {
				head, err := remote.Head(byTag)
				if err != nil {
					t.Fatalf("HEAD of the moved tag: %v", err)
				}
				if head.Digest != dA {
					t.Errorf("HEAD of the moved tag: Docker-Content-Digest %s, want the approved %s", head.Digest, dA)
				}
				r := al.getManifest(t, repo, "v1")
				if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != dA.String() {
					t.Errorf("GET of the moved tag: %d, Docker-Content-Digest %q, want 200 and %s", r.Status, r.Header.Get("Docker-Content-Digest"), dA)
				}
				// The answer says that a newer digest waits, and in what state.
				if got := r.Header.Get("Airlock-Pending-Digest"); got != dB.String() {
					t.Errorf("Airlock-Pending-Digest = %q, want the new digest %s", got, dB)
				}
				if got := r.Header.Get("Airlock-Pending-State"); got == "" || got == "approved" {
					t.Errorf("Airlock-Pending-State = %q, want a quarantine state", got)
				}
				assertSame(t, "moved tag (last approved)", wantA, mustPull(t, byTag))
			}
			// The digest already approved stays served either way.
			assertSame(t, "approved digest after the tag moved", wantA, mustPull(t, al.Ref(t, repo+"@"+dA.String())))

			// B was quarantined by the pull of the tag.
			d, status := al.image(t, imageB)
			if status != http.StatusOK {
				t.Fatalf("admin API has no record of the new digest %s: %d", imageB, status)
			}
			switch d.Image.State {
			case "pending", "fetching", "awaiting-approval":
			default:
				t.Errorf("new digest is %q, want it in quarantine", d.Image.State)
			}
			// Approving B moves the tag.
			al.waitState(t, imageB, stateTimeout, "awaiting-approval")
			found := false
			for _, img := range al.images(t, "awaiting-approval") {
				found = found || img.Digest == dB.String()
			}
			if !found {
				t.Errorf("list of awaiting-approval images does not include %s", imageB)
			}
			if mode == "last-approved" {
				if head, err := remote.Head(byTag); err != nil || head.Digest != dA {
					t.Errorf("tag while B awaits approval: %v %v, want %s", head, err, dA)
				}
			}
			al.action(t, "approve", imageB, "e2e: new version reviewed")
			assertSame(t, "tag after approving the new digest", wantB, mustPull(t, byTag))
			if head, err := remote.Head(byTag); err != nil || head.Digest != dB {
				t.Errorf("HEAD of the tag after approving B: %v %v, want %s", head, err, dB)
			}
		})
	}
}

// TestUpstreamDownServesApproved: with the upstream gone, approved images
// are still served by tag and by digest, and an unknown tag fails fast.
func TestUpstreamDownServesApproved(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{})
	const repo = "library/resilient"
	d := up.PushImage(t, repo+":stable", registrytest.Image(t, 3, 4096, types.OCIManifestSchema1))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	image := "docker.io/" + repo + "@" + d.String()
	byTag, byDigest := al.Ref(t, repo+":stable"), al.Ref(t, repo+"@"+d.String())

	approveFirstPull(t, al, byTag, image)
	assertSame(t, "pull by tag with upstream up", want, mustPull(t, byTag))

	up.Stop()
	if _, err := remote.Head(up.Ref(t, repo+":stable")); err == nil {
		t.Fatal("upstream still answers after Stop")
	}

	assertSame(t, "pull by tag with upstream down", want, mustPull(t, byTag))
	assertSame(t, "pull by digest with upstream down", want, mustPull(t, byDigest))
	if head, err := remote.Head(byTag); err != nil || head.Digest != d {
		t.Errorf("HEAD by tag with upstream down: %v %v, want %s", head, err, d)
	}

	// A tag airlock never saw: an error, quickly, not a hang and not 200.
	start := time.Now()
	r := al.getManifest(t, repo, "never-seen")
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("never-seen tag took %s to answer", el)
	}
	if r.Status == http.StatusOK || r.Status < 400 {
		t.Errorf("never-seen tag with upstream down: %d %s, want an error status", r.Status, r.Body)
	} else {
		t.Logf("never-seen tag with upstream down: %d %s", r.Status, strings.TrimSpace(string(r.Body)))
	}
	start = time.Now()
	_, err := remote.Image(al.Ref(t, repo+":never-seen"), remote.WithRetryBackoff(remote.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 1}))
	if err == nil {
		t.Error("remote.Image of a never-seen tag with upstream down succeeded")
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("remote.Image of a never-seen tag took %s", el)
	}
	// Same for a digest nobody approved.
	r = al.getManifest(t, repo, "sha256:"+strings.Repeat("ab", 32))
	if r.Status == http.StatusOK || r.Status < 400 {
		t.Errorf("unknown digest with upstream down: %d, want an error status", r.Status)
	}
	// The log says "serving the last approved digest" only when it did:
	// for the tag that has one, naming it, and never for the never-seen tag.
	var served, never int
	for _, line := range strings.Split(al.Log(), "\n") {
		if !strings.Contains(line, "serving the last approved digest") {
			continue
		}
		if strings.Contains(line, "never-seen") {
			never++
		}
		if strings.Contains(line, "stable") && strings.Contains(line, d.String()) {
			served++
		}
	}
	if served == 0 || never != 0 {
		t.Errorf("log lines about serving the last approved digest: %d for the approved tag, %d for the never-seen one (want >0 and 0)", served, never)
	}
}
