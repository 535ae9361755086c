package content

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestWalkAndDelete(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := New(ctx, "filesystem", map[string]any{"rootdirectory": root})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing stored yet: an empty walk, no error.
	if err := s.Walk(ctx, func(BlobInfo) error { t.Fatal("walked an empty store"); return nil }); err != nil {
		t.Fatal(err)
	}
	var want []digest.Digest
	for _, b := range []string{"one", "two", "three"} {
		d := digest.FromString(b)
		if err := s.PutBytes(ctx, d, []byte(b)); err != nil {
			t.Fatal(err)
		}
		want = append(want, d)
	}
	var got []digest.Digest
	err = s.Walk(ctx, func(b BlobInfo) error {
		got = append(got, b.Digest)
		if b.Size <= 0 || b.ModTime.IsZero() {
			t.Errorf("blob info %+v", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("walk = %v, want %v", got, want)
	}
	// Get caches manifests: a deleted one must not come back from the cache.
	if _, err := s.Get(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, want[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if _, err := s.Stat(ctx, want[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after Delete: %v", err)
	}
	// Deleting what is gone is no error.
	if err := s.Delete(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteDoesNotCutAnOpenReader is the filesystem half of "a blob being
// served is never cut mid-stream by GC": a reader opened before the
// delete reads every byte.
func TestDeleteDoesNotCutAnOpenReader(t *testing.T) {
	ctx := context.Background()
	s, err := New(ctx, "filesystem", map[string]any{"rootdirectory": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	d := digest.FromBytes(blob)
	if err := s.PutBytes(ctx, d, blob); err != nil {
		t.Fatal(err)
	}
	r, size, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest...); int64(len(got)) != size || !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes after delete, want all %d", len(got), size)
	}
}
