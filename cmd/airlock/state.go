package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/airlockproxy/airlock/storage/state"
)

// stateFile is the bbolt file in data_dir.
const stateFile = "airlock.db"

// openDB opens the state database cfg names: the bbolt file in data_dir,
// or the PostgreSQL database (migrating its schema unless noMigrate).
func openDB(ctx context.Context, cfg *config.Config, log *slog.Logger, noMigrate bool) (kv.DB, error) {
	switch cfg.State.Driver {
	case config.StatePostgres:
		opts := []kv.PostgresOption{kv.WithLog(log)}
		if noMigrate {
			opts = append(opts, kv.WithoutMigrate())
		}
		return kv.OpenPostgres(ctx, cfg.State.DSN, opts...)
	default:
		return kv.OpenBolt(filepath.Join(cfg.DataDir, stateFile))
	}
}

// openState opens the state store serve runs on.
func openState(ctx context.Context, cfg *config.Config, log *slog.Logger) (*state.Store, error) {
	opts := []state.Option{state.WithLease(cfg.Gate.Lease), state.WithFailStatic(cfg.State.FailStatic)}
	if cfg.State.Driver != config.StatePostgres {
		return state.Open(filepath.Join(cfg.DataDir, stateFile), opts...)
	}
	db, err := openDB(ctx, cfg, log, false)
	if err != nil {
		return nil, err
	}
	st, err := state.New(db, opts...)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state database: %w", err)
	}
	return st, nil
}

const stateUsage = `usage:
  airlock state migrate [--config F] [--dry-run]
        apply the PostgreSQL schema migrations this airlock knows (serve
        applies them at start too) and report them
  airlock state migrate [--config F] --to postgres://...
        copy the bbolt state in data_dir into that PostgreSQL database
        (schema migrated first); idempotent, prints counts
  airlock state export [--config F] > state.jsonl
        write the configured state store as JSON lines
  airlock state import [--config F] < state.jsonl
        write a dump into the configured state store; idempotent
Stop airlock serve on a bbolt state first: the file is locked while it runs.
The --to value may also come from $AIRLOCK_MIGRATE_TO (keeps a password
out of the shell history).
`

// stateCommand runs `airlock state ...`: schema migrations, and moving a
// state between engines.
func stateCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"migrate", "export", "import"}, args[0]) {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, stateUsage)
			return nil
		}
		fmt.Fprint(stderr, stateUsage)
		return exitError(2)
	}
	fs := flag.NewFlagSet("state "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), stateUsage) }
	file := fs.String("config", "", "config file (default: embedded defaults)")
	var to *string
	var dry *bool
	if args[0] == "migrate" {
		to = fs.String("to", os.Getenv("AIRLOCK_MIGRATE_TO"), "PostgreSQL DSN to copy the bbolt state into")
		dry = fs.Bool("dry-run", false, "report pending schema migrations without applying them")
	}
	if err := parseFlags(fs, args[1:], stdout, fs.Parse); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock state %s: unexpected argument %q\n", args[0], fs.Arg(0))
		return exitError(2)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	ctx := context.Background()
	buckets := state.Buckets()

	switch args[0] {
	case "export":
		db, err := openDB(ctx, cfg, log, true)
		if err != nil {
			return err
		}
		defer db.Close()
		counts, err := kv.Export(db, buckets, stdout)
		if err != nil {
			return err
		}
		printCounts(stderr, "exported", counts, nil)
		return nil
	case "import":
		db, err := openDB(ctx, cfg, log, false)
		if err != nil {
			return err
		}
		defer db.Close()
		counts, err := kv.Import(db, buckets, os.Stdin)
		if err != nil {
			return err
		}
		after, err := kv.Count(db, buckets)
		if err != nil {
			return err
		}
		printCounts(stdout, "imported", counts, after)
		return nil
	}

	// migrate
	if *to == "" {
		if cfg.State.Driver != config.StatePostgres {
			return errors.New("state migrate: state.driver is bbolt, which has no schema to migrate; to move to PostgreSQL, pass --to postgres://…")
		}
		return migrateSchema(ctx, cfg.State.DSN, *dry, log, stdout)
	}
	if *dry {
		return errors.New("state migrate: --dry-run reports schema migrations; it does not combine with --to")
	}
	if cfg.State.Driver != config.StateBolt {
		return errors.New("state migrate --to: copies a bbolt state; state.driver is not bbolt")
	}
	if !strings.HasPrefix(*to, "postgres://") && !strings.HasPrefix(*to, "postgresql://") && !strings.Contains(*to, "=") {
		return errors.New("state migrate --to: want a PostgreSQL connection string (postgres://… or key=value …)")
	}
	path := filepath.Join(cfg.DataDir, stateFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("state migrate --to: no bbolt state to copy: %w", err)
	}
	src, err := kv.OpenBolt(path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := kv.OpenPostgres(ctx, *to, kv.WithLog(log))
	if err != nil {
		return err
	}
	defer dst.Close()
	before, err := kv.Count(src, buckets)
	if err != nil {
		return err
	}
	if _, err := kv.Copy(dst, src, buckets); err != nil {
		return err
	}
	after, err := kv.Count(dst, buckets)
	if err != nil {
		return err
	}
	printCounts(stdout, "copied", before, after)
	for b, n := range before {
		if after[b] < n {
			return fmt.Errorf("state migrate --to: bucket %s has %d keys in PostgreSQL, fewer than the %d copied", b, after[b], n)
		}
	}
	return nil
}

// migrateSchema reports and (unless dry) applies pending migrations.
func migrateSchema(ctx context.Context, dsn string, dry bool, log *slog.Logger, stdout io.Writer) error {
	db, err := kv.OpenPostgres(ctx, dsn, kv.WithLog(log), kv.WithoutMigrate())
	if err != nil {
		return err
	}
	defer db.Close()
	pending, err := db.Pending(ctx)
	if err != nil {
		return err
	}
	if len(pending) == 0 {
		fmt.Fprintln(stdout, "schema up to date")
		return nil
	}
	for _, m := range pending {
		fmt.Fprintf(stdout, "pending %04d %s\n", m.Version, m.Name)
	}
	if dry {
		return nil
	}
	applied, err := db.Migrate(ctx)
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %04d %s\n", m.Version, m.Name)
	}
	return err
}

// printCounts prints keys per bucket, and the destination's count after.
func printCounts(w io.Writer, verb string, counts, after kv.Counts) {
	names := make([]string, 0, len(counts))
	for b := range counts {
		names = append(names, b)
	}
	slices.Sort(names)
	for _, b := range names {
		if after != nil {
			fmt.Fprintf(w, "%s %-12s %8d   now in destination: %d\n", verb, b, counts[b], after[b])
			continue
		}
		fmt.Fprintf(w, "%s %-12s %8d\n", verb, b, counts[b])
	}
}
