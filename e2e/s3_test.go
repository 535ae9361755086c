package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/content/s3test"
)

// s3StorageYAML is the storage section for MinIO server srv, content under
// /airlock in its bucket. Credentials are not in it: airlock takes them
// from the environment.
func s3StorageYAML(srv *s3test.Server, secure bool) string {
	return s3StorageYAMLRoot(srv, secure, "/airlock")
}

// s3StorageYAMLRoot is s3StorageYAML with content under root.
func s3StorageYAMLRoot(srv *s3test.Server, secure bool, root string) string {
	return fmt.Sprintf(`storage:
  driver: s3
  parameters:
    bucket: %s
    region: %s
    regionendpoint: %s
    forcepathstyle: true
    secure: %t
    v4auth: true
    rootdirectory: %s
`, srv.Bucket, s3test.Region, srv.Endpoint, secure, root)
}

// TestS3Storage runs the real airlock binary with its content on a real
// MinIO server: a first pull is quarantined, an approved image is served
// (manifest, blobs, a Range of a blob) from S3, quarantined content is
// refused, and a restarted airlock serves the approved image from S3 with
// the upstream gone. AWS_CA_BUNDLE points at a missing file throughout, as
// on machines that set it: with a plain-HTTP endpoint airlock ignores it.
//
// Not parallel: the S3 credentials reach the airlock child through the
// environment (t.Setenv), as they do in production.
func TestS3Storage(t *testing.T) {
	srv := s3test.Start(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CA_BUNDLE", filepath.Join(t.TempDir(), "no-such-ca-bundle.pem"))

	up := registrytest.NewUpstream(t)
	dataDir := t.TempDir()
	o := options{DataDir: dataDir, Extra: s3StorageYAML(srv, false)}
	al := startAirlock(t, up, o)

	const repo = "library/on-s3"
	d := up.PushImage(t, repo+":v1", registrytest.Image(t, 2, 256<<10, types.OCIManifestSchema1))
	want := mustPull(t, up.Ref(t, repo+"@"+d.String()))
	image := "docker.io/" + repo + "@" + d.String()
	byDigest := al.Ref(t, repo+"@"+d.String())

	approveFirstPull(t, al, byDigest, image)
	assertSame(t, "pull from S3-backed airlock", want, mustPull(t, byDigest))

	// A Range of a layer: 206 with exactly those bytes.
	layer := want.Layers[1]
	r := doHTTP(t, http.MethodGet, al.URL+"/v2/"+repo+"/blobs/"+layer.Digest.String(), nil,
		map[string]string{"Range": "bytes=1000-70999"})
	if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, layer.Data[1000:71000]) {
		t.Errorf("ranged blob GET: %d, %d bytes; want 206 and 70000 matching bytes", r.Status, len(r.Body))
	}
	if cr := r.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-70999/%d", len(layer.Data)) {
		t.Errorf("Content-Range = %q", cr)
	}
	if m := al.getManifest(t, repo, d.String()); m.Status != http.StatusOK || !bytes.Equal(m.Body, want.Manifest) {
		t.Errorf("manifest GET: %d", m.Status)
	}

	// The content is in the bucket, not on the local disk.
	cs, err := content.New(context.Background(), content.S3DriverName, srv.Params("/airlock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range want.Layers {
		if n, err := cs.Stat(context.Background(), digest.Digest(l.Digest.String())); err != nil || n != int64(len(l.Data)) {
			t.Errorf("layer %s in S3: size %d, %v", l.Digest, n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "content")); err == nil {
		t.Error("airlock wrote content under data_dir with storage.driver s3")
	}

	// A second image stays in quarantine: its manifest and its blobs are
	// refused although its content is in S3.
	const qrepo = "library/held-on-s3"
	dq := up.PushImage(t, qrepo+":v1", registrytest.Image(t, 1, 4096, types.OCIManifestSchema1))
	wantQ := mustPull(t, up.Ref(t, qrepo+"@"+dq.String()))
	qimage := "docker.io/" + qrepo + "@" + dq.String()
	_, err = pull(al.Ref(t, qrepo+"@"+dq.String()))
	assertDenied(t, "pull of a quarantined image", err, "quarantine")
	al.waitState(t, qimage, stateTimeout, "awaiting-approval")
	if n, err := cs.Stat(context.Background(), digest.Digest(wantQ.Layers[0].Digest.String())); err != nil || n != int64(len(wantQ.Layers[0].Data)) {
		t.Errorf("quarantined layer not in S3 (the test would prove nothing): %d, %v", n, err)
	}
	if b := al.getBlob(t, qrepo, wantQ.Layers[0].Digest.String()); b.Status == http.StatusOK {
		t.Errorf("blob of a quarantined image served: %d", b.Status)
	}
	if m := al.getManifest(t, qrepo, dq.String()); m.Status == http.StatusOK {
		t.Errorf("manifest of a quarantined image served: %d", m.Status)
	}

	// Restart with the upstream gone: the approved image comes from S3.
	al.Stop(t)
	up.Stop()
	al2 := startAirlock(t, up, options{DataDir: dataDir, Extra: o.Extra, UpstreamURL: up.URL()})
	assertSame(t, "pull after restart, upstream down", want, mustPull(t, al2.Ref(t, repo+"@"+d.String())))
	if b := al2.getBlob(t, qrepo, wantQ.Layers[0].Digest.String()); b.Status == http.StatusOK {
		t.Errorf("after restart: blob of a quarantined image served: %d", b.Status)
	}
	if strings.Contains(al.Log()+al2.Log(), srv.SecretKey) {
		t.Error("the S3 secret key appears in airlock's log")
	}
}

// TestS3StorageStartErrors: a bad S3 setup stops `airlock serve` at start
// with an error naming the cause, never a panic: an HTTPS endpoint with an
// unreadable AWS_CA_BUNDLE, and credentials written into the config file.
func TestS3StorageStartErrors(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	srv := &s3test.Server{Endpoint: "https://127.0.0.1:1", Bucket: "b"}
	missing := filepath.Join(t.TempDir(), "no-such-ca-bundle.pem")
	cases := []struct {
		name  string
		extra string
		env   []string
		want  []string
	}{
		{"missing CA bundle with https", s3StorageYAML(srv, true), []string{"AWS_CA_BUNDLE=" + missing},
			[]string{"AWS_CA_BUNDLE", missing}},
		{"credentials in the config", s3StorageYAML(srv, false) + "    secretkey: do-not-print-me\n", nil,
			[]string{"storage.parameters.secretkey"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeConfig(t, dir, up, options{DataDir: dir, Extra: c.extra, Hold: time.Second}, freePort(t), freePort(t))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, airlockBin, "serve", "--config", cfg)
			cmd.Env = childEnv(append([]string{"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_EC2_METADATA_DISABLED=true"}, c.env...)...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("airlock serve started:\n%s", out)
			}
			if strings.Contains(string(out), "panic") || strings.Contains(string(out), "goroutine ") {
				t.Errorf("airlock crashed instead of reporting an error:\n%s", out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "do-not-print-me") {
				t.Errorf("output echoes the secret:\n%s", out)
			}
		})
	}
}
