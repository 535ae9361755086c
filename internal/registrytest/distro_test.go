package registrytest_test

import (
	"archive/tar"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// files returns the regular files of img's flattened filesystem.
func files(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read filesystem: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = string(b)
	}
}

func checkImage(t *testing.T, img v1.Image) {
	t.Helper()
	if mt, err := img.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("media type = %q, %v", mt, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if layers, err := img.Layers(); err != nil || len(layers) != 1 {
		t.Errorf("%d layers (%v), want 1", len(layers), err)
	}
}

func TestAlpineImage(t *testing.T) {
	pkgs := []registrytest.Pkg{{Name: "musl", Version: "1.2.5-r0"}, {Name: "zlib", Version: "1.3.1-r1"}}
	img := registrytest.AlpineImage(t, "3.20.3", pkgs...)
	checkImage(t, img)
	fs := files(t, img)
	if os := fs["etc/os-release"]; !strings.Contains(os, "ID=alpine\n") || !strings.Contains(os, "VERSION_ID=3.20.3\n") {
		t.Errorf("os-release:\n%s", os)
	}
	db := fs["lib/apk/db/installed"]
	for _, want := range []string{"P:musl\nV:1.2.5-r0\nA:x86_64\n", "P:zlib\nV:1.3.1-r1\n", "L:MIT\n", "o:zlib\n"} {
		if !strings.Contains(db, want) {
			t.Errorf("apk db lacks %q:\n%s", want, db)
		}
	}
	if n := strings.Count(db, "\n\n"); n != len(pkgs) {
		t.Errorf("apk db has %d entries, want %d", n, len(pkgs))
	}

	// Same input, same digest.
	d1, _ := img.Digest()
	d2, _ := registrytest.AlpineImage(t, "3.20.3", pkgs...).Digest()
	if d1 != d2 {
		t.Errorf("digests differ for equal input: %s vs %s", d1, d2)
	}
	d3, _ := registrytest.AlpineImage(t, "3.20.3", pkgs[0]).Digest()
	if d1 == d3 {
		t.Error("different packages, same digest")
	}
}

func TestDebianImage(t *testing.T) {
	img := registrytest.DebianImage(t, "12", registrytest.Pkg{Name: "libssl3", Version: "3.0.15-1~deb12u1"})
	checkImage(t, img)
	fs := files(t, img)
	osr := fs["etc/os-release"]
	for _, want := range []string{"ID=debian\n", `VERSION_ID="12"`, "VERSION_CODENAME=bookworm\n"} {
		if !strings.Contains(osr, want) {
			t.Errorf("os-release lacks %q:\n%s", want, osr)
		}
	}
	status := fs["var/lib/dpkg/status"]
	for _, want := range []string{"Package: libssl3\nStatus: install ok installed\n", "Architecture: amd64\n", "Version: 3.0.15-1~deb12u1\n"} {
		if !strings.Contains(status, want) {
			t.Errorf("dpkg status lacks %q:\n%s", want, status)
		}
	}
	if c := fs["usr/share/doc/libssl3/copyright"]; !strings.Contains(c, "License: MIT") {
		t.Errorf("copyright:\n%s", c)
	}
}

func TestPaddedImage(t *testing.T) {
	base := registrytest.AlpineImage(t, "3.20.3")
	const extra = 1 << 20
	img := registrytest.PaddedImage(t, base, extra)
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("%d layers (%v), want 2", len(layers), err)
	}
	size, err := layers[1].Size()
	if err != nil {
		t.Fatal(err)
	}
	// Random data does not compress: the blob is at least the payload.
	if size < extra {
		t.Errorf("padding blob is %d bytes, want >= %d", size, extra)
	}
	if mt, _ := layers[1].MediaType(); mt != types.OCILayer {
		t.Errorf("padding media type = %s, want %s", mt, types.OCILayer)
	}

	docker := registrytest.PaddedImage(t, registrytest.Image(t, 1, 16, types.DockerManifestSchema2), 1024)
	dl, _ := docker.Layers()
	if mt, _ := dl[len(dl)-1].MediaType(); mt != types.DockerLayer {
		t.Errorf("padding of a docker image has media type %s, want %s", mt, types.DockerLayer)
	}
}
