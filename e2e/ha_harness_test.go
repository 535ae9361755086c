package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/content/s3test"
)

// suiteEnv selects the backend every airlock of the suite runs on: unset
// (or "bbolt") for bbolt + filesystem, "ha" for PostgreSQL + S3 (MinIO),
// so the gate suite proves the same promises on both (make test-ha).
const suiteEnv = "AIRLOCK_E2E_BACKEND"

func haSuite() bool { return os.Getenv(suiteEnv) == "ha" }

// skipOnHA skips a test that looks at the bbolt file or the filesystem
// content store itself, which the ha backend does not have.
func skipOnHA(t *testing.T, why string) {
	t.Helper()
	if haSuite() {
		t.Skip("not on the ha backend: " + why)
	}
}

// sharedBackend is one PostgreSQL database and one S3 prefix that the
// airlock replicas given it share.
type sharedBackend struct {
	DSN  string
	Root string
	s3   *s3test.Server
}

// yaml is the config of the shared state and storage ("" for nil).
func (b *sharedBackend) yaml() string {
	if b == nil {
		return ""
	}
	return fmt.Sprintf(`state:
  driver: postgres
  dsn: %q
`, b.DSN) + s3StorageYAMLRoot(b.s3, false, b.Root)
}

// env is what the replicas need in their environment: the S3 credentials.
func (b *sharedBackend) env() []string {
	if b == nil {
		return nil
	}
	return b.s3.Env()
}

var (
	sharedMu   sync.Mutex
	minio      *s3test.Server
	minioDir   string
	byDataDir  = map[string]*sharedBackend{}
	backendSeq int
)

// newShared makes a new shared backend: a fresh database on the suite's
// PostgreSQL server and a fresh prefix in the suite's MinIO bucket. Both
// servers start at the first call and stop when the suite ends; a test
// skips when their binaries are missing (fails under AIRLOCK_REQUIRE_POSTGRES).
func newShared(t testing.TB) *sharedBackend {
	t.Helper()
	pg := pgtest.Shared(t)
	bin := s3test.RequireBinary(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if minio == nil {
		dir, err := os.MkdirTemp("", "airlock-e2e-minio-")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := s3test.StartProcess(bin, dir)
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("start MinIO: %v", err)
		}
		minio, minioDir = srv, dir
	}
	backendSeq++
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", t.Name(), backendSeq)))
	return &sharedBackend{DSN: pg.NewDatabase(t), Root: "/t-" + hex.EncodeToString(sum[:6]), s3: minio}
}

// backendFor returns the shared backend of a data directory, so that an
// airlock restarted on the same data_dir finds its state again.
func backendFor(t testing.TB, dataDir string) *sharedBackend {
	t.Helper()
	sharedMu.Lock()
	b, ok := byDataDir[dataDir]
	sharedMu.Unlock()
	if ok {
		return b
	}
	b = newShared(t)
	sharedMu.Lock()
	byDataDir[dataDir] = b
	sharedMu.Unlock()
	return b
}

// stopSharedServers stops the suite's PostgreSQL and MinIO servers.
func stopSharedServers() {
	pgtest.StopShared()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if minio != nil {
		minio.Stop()
		os.RemoveAll(minioDir)
		minio = nil
	}
}
