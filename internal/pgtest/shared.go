package pgtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// One server for a whole test binary: starting one per test costs 1-2s.
var (
	sharedOnce     sync.Once
	sharedServer   *Server
	sharedMu       sync.Mutex
	sharedCleanups []func()
)

// binaryTB is the TB Start registers its cleanups with for a shared
// server: they run at StopShared, not at the end of the first test.
type binaryTB struct{ testing.TB }

func (binaryTB) Cleanup(fn func()) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sharedCleanups = append(sharedCleanups, fn)
}

// Shared returns the test binary's shared server, starting it at the
// first call. Tests isolate themselves with NewDatabase. The server stops
// at StopShared (call it from TestMain, or use Main). Like Start, it skips
// t when PostgreSQL is unavailable (fails it under AIRLOCK_REQUIRE_POSTGRES=1).
// A test that stops or restarts the server must use Start instead.
func Shared(t testing.TB) *Server {
	t.Helper()
	sharedOnce.Do(func() { sharedServer = Start(binaryTB{t}) })
	if sharedServer == nil {
		unavailable(t, errors.New("the shared server did not start (see the first test that asked for it)"))
	}
	return sharedServer
}

// StopShared stops the shared server, if one was started, and removes its files.
func StopShared() {
	sharedMu.Lock()
	fns := sharedCleanups
	sharedCleanups = nil
	sharedMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// Main runs the tests and then stops the shared server: a TestMain of
// `os.Exit(pgtest.Main(m))`.
func Main(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// Exec runs one statement on dsn.
func (s *Server) Exec(t testing.TB, dsn, sql string, args ...any) error {
	t.Helper()
	return withConn(dsn, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// QueryRow runs a query on dsn and scans its one row into dest.
func (s *Server) QueryRow(t testing.TB, dsn, sql string, dest ...any) error {
	t.Helper()
	return withConn(dsn, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql).Scan(dest...)
	})
}

// withConn runs fn on a new connection to dsn, closed after.
func withConn(dsn string, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(ctx, conn)
}
