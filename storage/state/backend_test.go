package state

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/kv"
)

// The store's tests run on one engine per run of the package: bbolt by
// default, PostgreSQL with AIRLOCK_TEST_STATE=postgres (make test runs
// both). The same tests passing on both is what makes them equivalent.
const backendEnv = "AIRLOCK_TEST_STATE"

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func onPostgres() bool { return os.Getenv(backendEnv) == "postgres" }

// onlyBolt skips tests of the bbolt file itself.
func onlyBolt(t *testing.T) {
	t.Helper()
	if onPostgres() {
		t.Skip("tests the bbolt file")
	}
}

// newWhere makes a new empty store location: a bbolt path or a database.
func newWhere(t *testing.T) string {
	t.Helper()
	if onPostgres() {
		return pgtest.Shared(t).NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "airlock.db")
}

// reopen opens the store at where (from newWhere) once more, as a
// restarted process, or as another replica on PostgreSQL.
func reopen(t *testing.T, where string, opts ...Option) (*Store, error) {
	t.Helper()
	if !onPostgres() {
		return Open(where, opts...)
	}
	db, err := kv.OpenPostgres(context.Background(), where, kv.WithTimeout(2*time.Minute)) // fixtures write thousands of keys in one transaction
	if err != nil {
		return nil, err
	}
	s, err := New(db, opts...)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
