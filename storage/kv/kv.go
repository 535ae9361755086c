// Package kv holds the transactional, ordered key-value stores Airlock's
// state lives in: bbolt (one process, the embedded default) and PostgreSQL
// (several replicas sharing one database).
//
// The state package writes its records through this interface only, so the
// same transaction code runs on both engines and their semantics cannot
// drift apart:
//
//   - Update transactions are serialized: bbolt has one writer per file;
//     PostgreSQL takes one transaction-scoped advisory lock before the first
//     statement, so writers on every replica run one after the other and each
//     sees everything committed before it. A state transition and its audit
//     entry therefore commit together or not at all, and of two concurrent
//     transitions of one image exactly one wins on every engine.
//   - View transactions read one consistent snapshot and never wait for a
//     writer.
//   - Keys are ordered bytewise inside a bucket (bbolt's order, and
//     PostgreSQL's bytea order), so prefix scans and reverse scans agree.
//
// A read that fails inside a transaction (the database went away) returns
// nil, as if the key were absent, and makes the whole transaction fail with
// that error when it ends: a caller never acts on a half-read state, and
// code written for bbolt's error-free reads stays correct.
package kv

import (
	"context"
	"errors"
)

// DB is a transactional key-value store.
type DB interface {
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it when fn
	// returns nil; an error from fn rolls everything back.
	Update(fn func(Tx) error) error
	// Close releases the store.
	Close() error
}

// Tx is one transaction.
type Tx interface {
	// Bucket returns the named bucket, or nil when it does not exist.
	Bucket(name []byte) Bucket
	// CreateBucketIfNotExists makes sure bucket name exists.
	CreateBucketIfNotExists(name []byte) error
	// ClearBucket removes every key of bucket name (and its sequence).
	ClearBucket(name []byte) error
	// Writable reports whether this is an Update transaction.
	Writable() bool
}

// Bucket is an ordered set of keys within a transaction. Returned slices
// are valid only until the transaction ends.
type Bucket interface {
	// Get returns the value of key, or nil.
	Get(key []byte) []byte
	// Put sets key to value.
	Put(key, value []byte) error
	// Delete removes key; a missing key is no error.
	Delete(key []byte) error
	// Cursor iterates the bucket in key order.
	Cursor() Cursor
	// ForEach calls fn for every key in order, stopping at its first error.
	ForEach(fn func(k, v []byte) error) error
	// NextSequence increments the bucket's sequence and returns it.
	NextSequence() (uint64, error)
	// Sequence returns the bucket's sequence without changing it.
	Sequence() uint64
	// SetSequence sets the bucket's sequence (used when copying a store).
	SetSequence(v uint64) error
	// KeyN counts the keys, this transaction's writes included.
	KeyN() int
}

// Cursor walks a bucket. Every method returns nil, nil past either end.
type Cursor interface {
	First() (k, v []byte)
	Last() (k, v []byte)
	// Seek moves to key, or to the first key after it.
	Seek(key []byte) (k, v []byte)
	Next() (k, v []byte)
	Prev() (k, v []byte)
}

// Watcher is implemented by a DB several processes share: fn is called
// after any of them commits an Update, and once after the watch had to
// reconnect (changes may have been missed meanwhile), until ctx is done.
type Watcher interface {
	Watch(ctx context.Context, fn func())
}

// ErrUnavailable marks errors that come from not reaching the database
// (as opposed to the database refusing a statement): the caller may serve
// from what it knew (state.fail_static) and /readyz reports it.
var ErrUnavailable = errors.New("state database unavailable")

// Shared reports whether db is shared by several processes (PostgreSQL),
// so cross-process leases and wake-ups are needed.
func Shared(db DB) bool {
	_, ok := db.(Watcher)
	return ok
}
