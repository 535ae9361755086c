package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The advisory lock keys Airlock takes; arbitrary constants ("airlock" in
// ASCII, then a role) that no other application is expected to use.
const (
	writerLock  int64 = 0x6169726c6f636b01 // held by every Update transaction
	migrateLock int64 = 0x6169726c6f636b02 // held while the schema is migrated
)

// notifyChannel is the LISTEN/NOTIFY channel every committed Update
// signals on, so held pulls on other replicas wake at once.
const notifyChannel = "airlock_state"

// Postgres is a DB in a PostgreSQL database, shared by several Airlock
// processes. Buckets are rows of one table keyed (bucket, key); see the
// package doc for the transaction semantics.
type Postgres struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	log     *slog.Logger
}

// PostgresOption configures OpenPostgres.
type PostgresOption func(*postgresOptions)

type postgresOptions struct {
	timeout time.Duration
	migrate bool
	log     *slog.Logger
}

// WithTimeout bounds each transaction, waiting for the writer lock
// included (default 15s): a request never hangs on a database that went
// away.
func WithTimeout(d time.Duration) PostgresOption {
	return func(o *postgresOptions) { o.timeout = d }
}

// WithoutMigrate opens the database as it is, without applying or
// checking schema migrations (for `airlock state migrate` and export).
func WithoutMigrate() PostgresOption { return func(o *postgresOptions) { o.migrate = false } }

// WithLog sets the logger for reconnects and migrations.
func WithLog(l *slog.Logger) PostgresOption { return func(o *postgresOptions) { o.log = l } }

// ParseDSN checks a PostgreSQL connection string. Its error never repeats
// the string: it may hold a password.
func ParseDSN(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			return nil, fmt.Errorf("state dsn: cannot parse (value not shown): %v", pe.Unwrap())
		}
		return nil, errors.New("state dsn: cannot parse (value not shown)")
	}
	// Settings of every session: a replica that stalls inside a
	// transaction (paused, partitioned) must not hold the writer lock
	// for long.
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgxpool's default (the CPU count) queues a busy registry's
		// decisions behind a handful of connections; each is one short
		// read transaction, so more connections are cheap.
		cfg.MaxConns = 32
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "airlock"
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "30000"
	return cfg, nil
}

// OpenPostgres connects to the database at dsn and, unless WithoutMigrate
// is given, applies pending schema migrations under an advisory lock (so
// replicas starting together migrate once).
func OpenPostgres(ctx context.Context, dsn string, opts ...PostgresOption) (*Postgres, error) {
	o := postgresOptions{timeout: 15 * time.Second, migrate: true, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state database: %w", err)
	}
	p := &Postgres{pool: pool, timeout: o.timeout, log: o.log}
	if err := p.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if o.migrate {
		applied, err := p.Migrate(ctx)
		if err != nil {
			pool.Close()
			return nil, err
		}
		for _, m := range applied {
			o.log.Info("state schema migrated", "version", m.Version, "name", m.Name)
		}
	}
	return p, nil
}

// Ping checks that the database answers.
func (p *Postgres) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := p.pool.Ping(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// Close implements DB.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// View implements DB: a read-only, repeatable-read transaction.
func (p *Postgres) View(fn func(Tx) error) error { return p.run(false, fn) }

// Update implements DB: a transaction holding the writer lock.
func (p *Postgres) Update(fn func(Tx) error) error { return p.run(true, fn) }

// run runs fn in a transaction. A transaction that could not begin
// because the database could not be reached (a restart left the pool with
// dead connections: the first statement on each finds out) begins again,
// twice at most, so a restart of PostgreSQL costs a replica a short wait,
// not an error per pooled connection. Once fn has run it is never run
// again: callers collect results in variables of their own.
func (p *Postgres) run(write bool, fn func(Tx) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		var ran bool
		ran, err = p.once(write, fn)
		if err == nil || ran || !errors.Is(err, ErrUnavailable) {
			return err
		}
	}
	return err
}

