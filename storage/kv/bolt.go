package kv

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is a DB in one bbolt file, for a single process.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the bbolt file at path. It fails
// fast, with a clear error, when another process holds the file.
func OpenBolt(path string) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open state %s: the file is locked by another process (is another airlock running?)", path)
		}
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// View implements DB.
func (b *Bolt) View(fn func(Tx) error) error {
	return b.db.View(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Update implements DB.
func (b *Bolt) Update(fn func(Tx) error) error {
	return b.db.Update(func(tx *bolt.Tx) error { return fn(boltTx{tx}) })
}

// Close implements DB.
func (b *Bolt) Close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Bucket(name []byte) Bucket {
	b := t.tx.Bucket(name)
	if b == nil {
		return nil // an untyped nil: callers compare with nil
	}
	return boltBucket{b}
}

func (t boltTx) CreateBucketIfNotExists(name []byte) error {
	_, err := t.tx.CreateBucketIfNotExists(name)
	return err
}

func (t boltTx) ClearBucket(name []byte) error {
	if t.tx.Bucket(name) != nil {
		if err := t.tx.DeleteBucket(name); err != nil {
			return err
		}
	}
	_, err := t.tx.CreateBucket(name)
	return err
}

func (t boltTx) Writable() bool { return t.tx.Writable() }

type boltBucket struct{ b *bolt.Bucket }

func (b boltBucket) Get(key []byte) []byte         { return b.b.Get(key) }
func (b boltBucket) Put(key, value []byte) error   { return b.b.Put(key, value) }
func (b boltBucket) Delete(key []byte) error       { return b.b.Delete(key) }
func (b boltBucket) Cursor() Cursor                { return b.b.Cursor() }
func (b boltBucket) NextSequence() (uint64, error) { return b.b.NextSequence() }
func (b boltBucket) Sequence() uint64              { return b.b.Sequence() }
func (b boltBucket) SetSequence(v uint64) error    { return b.b.SetSequence(v) }

// KeyN counts this transaction's own writes too: bbolt's Stats sees only
// committed pages, so a writable transaction walks the keys instead.
func (b boltBucket) KeyN() int {
	if !b.b.Tx().Writable() {
		return b.b.Stats().KeyN
	}
	n := 0
	c := b.b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
func (b boltBucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }
