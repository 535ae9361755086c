package state

import (
	"path/filepath"
	"testing"

	"github.com/airlockproxy/airlock/storage/kv"
)

// BenchmarkImagesByState measures Store.Images over a bbolt file of
// 20,000 image records (those of BenchmarkManifestDecision: a scan and
// policy summary, four steps, three blobs each), one in ten of them
// rejected. Side by side in one run: every record decoded (Images(""),
// the reference: what a state filter cost when each record was decoded
// whole), the rejected tenth (the review queue's read: each record's
// state is read first, and only matching records are decoded whole), and
// the approved nine tenths.
func BenchmarkImagesByState(b *testing.B) {
	const n = 20_000
	path := filepath.Join(b.TempDir(), "airlock.db")
	refs := fillDecisionDB(b, path, n)
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	err = s.db.Update(func(tx kv.Tx) error {
		images := tx.Bucket(bucketImages)
		for i := 0; i < len(refs); i += 10 {
			var img Image
			key := []byte(refs[i].String())
			if err := getJSON(images, key, &img); err != nil {
				return err
			}
			img.State = StateRejected
			if err := putJSON(images, key, &img); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   State
		want int
	}{
		{"all", "", n},
		{"rejected", StateRejected, n / 10},
		{"approved", StateApproved, n - n/10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				imgs, err := s.Images(tc.st)
				if err != nil {
					b.Fatal(err)
				}
				if len(imgs) != tc.want {
					b.Fatalf("Images(%q): %d, want %d", tc.st, len(imgs), tc.want)
				}
			}
		})
	}
}
