package kv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/kv"
)

var bucket = []byte("b")

// engine opens a fresh DB, and a second handle on the same data where
// the engine can be shared (PostgreSQL: another replica).
type engine struct {
	name   string
	open   func(t *testing.T) (kv.DB, func(t *testing.T) kv.DB)
	shared bool
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// postgres is one server for the package's tests; each test gets a
// database of its own.
func postgres(t *testing.T) *pgtest.Server { return pgtest.Shared(t) }

func engines() []engine {
	return []engine{
		{name: "bbolt", open: func(t *testing.T) (kv.DB, func(*testing.T) kv.DB) {
			db, err := kv.OpenBolt(filepath.Join(t.TempDir(), "kv.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db, nil
		}},
		{name: "postgres", shared: true, open: func(t *testing.T) (kv.DB, func(*testing.T) kv.DB) {
			dsn := postgres(t).NewDatabase(t)
			open := func(t *testing.T) kv.DB {
				db, err := kv.OpenPostgres(context.Background(), dsn, kv.WithTimeout(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			return open(t), open
		}},
	}
}

func forEachEngine(t *testing.T, fn func(t *testing.T, e engine, db kv.DB, another func(*testing.T) kv.DB)) {
	for _, e := range engines() {
		t.Run(e.name, func(t *testing.T) {
			db, another := e.open(t)
			if err := db.Update(func(tx kv.Tx) error { return tx.CreateBucketIfNotExists(bucket) }); err != nil {
				t.Fatal(err)
			}
			fn(t, e, db, another)
		})
	}
}

func key(i int) []byte { return []byte(fmt.Sprintf("k%05d", i)) }

func TestBucketOperations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, db kv.DB, _ func(*testing.T) kv.DB) {
		const n = 300 // more than a PostgreSQL cursor batch
		err := db.Update(func(tx kv.Tx) error {
			b := tx.Bucket(bucket)
			for i := n - 1; i >= 0; i-- {
				if err := b.Put(key(i), []byte(fmt.Sprint(i))); err != nil {
					return err
				}
			}
			// An Update reads its own writes.
			if got := b.Get(key(7)); string(got) != "7" {
				return fmt.Errorf("read own write = %q", got)
			}
			if got := b.Get([]byte("missing")); got != nil {
				return fmt.Errorf("missing key = %q", got)
			}
			// Counts include this transaction's writes on both engines.
			if n := b.KeyN(); n != 300 {
				return fmt.Errorf("KeyN inside the Update = %d, want 300", n)
			}
			return b.Delete(key(5))
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx kv.Tx) error {
			b := tx.Bucket(bucket)
			if tx.Writable() {
				t.Error("View is writable")
			}
			if b.KeyN() != n-1 {
				t.Errorf("KeyN = %d, want %d", b.KeyN(), n-1)
			}
			var fwd [][]byte
			c := b.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				fwd = append(fwd, append([]byte(nil), k...))
			}
			if len(fwd) != n-1 {
				t.Fatalf("forward walk saw %d keys, want %d", len(fwd), n-1)
			}
			for i := 1; i < len(fwd); i++ {
				if bytes.Compare(fwd[i-1], fwd[i]) >= 0 {
					t.Fatalf("forward walk out of order at %d: %s, %s", i, fwd[i-1], fwd[i])
				}
			}
			var back int
			for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
				if !bytes.Equal(k, fwd[len(fwd)-1-back]) {
					t.Fatalf("backward walk at %d = %s, want %s", back, k, fwd[len(fwd)-1-back])
				}
				back++
			}
			if back != n-1 {
				t.Errorf("backward walk saw %d keys", back)
			}
			// Seek lands on the key or the next one; a deleted key is skipped.
			if k, v := c.Seek(key(5)); !bytes.Equal(k, key(6)) || string(v) != "6" {
				t.Errorf("Seek(deleted k5) = %s=%s", k, v)
			}
			if k, _ := c.Seek([]byte("k00200")); !bytes.Equal(k, key(200)) {
				t.Errorf("Seek(k00200) = %s", k)
			}
			if k, _ := c.Seek([]byte("z")); k != nil {
				t.Errorf("Seek past the end = %s", k)
			}
			count := 0
			if err := b.ForEach(func(k, v []byte) error { count++; return nil }); err != nil {
				return err
			}
			if count != n-1 {
				t.Errorf("ForEach saw %d", count)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Sequences and ClearBucket.
		err = db.Update(func(tx kv.Tx) error {
			b := tx.Bucket(bucket)
			for want := uint64(1); want <= 3; want++ {
				if got, err := b.NextSequence(); err != nil || got != want {
					return fmt.Errorf("NextSequence = %d, %v; want %d", got, err, want)
				}
			}
			if err := b.SetSequence(10); err != nil {
				return err
			}
			if got := b.Sequence(); got != 10 {
				return fmt.Errorf("Sequence = %d", got)
			}
			if err := tx.ClearBucket(bucket); err != nil {
				return err
			}
			if b := tx.Bucket(bucket); b == nil || b.KeyN() != 0 || b.Sequence() != 0 {
				return errors.New("bucket not empty after ClearBucket")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestRollback: an error from fn leaves nothing behind.
func TestRollback(t *testing.T) {
	forEachEngine(t, func(t *testing.T, _ engine, db kv.DB, _ func(*testing.T) kv.DB) {
		boom := errors.New("boom")
		err := db.Update(func(tx kv.Tx) error {
			if err := tx.Bucket(bucket).Put([]byte("a"), []byte("1")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want boom", err)
		}
		_ = db.View(func(tx kv.Tx) error {
			if v := tx.Bucket(bucket).Get([]byte("a")); v != nil {
				t.Errorf("rolled-back write is visible: %q", v)
			}
			return nil
		})
	})
}

// TestWritersSerialize: read-modify-write transactions from two handles
// (two replicas) never lose an update, as bbolt's single writer guarantees.
func TestWritersSerialize(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db kv.DB, another func(*testing.T) kv.DB) {
		dbs := []kv.DB{db, db}
		if another != nil {
			dbs[1] = another(t)
		}
		const perWriter = 100
		var wg sync.WaitGroup
		errs := make(chan error, 2*perWriter)
		for _, h := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perWriter {
					errs <- h.Update(func(tx kv.Tx) error {
						b := tx.Bucket(bucket)
						var n uint64
						if v := b.Get([]byte("counter")); v != nil {
							n = binary.BigEndian.Uint64(v)
						}
						return b.Put([]byte("counter"), binary.BigEndian.AppendUint64(nil, n+1))
					})
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		_ = db.View(func(tx kv.Tx) error {
			if got := binary.BigEndian.Uint64(tx.Bucket(bucket).Get([]byte("counter"))); got != 2*perWriter {
				t.Errorf("counter = %d, want %d: an update was lost", got, 2*perWriter)
			}
			return nil
		})
	})
}

// TestWatch: a commit through one replica wakes the watchers of another.
func TestWatch(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db kv.DB, another func(*testing.T) kv.DB) {
		if !e.shared {
			if kv.Shared(db) {
				t.Fatal("bbolt claims to be shared")
			}
			return
		}
		other := another(t)
		w, ok := other.(kv.Watcher)
		if !ok {
			t.Fatal("postgres is not a Watcher")
		}
		var calls atomic.Int32
		woke := make(chan struct{}, 16)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.Watch(ctx, func() { calls.Add(1); woke <- struct{}{} })
		}()
		defer func() { cancel(); <-done }()
		<-woke // the call after connecting
		if err := db.Update(func(tx kv.Tx) error { return tx.Bucket(bucket).Put([]byte("x"), []byte("y")) }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woke:
		case <-time.After(5 * time.Second):
			t.Fatal("no wake-up on the other replica within 5s")
		}
		// A read-only Update notifies nobody.
		before := calls.Load()
		if err := db.Update(func(tx kv.Tx) error { _ = tx.Bucket(bucket).Get([]byte("x")); return nil }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if calls.Load() != before {
			t.Errorf("an Update that wrote nothing woke watchers")
		}
	})
}

// TestMigrateOnce: replicas starting together apply each migration once.
func TestMigrateOnce(t *testing.T) {
	srv := postgres(t)
	dsn := srv.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := kv.OpenPostgres(context.Background(), dsn)
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := kv.OpenPostgres(context.Background(), dsn, kv.WithoutMigrate())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pending, err := db.Pending(context.Background())
	if err != nil || len(pending) != 0 {
		t.Fatalf("Pending after start = %v, %v", pending, err)
	}
	all, _ := kv.Migrations()
	var rows int
	if err := srv.QueryRow(t, dsn, "SELECT count(*) FROM airlock_schema_migrations", &rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(all) {
		t.Errorf("airlock_schema_migrations has %d rows, want %d (one per migration)", rows, len(all))
	}
	// A database migrated by a newer airlock is refused, not written.
	if err := srv.Exec(t, dsn, "INSERT INTO airlock_schema_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	if db2, err := kv.OpenPostgres(context.Background(), dsn); err == nil {
		db2.Close()
		t.Fatal("opened a database with an unknown schema version")
	} else if !bytes.Contains([]byte(err.Error()), []byte("9999")) {
		t.Errorf("error %q does not name the unknown version", err)
	}
}

// TestUnavailable: a database that went away fails transactions with
// ErrUnavailable (never as "not found"), and a restarted one is used again
// without restarting Airlock.
func TestUnavailable(t *testing.T) {
	srv := pgtest.Start(t) // its own server: this test stops it
	dsn := srv.NewDatabase(t)
	db, err := kv.OpenPostgres(context.Background(), dsn, kv.WithTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func() error {
		return db.Update(func(tx kv.Tx) error { return tx.Bucket(bucket).Put([]byte("k"), []byte("v")) })
	}
	if err := put(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	err = db.View(func(tx kv.Tx) error {
		got = tx.Bucket(bucket).Get([]byte("k"))
		return nil
	})
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("View with the database down = %v (read %q), want ErrUnavailable", err, got)
	}
	if err := put(); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("Update with the database down = %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	// The pool's connections died with the server; the first
	// transaction after the restart still succeeds.
	err = db.View(func(tx kv.Tx) error {
		got = tx.Bucket(bucket).Get([]byte("k"))
		return nil
	})
	if err != nil || string(got) != "v" {
		t.Fatalf("View after restart = %q, %v", got, err)
	}
}

// TestCopy: a bbolt store copied to PostgreSQL twice holds the same keys
// and sequences, and the counts match.
func TestCopy(t *testing.T) {
	src, err := kv.OpenBolt(filepath.Join(t.TempDir(), "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	buckets := [][]byte{[]byte("images"), []byte("audit")}
	err = src.Update(func(tx kv.Tx) error {
		for _, name := range buckets {
			if err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
			b := tx.Bucket(name)
			for i := range 1500 {
				if _, err := b.NextSequence(); err != nil {
					return err
				}
				if err := b.Put(key(i), bytes.Repeat([]byte{byte(i)}, i%50)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := kv.OpenPostgres(context.Background(), postgres(t).NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for round := range 2 {
		counts, err := kv.Copy(dst, src, buckets)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		after, err := kv.Count(dst, buckets)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range buckets {
			if counts[string(b)] != 1500 || after[string(b)] != 1500 {
				t.Errorf("round %d: %s copied %d, now %d; want 1500", round, b, counts[string(b)], after[string(b)])
			}
		}
	}
	var diff error
	_ = src.View(func(stx kv.Tx) error {
		return dst.View(func(dtx kv.Tx) error {
			for _, name := range buckets {
				sb, db := stx.Bucket(name), dtx.Bucket(name)
				if sb.Sequence() != db.Sequence() {
					diff = fmt.Errorf("%s sequence %d, copied %d", name, sb.Sequence(), db.Sequence())
				}
				_ = sb.ForEach(func(k, v []byte) error {
					if got := db.Get(k); !bytes.Equal(got, v) {
						diff = fmt.Errorf("%s %s = %q, copied %q", name, k, v, got)
					}
					return nil
				})
			}
			return nil
		})
	})
	if diff != nil {
		t.Fatal(diff)
	}
	// A key twice in one dump takes its last value.
	dup := `{"b":"images","k":"ZHVw","v":"MQ=="}` + "\n" + `{"b":"images","k":"ZHVw","v":"Mg=="}` + "\n"
	if _, err := kv.Import(dst, buckets, bytes.NewReader([]byte(dup))); err != nil {
		t.Fatal(err)
	}
	_ = dst.View(func(tx kv.Tx) error {
		if v := tx.Bucket([]byte("images")).Get([]byte("dup")); string(v) != "2" {
			t.Errorf("duplicated key = %q, want the last value 2", v)
		}
		return nil
	})
	// A dump naming a bucket the store does not keep is refused.
	if _, err := kv.Import(dst, buckets, bytes.NewReader([]byte(`{"b":"evil","k":"eA==","v":"eQ=="}`+"\n"))); err == nil {
		t.Error("import of an unknown bucket succeeded")
	}
}

// TestViewIsOneSnapshot: the reads of one View see one committed state,
// however writers (of other replicas) commit between them: a writer keeps
// two keys equal, and no View ever sees them differ.
func TestViewIsOneSnapshot(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine, db kv.DB, another func(*testing.T) kv.DB) {
		writer := db
		if another != nil {
			writer = another(t)
		}
		put := func(n uint64) error {
			return writer.Update(func(tx kv.Tx) error {
				b := tx.Bucket(bucket)
				v := binary.BigEndian.AppendUint64(nil, n)
				if err := b.Put([]byte("a"), v); err != nil {
					return err
				}
				return b.Put([]byte("b"), v)
			})
		}
		if err := put(0); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for n := uint64(1); ; n++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if err := put(n); err != nil {
					done <- err
					return
				}
			}
		}()
		for i := range 300 {
			err := db.View(func(tx kv.Tx) error {
				b := tx.Bucket(bucket)
				a := b.Get([]byte("a"))
				time.Sleep(time.Millisecond) // let a writer commit in between
				c := b.Cursor()
				_, bv := c.Seek([]byte("b"))
				if !bytes.Equal(a, bv) {
					return fmt.Errorf("view %d read a=%x and b=%x: two states in one View", i, a, bv)
				}
				return nil
			})
			if err != nil {
				close(stop)
				<-done
				t.Fatal(err)
			}
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
