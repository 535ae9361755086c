package content

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/content/s3test"
)

// The S3 backend joins the harness in store_test.go, so every
// forEachBackend test also runs on distribution's S3 driver against a real
// MinIO server.
func init() {
	backends = append(backends, backend{"s3", newS3Backend})
}

var (
	minioOnce sync.Once
	minio     *s3test.Server
	minioErr  error
)

// TestMain stops the MinIO server the s3 backend shares between tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if minio != nil {
		minio.Stop()
	}
	if minioDir != "" {
		os.RemoveAll(minioDir)
	}
	os.Exit(code)
}

var minioDir string

// sharedMinIO starts one MinIO for the package (a start costs a second or
// two; every test gets its own root directory in the bucket instead).
func sharedMinIO(t *testing.T) *s3test.Server {
	t.Helper()
	bin := s3test.RequireBinary(t)
	minioOnce.Do(func() {
		minioDir, minioErr = os.MkdirTemp("", "airlock-minio-")
		if minioErr != nil {
			return
		}
		minio, minioErr = s3test.StartProcess(bin, minioDir)
		if minioErr != nil {
			return
		}
		// The driver takes credentials from the environment only. os.Setenv,
		// not t.Setenv: the stores are created in parallel subtests.
		for _, kv := range minio.Env() {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	})
	if minioErr != nil {
		t.Fatalf("minio: %v", minioErr)
	}
	return minio
}

func newS3Backend(t *testing.T) (*Store, storagedriver.StorageDriver) {
	srv := sharedMinIO(t)
	s, err := New(context.Background(), S3DriverName, srv.Params("/"+randomName()))
	if err != nil {
		t.Fatal(err)
	}
	return s, s.driver
}

// TestLargeBlob stores a blob large enough for the S3 driver's multipart
// upload (chunks of 10 MiB by default) and of its multipart copy on Move,
// then reads it whole and by ranges; a wrong digest of the same size is
// refused and leaves nothing behind.
func TestLargeBlob(t *testing.T) {
	if testing.Short() {
		t.Skip("large blob: skipped in -short")
	}
	const size = 40 << 20
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i * 7 / 3)
	}
	copy(b, randomBytes(t, 4096))
	d := digest.FromBytes(b)
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		if drv.Name() == "inmemory" {
			// Its writer copies the whole buffer on every append (~11 s for
			// 40 MiB on 2 cores) and it is no production backend.
			t.Skip("inmemory: too slow for a 40 MiB blob")
		}
		ctx := context.Background()
		// A body of the right size that hashes to another digest.
		wrong := digest.NewDigestFromEncoded(digest.SHA256, strings.Repeat("ab", 32))
		if err := s.Put(ctx, wrong, size, bytes.NewReader(b)); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("Put with a wrong digest = %v", err)
		}
		assertAbsent(t, s, wrong)
		assertNoUploads(t, drv)

		if err := s.Put(ctx, d, size, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		assertNoUploads(t, drv)
		if n, err := s.Stat(ctx, d); err != nil || n != size {
			t.Fatalf("Stat = %d, %v", n, err)
		}
		rc, n, err := s.Open(ctx, d)
		if err != nil || n != size {
			t.Fatalf("Open = %d, %v", n, err)
		}
		defer rc.Close()
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatal(err)
		}
		if got := digest.NewDigest(digest.SHA256, h); got != d {
			t.Fatalf("read back %s, want %s", got, d)
		}
		// A range near the end, as a resumed layer download asks.
		off := int64(size - 3<<20 - 17)
		if _, err := rc.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, b[off:off+int64(len(buf))]) {
			t.Error("range read: wrong bytes")
		}
	})
}