// once runs fn in one transaction; ran reports whether fn may have acted
// on what it read (so it must not run again).
func (p *Postgres) once(write bool, fn func(Tx) error) (ran bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if !write {
		return p.view(ctx, fn)
	}
	// Read committed under the writer lock: every statement sees all
	// that committed before this writer got the lock.
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return false, p.wrap(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	t := &pgTx{ctx: ctx, tx: tx, write: true, p: p}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", writerLock); err != nil {
		return false, p.wrap(err)
	}
	ferr := fn(t)
	if t.err != nil {
		// A failed read looked like a missing key to fn: its result
		// is not to be trusted, whatever it was.
		return true, t.err
	}
	if ferr != nil {
		return true, ferr
	}
	if t.wrote {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel); err != nil {
			return true, p.wrap(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return true, p.wrap(err)
	}
	return true, nil
}

// view runs fn in a read-only, repeatable-read transaction whose BEGIN
// travels with its first read (lazyRead): a decision that reads one key
// costs two round trips, not three.
func (p *Postgres) view(ctx context.Context, fn func(Tx) error) (ran bool, err error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return false, p.wrap(err)
	}
	// A connection left inside a transaction (an error before COMMIT)
	// is closed by the pool on release, never reused half-way.
	defer conn.Release()
	lr := &lazyRead{conn: conn}
	t := &pgTx{ctx: ctx, tx: lr, p: p}
	ferr := fn(t)
	if lr.begun {
		if _, err := conn.Exec(ctx, "COMMIT"); err != nil && t.err == nil && ferr == nil {
			// Everything was read from one snapshot; the end of a
			// read-only transaction changes nothing, but the
			// connection is suspect: report it.
			return true, p.wrap(err)
		}
	}
	if t.err != nil {
		// A first statement that failed read nothing: fn saw only
		// "not found" answers and may run again on a new connection.
		return !lr.failedFirst, t.err
	}
	return true, ferr
}

// lazyRead begins its transaction with the first statement, sent in one
// pipeline with it.
type lazyRead struct {
	conn        *pgxpool.Conn
	begun       bool
	failedFirst bool // the pipelined BEGIN and first statement failed
}

const beginRead = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

// begin sends BEGIN and the first statement together and returns the
// results, positioned at the statement's.
func (l *lazyRead) begin(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.Queue(beginRead)
	b.Queue(sql, args...)
	br := l.conn.SendBatch(ctx, b)
	l.begun = true
	if _, err := br.Exec(); err != nil {
		br.Close()
		l.failedFirst = true
		return nil, err
	}
	return br, nil
}

func (l *lazyRead) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if !l.begun {
		if _, err := l.conn.Exec(ctx, beginRead); err != nil {
			return pgconn.CommandTag{}, err
		}
		l.begun = true
	}
	return l.conn.Exec(ctx, sql, args...)
}

func (l *lazyRead) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if l.begun {
		return l.conn.QueryRow(ctx, sql, args...)
	}
	br, err := l.begin(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

func (l *lazyRead) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if l.begun {
		return l.conn.Query(ctx, sql, args...)
	}
	br, err := l.begin(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// batchRow closes the batch once its row is read, so the connection is
// free for the transaction's next statement.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// batchRows closes the batch with the rows.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r *batchRows) Close() {
	r.Rows.Close()
	r.br.Close()
}

// wrap marks errors of reaching the database as ErrUnavailable; errors the
// server sent (a constraint, a syntax error) are returned as they are.
func (p *Postgres) wrap(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "57": // connection exception, operator intervention (shutdown)
			return unavailable(err)
		}
		return fmt.Errorf("state database: %w", err)
	}
	return unavailable(err)
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Watch implements Watcher with LISTEN on a connection of its own,
// reconnecting with backoff until ctx is done.
func (p *Postgres) Watch(ctx context.Context, fn func()) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := p.listen(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("state database: change notifications interrupted, reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (p *Postgres) listen(ctx context.Context, fn func()) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries the LISTEN: it never goes back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	// Whatever changed while not listening is looked at again.
	fn()
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return err
		}
		fn()
	}
}

// querier runs statements: the pgx.Tx of an Update, or a lazyRead.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type pgTx struct {
	ctx   context.Context
	tx    querier
	p     *Postgres
	write bool
	wrote bool
	err   error // the first failed read; fails the transaction
}

func (t *pgTx) fail(err error) {
	if t.err == nil {
		t.err = t.p.wrap(err)
	}
}

