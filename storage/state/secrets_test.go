package state

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/airlockproxy/airlock/storage/kv"
)

// TestSecretMadeOnceAndShared: a key is made at the first ask and is the
// same for every later ask, after a restart, and (PostgreSQL) on every
// replica, even when they all ask at once.
func TestSecretMadeOnceAndShared(t *testing.T) {
	s, where := openStore(t)
	const replicas = 4
	stores := []*Store{s}
	if onPostgres() {
		for range replicas - 1 {
			r, err := reopen(t, where)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			stores = append(stores, r)
		}
	}
	// Everyone asks at once, several times each: one key comes out.
	var wg sync.WaitGroup
	keys := make(chan []byte, 8*len(stores))
	errs := make(chan error, 8*len(stores))
	for i := range 8 * len(stores) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := stores[i%len(stores)].Secret("pullauth")
			if err != nil {
				errs <- err
				return
			}
			keys <- k
		}()
	}
	wg.Wait()
	close(keys)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var first []byte
	for k := range keys {
		if len(k) != SecretSize {
			t.Fatalf("key of %d bytes", len(k))
		}
		if first == nil {
			first = k
		} else if !bytes.Equal(k, first) {
			t.Fatalf("two keys for one name: %x and %x", first, k)
		}
	}
	if bytes.Equal(first, make([]byte, SecretSize)) {
		t.Fatal("the key is all zeros")
	}
	other, err := s.Secret("other")
	if err != nil || bytes.Equal(other, first) {
		t.Errorf("another name: %x, %v; want a key of its own", other, err)
	}
	// Changing the returned slice does not change the key.
	first[0] ^= 0xff
	if again, _ := s.Secret("pullauth"); again[0] == first[0] {
		t.Error("the returned key aliases the stored one")
	}
	first[0] ^= 0xff

	// A restart (bbolt: the same file) finds the same key.
	if !onPostgres() {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := reopen(t, where)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		s = r
	}
	if k, err := s.Secret("pullauth"); err != nil || !bytes.Equal(k, first) {
		t.Errorf("after a restart: %x, %v; want %x", k, err, first)
	}
	if _, err := s.Secret(""); err == nil {
		t.Error("an empty name was accepted")
	}
}

// TestSecretNotExported: keys stay out of `airlock state export`, and a
// stored key of the wrong length is refused, not used.
func TestSecretNotExported(t *testing.T) {
	s, _ := openStore(t)
	if _, err := s.Secret("pullauth"); err != nil {
		t.Fatal(err)
	}
	for _, b := range Buckets() {
		if bytes.Equal(b, bucketSecrets) {
			t.Fatal("the secrets bucket is exported")
		}
	}
	var dump bytes.Buffer
	if _, err := kv.Export(s.db, Buckets(), &dump); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump.String(), `"b":"secrets"`) {
		t.Error("the export holds the secrets bucket")
	}
	err := s.db.Update(func(tx kv.Tx) error {
		return tx.Bucket(bucketSecrets).Put([]byte("short"), []byte("0123456789"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret("short"); err == nil || !strings.Contains(err.Error(), "stored key is 10 bytes") {
		t.Errorf("a 10-byte key: %v, want refused", err)
	}
}
