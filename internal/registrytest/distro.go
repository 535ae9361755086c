package registrytest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Pkg is an OS package installed in a distro test image.
type Pkg struct{ Name, Version string }

// pkgLicense is the license every test package declares.
const pkgLicense = "MIT"

// AlpineImage returns a single-layer linux/amd64 OCI image that syft
// recognizes as Alpine Linux release (e.g. "3.20.3") with pkgs installed:
// /etc/os-release, /etc/alpine-release and an apk database at
// /lib/apk/db/installed whose entries carry name, version, architecture,
// license (MIT), origin and description. The content is deterministic, so
// equal arguments yield equal digests.
func AlpineImage(t testing.TB, release string, pkgs ...Pkg) v1.Image {
	t.Helper()
	var osRelease strings.Builder
	fmt.Fprintf(&osRelease, "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=%s\n", release)
	fmt.Fprintf(&osRelease, "PRETTY_NAME=\"Alpine Linux v%s\"\n", majorMinor(release))
	osRelease.WriteString("HOME_URL=\"https://alpinelinux.org/\"\n")

	var db strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&db, "P:%s\nV:%s\nA:x86_64\nS:1024\nI:4096\n", p.Name, p.Version)
		fmt.Fprintf(&db, "T:%s test package\nU:https://example.com/%s\nL:%s\no:%s\n", p.Name, p.Name, pkgLicense, p.Name)
		fmt.Fprintf(&db, "m:Airlock Tests <tests@example.com>\nt:1700000000\n\n")
	}

	files := []tarFile{
		{path: "etc/"},
		{path: "etc/os-release", body: osRelease.String()},
		{path: "etc/alpine-release", body: release + "\n"},
		{path: "lib/"},
		{path: "lib/apk/"},
		{path: "lib/apk/db/"},
		{path: "lib/apk/db/installed", body: db.String()},
	}
	return fsImage(t, files)
}

// DebianImage returns a single-layer linux/amd64 OCI image that syft
// recognizes as Debian release (e.g. "12") with pkgs installed:
// /etc/os-release (with VERSION_CODENAME for known releases, as real Debian
// images have), a dpkg database at /var/lib/dpkg/status whose entries are
// "install ok installed" for amd64, and a machine-readable
// /usr/share/doc/<name>/copyright declaring the MIT license. The content is
// deterministic, so equal arguments yield equal digests.
func DebianImage(t testing.TB, release string, pkgs ...Pkg) v1.Image {
	t.Helper()
	codename := debianCodename(release)
	var osRelease strings.Builder
	if codename != "" {
		fmt.Fprintf(&osRelease, "PRETTY_NAME=\"Debian GNU/Linux %s (%s)\"\n", release, codename)
		fmt.Fprintf(&osRelease, "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"%s\"\nVERSION=\"%s (%s)\"\nVERSION_CODENAME=%s\n", release, release, codename, codename)
	} else {
		fmt.Fprintf(&osRelease, "PRETTY_NAME=\"Debian GNU/Linux %s\"\n", release)
		fmt.Fprintf(&osRelease, "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"%s\"\nVERSION=\"%s\"\n", release, release)
	}
	osRelease.WriteString("ID=debian\nHOME_URL=\"https://www.debian.org/\"\n")

	files := []tarFile{
		{path: "etc/"},
		{path: "etc/os-release", body: osRelease.String()},
		{path: "etc/debian_version", body: release + "\n"},
		{path: "usr/"},
		{path: "usr/share/"},
		{path: "usr/share/doc/"},
	}
	var status strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nPriority: optional\nSection: libs\n", p.Name)
		fmt.Fprintf(&status, "Installed-Size: 4\nMaintainer: Airlock Tests <tests@example.com>\nArchitecture: amd64\n")
		fmt.Fprintf(&status, "Version: %s\nDescription: %s test package\n Installed by registrytest.\n\n", p.Version, p.Name)

		files = append(files,
			tarFile{path: "usr/share/doc/" + p.Name + "/"},
			tarFile{path: "usr/share/doc/" + p.Name + "/copyright", body: fmt.Sprintf(
				"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"+
					"Upstream-Name: %s\n\nFiles: *\nCopyright: Airlock Tests\nLicense: %s\n", p.Name, pkgLicense)},
		)
	}
	files = append(files,
		tarFile{path: "var/"},
		tarFile{path: "var/lib/"},
		tarFile{path: "var/lib/dpkg/"},
		tarFile{path: "var/lib/dpkg/status", body: status.String()},
	)
	return fsImage(t, files)
}

// PaddedImage returns base with one more layer appended holding extraBytes
// of random (incompressible) data in a single file, e.g. to make a ~100 MB
// benchmark image out of a small distro image. The layer's media type
// follows base's manifest family.
func PaddedImage(t testing.TB, base v1.Image, extraBytes int64) v1.Image {
	t.Helper()
	mt, err := base.MediaType()
	if err != nil {
		t.Fatalf("registrytest: base media type: %v", err)
	}
	layerMT := types.OCILayer
	if mt == types.DockerManifestSchema2 {
		layerMT = types.DockerLayer
	}
	l, err := random.Layer(extraBytes, layerMT)
	if err != nil {
		t.Fatalf("registrytest: random layer: %v", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: l, MediaType: layerMT})
	if err != nil {
		t.Fatalf("registrytest: append padding layer: %v", err)
	}
	return img
}

// tarFile is one entry of a test layer; a path ending in "/" is a directory.
type tarFile struct {
	path string
	body string
}

// fsImage builds a linux/amd64 OCI image with one layer holding files.
func fsImage(t testing.TB, files []tarFile) v1.Image {
	t.Helper()
	layerTar, err := tarBytes(files)
	if err != nil {
		t.Fatalf("registrytest: build layer tar: %v", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatalf("registrytest: layer from tar: %v", err)
	}

	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("registrytest: config file: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("registrytest: set config file: %v", err)
	}
	if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer}); err != nil {
		t.Fatalf("registrytest: append layer: %v", err)
	}
	return img
}

// tarBytes renders files as an uncompressed tar with fixed ownership and
// timestamps, so the layer digest depends only on the content.
func tarBytes(files []tarFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0).UTC()
	for _, f := range files {
		hdr := &tar.Header{Name: f.path, ModTime: mtime, Format: tar.FormatPAX}
		if strings.HasSuffix(f.path, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(f.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.path, err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			return nil, fmt.Errorf("tar body %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// majorMinor returns "3.20" for "3.20.3".
func majorMinor(release string) string {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) >= 2 {
		return parts[0] + "." + parts[1]
	}
	return release
}

// debianCodename returns the codename of a Debian major release, or "".
func debianCodename(release string) string {
	major, _, _ := strings.Cut(release, ".")
	return map[string]string{
		"9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie",
	}[major]
}
