// Package s3test runs a real MinIO server for tests of Airlock's S3
// content store: a local, real S3 implementation rather than a fake.
//
// The minio binary is built from the Go module proxy by
// scripts/install-e2e-tools.sh into $(go env GOPATH)/bin. When it is
// missing, tests skip with a message saying so, unless CI is set: then
// they fail, so a CI run cannot pass without exercising S3.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws/credentials"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
)

// Region is the region the server is addressed with; MinIO accepts any.
const Region = "us-east-1"

// Server is one running MinIO process with one bucket.
type Server struct {
	// Endpoint is the server's base URL (plain HTTP on 127.0.0.1).
	Endpoint string
	// Bucket exists and is empty when Start returns.
	Bucket string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string

	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Binary returns the path of the minio binary, or "" when there is none.
func Binary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "minio")
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return p
			}
		}
	}
	return ""
}

// RequireBinary returns the minio binary path, or skips t when it is
// missing and CI is not set, or fails t when CI is set.
func RequireBinary(t testing.TB) string {
	t.Helper()
	p := Binary()
	if p != "" {
		return p
	}
	const msg = "minio binary not found in PATH or $(go env GOPATH)/bin; run scripts/install-e2e-tools.sh to build it"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set: S3 tests must run)")
	}
	t.Skip(msg)
	return ""
}

// Start runs MinIO with data under a temp dir and stops it at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := RequireBinary(t)
	s, err := StartProcess(bin, t.TempDir())
	if err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("minio log:\n%s", s.Log())
		}
		s.Stop()
	})
	return s
}

// StartProcess runs bin as a MinIO server with data in dir, waits until it
// is ready and creates a bucket. The caller must Stop it.
func StartProcess(bin, dir string) (*Server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := tryStart(bin, dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStart(bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Bucket:    "airlock-test",
		AccessKey: "airlocktest",
		SecretKey: "airlocktest-secret-1234",
		done:      make(chan struct{}),
		log:       filepath.Join(dir, fmt.Sprintf("minio-%d.log", port)),
	}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	data := filepath.Join(dir, fmt.Sprintf("data-%d", port))
	s.cmd = exec.Command(bin, "server", data, "--address", fmt.Sprintf("127.0.0.1:%d", port), "--quiet")
	// A controlled environment: no AWS_*/MINIO_* from the machine, no
	// console, no update checks, no home-dir config.
	s.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"MINIO_ROOT_USER=" + s.AccessKey,
		"MINIO_ROOT_PASSWORD=" + s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("minio exited early:\n%s", s.Log())
		default:
		}
		resp, err := http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("minio not ready after 60s:\n%s", s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// MinIO can answer ready before its object layer is up, and then
	// refuses requests with 503 XMinioServerNotInitialized (seen in CI):
	// retry the bucket until the same deadline.
	for {
		err := s.CreateBucket(context.Background(), s.Bucket)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errNotInitialized) || time.Now().After(deadline) {
			s.Stop()
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// errNotInitialized marks a 503 from a MinIO still starting up.
var errNotInitialized = errors.New("server not initialized yet")

// CreateBucket creates a bucket with one SigV4-signed PUT. The signer is
// used directly rather than an SDK session: a session reads AWS_* from the
// environment (AWS_CA_BUNDLE among them) and the test must not depend on it.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.Endpoint+"/"+name, nil)
	if err != nil {
		return err
	}
	signer := v4.NewSigner(credentials.NewStaticCredentials(s.AccessKey, s.SecretKey, ""))
	if _, err := signer.Sign(req, bytes.NewReader(nil), "s3", Region, time.Now()); err != nil {
		return fmt.Errorf("sign create bucket: %w", err)
	}
	// The signer installs the (empty) body as a reader of unknown length,
	// which net/http would send chunked; MinIO then parses an empty
	// CreateBucketConfiguration and refuses it. Send no body at all.
	req.Body, req.ContentLength = http.NoBody, 0
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("create bucket %s: %w: %s: %s", name, errNotInitialized, resp.Status, body)
		}
		return fmt.Errorf("create bucket %s: %s: %s", name, resp.Status, body)
	}
	return nil
}

// Params returns the storage parameters of the S3 driver for this server,
// with content under root in the bucket. Credentials are not among them:
// Airlock takes them from the environment (see Env).
func (s *Server) Params(root string) map[string]any {
	return map[string]any{
		"bucket":         s.Bucket,
		"region":         Region,
		"regionendpoint": s.Endpoint,
		"forcepathstyle": true,
		"secure":         false,
		"v4auth":         true,
		"rootdirectory":  root,
	}
}

// Env returns the environment variables that give the S3 driver this
// server's credentials, and keep the SDK off the EC2 metadata endpoint.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Log returns what the server printed so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.log)
	return string(b)
}

// Stop kills the server process and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