func (t *pgTx) exec(sql string, args ...any) error {
	if t.err != nil {
		return t.err
	}
	if !t.write {
		return errors.New("state database: write in a read-only transaction")
	}
	t.wrote = true
	if _, err := t.tx.Exec(t.ctx, sql, args...); err != nil {
		t.fail(err)
		return t.err
	}
	return nil
}

func (t *pgTx) Bucket(name []byte) Bucket { return &pgBucket{t: t, name: string(name)} }

// CreateBucketIfNotExists implements Tx: every bucket exists in the one table.
func (t *pgTx) CreateBucketIfNotExists([]byte) error { return nil }

func (t *pgTx) ClearBucket(name []byte) error {
	if err := t.exec("DELETE FROM airlock_kv WHERE bucket = $1", string(name)); err != nil {
		return err
	}
	return t.exec("DELETE FROM airlock_kv_seq WHERE bucket = $1", string(name))
}

func (t *pgTx) Writable() bool { return t.write }

type pgBucket struct {
	t    *pgTx
	name string
}

func (b *pgBucket) Get(key []byte) []byte {
	if b.t.err != nil {
		return nil
	}
	var v []byte
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT value FROM airlock_kv WHERE bucket = $1 AND key = $2", b.name, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		b.t.fail(err)
		return nil
	}
	if v == nil {
		v = []byte{}
	}
	return v
}

func (b *pgBucket) Put(key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return b.t.exec(`INSERT INTO airlock_kv (bucket, key, value) VALUES ($1, $2, $3)
		ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value`, b.name, key, value)
}

func (b *pgBucket) Delete(key []byte) error {
	return b.t.exec("DELETE FROM airlock_kv WHERE bucket = $1 AND key = $2", b.name, key)
}

func (b *pgBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *pgBucket) NextSequence() (uint64, error) {
	if b.t.err != nil {
		return 0, b.t.err
	}
	if !b.t.write {
		return 0, errors.New("state database: write in a read-only transaction")
	}
	b.t.wrote = true
	var v int64
	err := b.t.tx.QueryRow(b.t.ctx, `INSERT INTO airlock_kv_seq (bucket, value) VALUES ($1, 1)
		ON CONFLICT (bucket) DO UPDATE SET value = airlock_kv_seq.value + 1 RETURNING value`, b.name).Scan(&v)
	if err != nil {
		b.t.fail(err)
		return 0, b.t.err
	}
	return uint64(v), nil
}

func (b *pgBucket) Sequence() uint64 {
	if b.t.err != nil {
		return 0
	}
	var v int64
	err := b.t.tx.QueryRow(b.t.ctx, "SELECT value FROM airlock_kv_seq WHERE bucket = $1", b.name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		b.t.fail(err)
		return 0
	}
	return uint64(v)
}

func (b *pgBucket) SetSequence(v uint64) error {
	return b.t.exec(`INSERT INTO airlock_kv_seq (bucket, value) VALUES ($1, $2)
		ON CONFLICT (bucket) DO UPDATE SET value = EXCLUDED.value`, b.name, int64(v))
}

func (b *pgBucket) KeyN() int {
	if b.t.err != nil {
		return 0
	}
	var n int64
	if err := b.t.tx.QueryRow(b.t.ctx, "SELECT count(*) FROM airlock_kv WHERE bucket = $1", b.name).Scan(&n); err != nil {
		b.t.fail(err)
		return 0
	}
	return int(n)
}

func (b *pgBucket) Cursor() Cursor { return &pgCursor{b: b} }

// cursorBatch is how many rows a cursor reads per query: prefix scans
// are mostly short, and an audit page is 50-500 entries.
const cursorBatch = 128

// The cursor queries; $2 is the key to start from, $3 the batch size.
const (
	qFirst = "SELECT key, value FROM airlock_kv WHERE bucket = $1 ORDER BY key LIMIT $2"
	qLast  = "SELECT key, value FROM airlock_kv WHERE bucket = $1 ORDER BY key DESC LIMIT $2"
	qSeek  = "SELECT key, value FROM airlock_kv WHERE bucket = $1 AND key >= $2 ORDER BY key LIMIT $3"
	qAfter = "SELECT key, value FROM airlock_kv WHERE bucket = $1 AND key > $2 ORDER BY key LIMIT $3"
	qPrev  = "SELECT key, value FROM airlock_kv WHERE bucket = $1 AND key < $2 ORDER BY key DESC LIMIT $3"
)

