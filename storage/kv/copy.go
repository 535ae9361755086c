package kv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// dumpLine is one line of a dump: a key, or (Seq set) a bucket's sequence.
type dumpLine struct {
	Bucket string  `json:"b"`
	Key    []byte  `json:"k,omitempty"`
	Value  []byte  `json:"v,omitempty"`
	Seq    *uint64 `json:"seq,omitempty"`
}

// copyBatch bounds the keys one import transaction writes, so a large
// state never holds the writer lock for long.
const copyBatch = 5000

// maxDumpLine bounds one line of a dump (a record is a few KiB at most).
const maxDumpLine = 16 << 20

// Counts are keys per bucket.
type Counts map[string]int

// Export writes every key of buckets, from one consistent snapshot of
// db, to w as JSON lines (keys and values base64), each bucket's sequence
// first. It returns the keys written per bucket.
func Export(db DB, buckets [][]byte, w io.Writer) (Counts, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	counts := Counts{}
	err := db.View(func(tx Tx) error {
		for _, name := range buckets {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			seq := b.Sequence()
			if err := enc.Encode(dumpLine{Bucket: string(name), Seq: &seq}); err != nil {
				return err
			}
			n := 0
			err := b.ForEach(func(k, v []byte) error {
				n++
				return enc.Encode(dumpLine{Bucket: string(name), Key: k, Value: v})
			})
			if err != nil {
				return fmt.Errorf("export %s: %w", name, err)
			}
			counts[string(name)] = n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return counts, bw.Flush()
}

// Import writes a dump read from r into db: keys are set (a key present in
// db and the dump takes the dump's value), sequences never go back. Running
// it twice with one dump gives the same state. Only buckets in allowed are
// accepted. It returns the keys read per bucket.
func Import(db DB, allowed [][]byte, r io.Reader) (Counts, error) {
	known := map[string]bool{}
	for _, b := range allowed {
		known[string(b)] = true
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxDumpLine)
	counts := Counts{}
	var batch []dumpLine
	bulk, _ := db.(interface{ importBatch([]dumpLine) error })
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if bulk != nil {
			err := bulk.importBatch(batch)
			batch = batch[:0]
			return err
		}
		err := db.Update(func(tx Tx) error {
			for _, l := range batch {
				if err := tx.CreateBucketIfNotExists([]byte(l.Bucket)); err != nil {
					return err
				}
				b := tx.Bucket([]byte(l.Bucket))
				if l.Seq != nil {
					if *l.Seq > b.Sequence() {
						if err := b.SetSequence(*l.Seq); err != nil {
							return err
						}
					}
					continue
				}
				if err := b.Put(l.Key, l.Value); err != nil {
					return err
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	line := 0
	for sc.Scan() {
		line++
		var l dumpLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return counts, fmt.Errorf("import line %d: %w", line, err)
		}
		if !known[l.Bucket] {
			return counts, fmt.Errorf("import line %d: unknown bucket %q", line, l.Bucket)
		}
		if l.Seq == nil && len(l.Key) == 0 {
			return counts, fmt.Errorf("import line %d: no key", line)
		}
		if l.Seq == nil {
			counts[l.Bucket]++
		}
		batch = append(batch, l)
		if len(batch) >= copyBatch {
			if err := flush(); err != nil {
				return counts, fmt.Errorf("import (before line %d): %w", line, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return counts, fmt.Errorf("import line %d: longer than %d bytes", line+1, maxDumpLine)
		}
		return counts, fmt.Errorf("import: %w", err)
	}
	if err := flush(); err != nil {
		return counts, fmt.Errorf("import: %w", err)
	}
	return counts, nil
}

// Copy copies buckets from src to dst (see Import) and returns the keys
// copied per bucket.
func Copy(dst, src DB, buckets [][]byte) (Counts, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := Export(src, buckets, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	counts, err := Import(dst, buckets, pr)
	pr.CloseWithError(errors.New("import stopped"))
	if eerr := <-done; eerr != nil && err == nil {
		err = eerr
	}
	return counts, err
}

// Count returns the keys per bucket in db.
func Count(db DB, buckets [][]byte) (Counts, error) {
	counts := Counts{}
	err := db.View(func(tx Tx) error {
		for _, name := range buckets {
			if b := tx.Bucket(name); b != nil {
				counts[string(name)] = b.KeyN()
			}
		}
		return nil
	})
	return counts, err
}
