package registrytest

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestFrontSplitTag: a split tag answers HEAD with one digest and GET with
// the other; other requests pass through.
func TestFrontSplitTag(t *testing.T) {
	up := NewUpstream(t)
	a := up.PushImage(t, "split/x:a", Image(t, 1, 256, types.OCIManifestSchema1))
	b := up.PushImage(t, "split/x:b", Image(t, 1, 256, types.DockerManifestSchema2))
	f := NewFront(t, up)
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(f.Host()+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	f.SplitTag("split/x", "moving", a, b)
	head, err := remote.Head(ref("split/x:moving"))
	if err != nil || head.Digest != a {
		t.Fatalf("HEAD split tag = %v, %v; want %s", head, err, a)
	}
	get, err := remote.Get(ref("split/x:moving"))
	if err != nil || get.Digest != b || get.MediaType != types.DockerManifestSchema2 {
		t.Fatalf("GET split tag = %v, %v; want %s", get, err, b)
	}
	if n := f.Rewritten("HEAD", "split/x", "moving"); n != 1 {
		t.Fatalf("Rewritten(HEAD) = %d, want 1", n)
	}
	if d, err := remote.Head(ref("split/x:a")); err != nil || d.Digest != a {
		t.Fatalf("HEAD of a plain tag through the front = %v, %v", d, err)
	}
	f.ClearTag("split/x", "moving")
	if _, err := remote.Head(ref("split/x:moving")); err == nil {
		t.Fatal("a cleared split tag that does not exist upstream still resolves")
	}
}
