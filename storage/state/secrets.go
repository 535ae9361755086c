package state

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/airlockproxy/airlock/storage/kv"
)

// bucketSecrets holds keys Airlock makes for itself, by name (e.g. the key
// that signs registry bearer tokens, package pullauth). It is created on
// first use and is deliberately not in buckets: `airlock state export`
// must not write signing keys into a dump file, and a store that starts
// without them makes new ones (what was signed with the old ones stops
// working, which for short-lived tokens is minutes).
var bucketSecrets = []byte("secrets")

// SecretSize is the length of the keys Secret makes.
const SecretSize = 32

// Secret returns the random key called name, making it (SecretSize bytes
// from crypto/rand) the first time any process sharing the store asks.
// Writers are serialized (see package kv), so however many replicas ask
// at once, all of them get the same key.
func (s *Store) Secret(name string) ([]byte, error) {
	if name == "" {
		return nil, errors.New("secret: empty name")
	}
	var key []byte
	// Fast path: the key exists; a read never waits for a writer.
	err := s.db.View(func(tx kv.Tx) error {
		if b := tx.Bucket(bucketSecrets); b != nil {
			key = clone(b.Get([]byte(name)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	if key != nil {
		return checkSecret(name, key)
	}
	err = s.db.Update(func(tx kv.Tx) error {
		if err := tx.CreateBucketIfNotExists(bucketSecrets); err != nil {
			return err
		}
		b := tx.Bucket(bucketSecrets)
		// Another replica may have made it since the read above.
		if key = clone(b.Get([]byte(name))); key != nil {
			return nil
		}
		key = make([]byte, SecretSize)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		return b.Put([]byte(name), key)
	})
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return checkSecret(name, key)
}

// checkSecret refuses a stored key of the wrong length: a truncated key
// would still sign, weakly.
func checkSecret(name string, key []byte) ([]byte, error) {
	if len(key) != SecretSize {
		return nil, fmt.Errorf("secret %s: stored key is %d bytes, want %d", name, len(key), SecretSize)
	}
	return key, nil
}

// clone copies b, which is valid only inside its transaction (nil stays nil).
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