// TestS3RefusesCredentialParameters: keys in the config file are refused,
// and the error does not echo the secret.
func TestS3RefusesCredentialParameters(t *testing.T) {
	for _, k := range CredentialParameters {
		params := map[string]any{"bucket": "b", "region": "us-east-1", k: "s3cr3t-value"}
		_, err := New(context.Background(), S3DriverName, params)
		if !errors.Is(err, ErrCredentialsInConfig) {
			t.Errorf("%s: err = %v, want ErrCredentialsInConfig", k, err)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t-value") {
			t.Errorf("%s: error leaks the value: %v", k, err)
		}
	}
}

// TestS3CABundle: this kind of machine sets AWS_CA_BUNDLE, and the SDK
// panics on a bundle it cannot load. A plain-HTTP endpoint ignores it; an
// HTTPS endpoint fails with an error naming the variable and the file; the
// process never crashes.
func TestS3CABundle(t *testing.T) {
	srv := sharedMinIO(t)
	missing := filepath.Join(t.TempDir(), "no-such-bundle.pem")
	t.Setenv("AWS_CA_BUNDLE", missing)

	t.Run("plain HTTP ignores it", func(t *testing.T) {
		s, err := New(context.Background(), S3DriverName, srv.Params("/ca-"+randomName()))
		if err != nil {
			t.Fatalf("New with secure: false = %v", err)
		}
		b := []byte("through plain HTTP")
		if err := s.PutBytes(context.Background(), digest.FromBytes(b), b); err != nil {
			t.Fatal(err)
		}
		if got := os.Getenv("AWS_CA_BUNDLE"); got != missing {
			t.Errorf("AWS_CA_BUNDLE after New = %q, want it restored to %q", got, missing)
		}
	})
	t.Run("HTTPS names the variable and the file", func(t *testing.T) {
		params := srv.Params("/ca")
		params["secure"] = true
		params["regionendpoint"] = strings.Replace(srv.Endpoint, "http://", "https://", 1)
		_, err := New(context.Background(), S3DriverName, params)
		if err == nil {
			t.Fatal("New with a missing CA bundle succeeded")
		}
		if !strings.Contains(err.Error(), "AWS_CA_BUNDLE") || !strings.Contains(err.Error(), missing) {
			t.Errorf("error does not name the variable and the file: %v", err)
		}
	})
	t.Run("HTTPS with a loadable bundle does not crash", func(t *testing.T) {
		// The machine's own bundle (a valid PEM file) given to the SDK:
		// whatever the SDK does with it, New returns instead of panicking.
		t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
		if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err != nil {
			t.Skip("no system CA bundle")
		}
		params := srv.Params("/ca")
		params["secure"] = true
		params["regionendpoint"] = strings.Replace(srv.Endpoint, "http://", "https://", 1)
		if _, err := New(context.Background(), S3DriverName, params); err != nil {
			t.Logf("New = %v (an error, not a crash)", err)
		}
	})
	t.Run("HTTPS with a file that is no bundle", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.pem")
		if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_CA_BUNDLE", junk)
		params := srv.Params("/ca")
		params["secure"] = true
		_, err := New(context.Background(), S3DriverName, params)
		if err == nil || !strings.Contains(err.Error(), junk) {
			t.Errorf("New with a junk CA bundle = %v", err)
		}
	})
}

// TestOpenOnS3IsLazy: opening a blob on object storage starts no download;
// the first Read after a Seek fetches from that offset only.
func TestOpenOnS3IsLazy(t *testing.T) {
	s, _ := newS3Backend(t)
	ctx := context.Background()
	b := randomBytes(t, 1<<20)
	d := digest.FromBytes(b)
	if err := s.PutBytes(ctx, d, b); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, ok := rc.(*reader)
	if !ok {
		t.Fatalf("Open on s3 returned %T, want the lazy reader", rc)
	}
	if r.rc != nil {
		t.Fatal("Open started a download before any Read")
	}
	if _, err := rc.Seek(int64(len(b)-100), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, b[len(b)-100:]) {
		t.Errorf("tail read = %d bytes, %v", len(got), err)
	}
}
