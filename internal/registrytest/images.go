package registrytest

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image returns a random image with the given number of layers, each
// holding roughly layerSize bytes of random data (the compressed blob is a
// little larger). mt selects the manifest family, types.DockerManifestSchema2
// or types.OCIManifestSchema1; config and layer media types match it so a
// strict registry accepts the result. The image's platform is linux/amd64.
//
// Content is random, so every call yields distinct digests.
func Image(t testing.TB, layers int, layerSize int64, mt types.MediaType) v1.Image {
	t.Helper()
	return platformImage(t, layers, layerSize, mt, &v1.Platform{OS: "linux", Architecture: "amd64"})
}

// Index returns a random index of media type mt (types.DockerManifestList or
// types.OCIImageIndex) holding one child image per platform, e.g.
// "linux/amd64" or "linux/arm64/v8". Each child has two small layers, a
// manifest in the same family as the index, and its platform recorded both
// in its config and in the index descriptor.
func Index(t testing.TB, mt types.MediaType, platforms ...string) v1.ImageIndex {
	t.Helper()
	var childMT types.MediaType
	switch mt {
	case types.DockerManifestList:
		childMT = types.DockerManifestSchema2
	case types.OCIImageIndex:
		childMT = types.OCIManifestSchema1
	default:
		t.Fatalf("registrytest: unsupported index media type %q", mt)
	}

	idx := mutate.IndexMediaType(empty.Index, mt)
	for _, s := range platforms {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			t.Fatalf("registrytest: parse platform %q: %v", s, err)
		}
		img := platformImage(t, 2, 1024, childMT, p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	return idx
}

// platformImage builds an image of manifest family mt with the given
// platform in its config.
func platformImage(t testing.TB, layers int, layerSize int64, mt types.MediaType, p *v1.Platform) v1.Image {
	t.Helper()
	var configMT, layerMT types.MediaType
	switch mt {
	case types.DockerManifestSchema2:
		configMT, layerMT = types.DockerConfigJSON, types.DockerLayer
	case types.OCIManifestSchema1:
		configMT, layerMT = types.OCIConfigJSON, types.OCILayer
	default:
		t.Fatalf("registrytest: unsupported image media type %q", mt)
	}

	// Start from empty.Image rather than random.Image: the latter is
	// docker-typed throughout, and rewriting its layers' media types
	// after the fact is more work than building up from nothing.
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), configMT)

	// Set the platform before appending layers: ConfigFile replaces the
	// whole config, and Append fills in rootfs.diff_ids and history.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("registrytest: config file: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("registrytest: set config file: %v", err)
	}

	adds := make([]mutate.Addendum, 0, layers)
	for range layers {
		l, err := random.Layer(layerSize, layerMT)
		if err != nil {
			t.Fatalf("registrytest: random layer: %v", err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: layerMT})
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		t.Fatalf("registrytest: append layers: %v", err)
	}
	return img
}