type pgRow struct{ k, v []byte }

// pgCursor reads a batch of rows in its direction and queries the next
// batch from the last key it returned.
type pgCursor struct {
	b    *pgBucket
	rows []pgRow
	i    int
	fwd  bool
	full bool // the batch was full: more rows may follow it
	cur  []byte
	done bool
}

func (c *pgCursor) load(fwd bool, sql string, args ...any) (k, v []byte) {
	c.rows, c.i, c.fwd, c.done = c.rows[:0], 0, fwd, false
	t := c.b.t
	if t.err != nil {
		c.done = true
		return nil, nil
	}
	rows, err := t.tx.Query(t.ctx, sql, args...)
	if err != nil {
		t.fail(err)
		c.done = true
		return nil, nil
	}
	defer rows.Close()
	for rows.Next() {
		var r pgRow
		if err := rows.Scan(&r.k, &r.v); err != nil {
			rows.Close()
			t.fail(err)
			c.done = true
			return nil, nil
		}
		if r.v == nil {
			r.v = []byte{}
		}
		c.rows = append(c.rows, r)
	}
	if err := rows.Err(); err != nil {
		t.fail(err)
		c.done = true
		return nil, nil
	}
	c.full = len(c.rows) == cursorBatch
	return c.at()
}

func (c *pgCursor) at() (k, v []byte) {
	if c.i >= len(c.rows) {
		c.done = true
		return nil, nil
	}
	r := c.rows[c.i]
	c.cur = r.k
	return r.k, r.v
}

func (c *pgCursor) First() (k, v []byte) { return c.load(true, qFirst, c.b.name, cursorBatch) }
func (c *pgCursor) Last() (k, v []byte)  { return c.load(false, qLast, c.b.name, cursorBatch) }
func (c *pgCursor) Seek(key []byte) (k, v []byte) {
	return c.load(true, qSeek, c.b.name, key, cursorBatch)
}

func (c *pgCursor) Next() (k, v []byte) { return c.step(true) }
func (c *pgCursor) Prev() (k, v []byte) { return c.step(false) }

func (c *pgCursor) step(fwd bool) (k, v []byte) {
	if c.done || c.cur == nil {
		return nil, nil
	}
	if fwd == c.fwd && c.i+1 < len(c.rows) {
		c.i++
		return c.at()
	}
	if fwd == c.fwd && !c.full {
		c.done = true
		return nil, nil
	}
	if fwd {
		return c.load(true, qAfter, c.b.name, c.cur, cursorBatch)
	}
	return c.load(false, qPrev, c.b.name, c.cur, cursorBatch)
}

// importBatch writes a batch of a dump in one transaction with COPY: a
// statement per key would make moving a large bbolt state take hours.
func (p *Postgres) importBatch(batch []dumpLine) error {
	return p.Update(func(t Tx) error {
		pt := t.(*pgTx)
		pt.wrote = true
		ctx, tx := pt.ctx, pt.tx.(pgx.Tx)
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE airlock_import (n bigint, bucket text, key bytea, value bytea) ON COMMIT DROP`); err != nil {
			return p.wrap(err)
		}
		var rows [][]any
		for _, l := range batch {
			if l.Seq != nil {
				if _, err := tx.Exec(ctx, `INSERT INTO airlock_kv_seq (bucket, value) VALUES ($1, $2)
					ON CONFLICT (bucket) DO UPDATE SET value = GREATEST(airlock_kv_seq.value, EXCLUDED.value)`, l.Bucket, int64(*l.Seq)); err != nil {
					return p.wrap(err)
				}
				continue
			}
			v := l.Value
			if v == nil {
				v = []byte{}
			}
			rows = append(rows, []any{int64(len(rows)), l.Bucket, l.Key, v})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"airlock_import"}, []string{"n", "bucket", "key", "value"}, pgx.CopyFromRows(rows)); err != nil {
			return p.wrap(err)
		}
		// A key twice in one batch (a dump written by hand) takes its
		// last value, as a put after a put does.
		_, err := tx.Exec(ctx, `INSERT INTO airlock_kv (bucket, key, value)
			SELECT DISTINCT ON (bucket, key) bucket, key, value FROM airlock_import ORDER BY bucket, key, n DESC
			ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value`)
		return p.wrap(err)
	})
}
