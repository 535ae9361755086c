package pgtest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlockproxy/airlock/internal/pgtest"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// values returns the v column of table kv, sorted.
func values(t *testing.T, dsn string) []string {
	t.Helper()
	conn := connect(t, dsn)
	rows, err := conn.Query(context.Background(), "SELECT v FROM kv ORDER BY v")
	if err != nil {
		t.Fatalf("select from kv in %s: %v", dsn, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("select from kv in %s: %v", dsn, err)
	}
	return got
}

func TestServer(t *testing.T) {
	srv := pgtest.Start(t)

	// The default database exists and is usable.
	if !strings.HasPrefix(srv.DSN(), "postgres://airlock@127.0.0.1:") || !strings.HasSuffix(srv.DSN(), "/airlock?sslmode=disable") {
		t.Errorf("DSN() = %q", srv.DSN())
	}
	exec(t, connect(t, srv.DSN()), "SELECT 1")

	// Two databases are isolated from each other.
	dsnA, dsnB := srv.NewDatabase(t), srv.NewDatabase(t)
	if dsnA == dsnB {
		t.Fatalf("NewDatabase returned %q twice", dsnA)
	}
	a := connect(t, dsnA)
	exec(t, a, "CREATE TABLE kv (v text PRIMARY KEY)")
	exec(t, a, "INSERT INTO kv VALUES ('before-restart')")
	b := connect(t, dsnB)
	var reg *string
	if err := b.QueryRow(context.Background(), "SELECT to_regclass('kv')::text").Scan(&reg); err != nil {
		t.Fatal(err)
	}
	if reg != nil {
		t.Fatalf("table kv of database A is visible in database B as %q", *reg)
	}

	// Restart keeps the data and the port; old connections are dropped.
	dsnBefore := srv.DSN()
	srv.Restart(t)
	if srv.DSN() != dsnBefore {
		t.Errorf("DSN changed across Restart: %q -> %q", dsnBefore, srv.DSN())
	}
	if err := a.Ping(context.Background()); err == nil {
		t.Error("connection from before Restart still works")
	}
	if got := values(t, dsnA); len(got) != 1 || got[0] != "before-restart" {
		t.Fatalf("after Restart kv = %q, want [before-restart]", got)
	}

	// Kill (crash) then Restart: committed data survives crash recovery,
	// even a commit immediately before the crash.
	a = connect(t, dsnA)
	exec(t, a, "INSERT INTO kv VALUES ('before-kill')")
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(context.Background()); err == nil {
		t.Error("connection still works after Kill")
	}
	srv.Restart(t)
	if got := values(t, dsnA); len(got) != 2 || got[0] != "before-kill" || got[1] != "before-restart" {
		t.Fatalf("after Kill+Restart kv = %q, want [before-kill before-restart]", got)
	}

	// Stop keeps the data for a later Restart; Stop twice is fine.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := srv.Kill(); err == nil {
		t.Error("Kill of a stopped server succeeded")
	}
	srv.Restart(t)
	if got := values(t, dsnA); len(got) != 2 {
		t.Fatalf("after Stop+Restart kv = %q", got)
	}
}

// TestParallel starts servers concurrently, as parallel test binaries do,
// and has tests share one server through NewDatabase.
func TestParallel(t *testing.T) {
	const n = 3
	var mu sync.Mutex
	ports := map[string]bool{}
	for i := 0; i < n; i++ {
		t.Run("server", func(t *testing.T) {
			t.Parallel()
			srv := pgtest.Start(t)
			mu.Lock()
			if ports[srv.DSN()] {
				t.Errorf("DSN %s handed out twice", srv.DSN())
			}
			ports[srv.DSN()] = true
			mu.Unlock()
			for j := 0; j < 3; j++ {
				t.Run("db", func(t *testing.T) {
					t.Parallel()
					conn := connect(t, srv.NewDatabase(t))
					exec(t, conn, "CREATE TABLE kv (v text)")
					exec(t, conn, "INSERT INTO kv VALUES ($1)", t.Name())
				})
			}
		})
	}
}

// TestLeakedConnectionDoesNotBlockStop checks that Stop is a fast shutdown:
// a smart shutdown would wait forever for this open connection.
func TestLeakedConnectionDoesNotBlockStop(t *testing.T) {
	srv := pgtest.Start(t)
	conn := connect(t, srv.NewDatabase(t))
	exec(t, conn, "BEGIN")
	done := make(chan error, 1)
	go func() { done <- srv.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Stop blocked by an open connection")
	}
	if err := conn.Ping(context.Background()); err == nil {
		t.Error("connection still works after Stop")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping after Stop: %v", err)
	}
}

// TestKillWithoutRestart checks that a test may end with its server killed:
// the cleanup must cope with the crashed server's leftovers.
func TestKillWithoutRestart(t *testing.T) {
	var dsn string
	t.Run("kill", func(t *testing.T) {
		srv := pgtest.Start(t)
		dsn = srv.DSN()
		exec(t, connect(t, srv.NewDatabase(t)), "SELECT 1")
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		_ = conn.Close(ctx)
		t.Errorf("server at %s still accepts connections after the test ended", dsn)
	}
}
