package kv

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrations are the schema versions, applied in order of their number;
// a released file is never edited, a change is a new file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Migration is one schema version.
type Migration struct {
	Version int
	Name    string
	sql     string
}

// Migrations lists the schema versions this binary knows, in order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: want <number>_<name>.sql", e.Name())
		}
		raw, err := migrations.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, sql: string(raw)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

const createMigrations = `CREATE TABLE IF NOT EXISTS airlock_schema_migrations (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Pending returns the migrations not applied to the database yet. It fails
// when the database has a version this binary does not know: a newer
// Airlock migrated it, and this one must not write a schema it does not
// understand.
func (p *Postgres) Pending(ctx context.Context) ([]Migration, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var exists bool
	if err := p.pool.QueryRow(ctx, "SELECT to_regclass('airlock_schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, p.wrap(fmt.Errorf("read schema version: %w", err))
	}
	if !exists {
		return all, nil
	}
	rows, err := p.pool.Query(ctx, "SELECT version FROM airlock_schema_migrations")
	if err != nil {
		return nil, p.wrap(fmt.Errorf("read schema version: %w", err))
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, p.wrap(fmt.Errorf("read schema version: %w", err))
	}
	known := map[int]bool{}
	for _, m := range all {
		known[m.Version] = true
	}
	have := map[int]bool{}
	for _, v := range done {
		if !known[int(v)] {
			return nil, fmt.Errorf("state database has schema version %d, which this airlock does not know (it knows up to %d): a newer airlock migrated it", v, all[len(all)-1].Version)
		}
		have[int(v)] = true
	}
	var out []Migration
	for _, m := range all {
		if !have[m.Version] {
			out = append(out, m)
		}
	}
	return out, nil
}

// Migrate applies the pending migrations, each in its own transaction,
// while holding a session advisory lock: replicas starting together wait
// for the first, then find nothing left to do. It returns what it applied.
func (p *Postgres) Migrate(ctx context.Context) ([]Migration, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, p.wrap(fmt.Errorf("migrate: %w", err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return nil, p.wrap(fmt.Errorf("migrate: take lock: %w", err))
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrateLock) //nolint:errcheck // the session ends the lock anyway
	if _, err := conn.Exec(ctx, createMigrations); err != nil {
		return nil, p.wrap(fmt.Errorf("migrate: %w", err))
	}
	pending, err := p.Pending(ctx)
	if err != nil {
		return nil, err
	}
	var applied []Migration
	for _, m := range pending {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO airlock_schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, p.wrap(fmt.Errorf("migrate to %d %s: %w", m.Version, m.Name, err))
		}
		applied = append(applied, m)
	}
	return applied, nil
}
