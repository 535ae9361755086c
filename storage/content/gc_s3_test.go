package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// The content garbage collector lists the store with Walk and removes
// blobs with Delete. These tests run them on every backend, S3 on a real
// MinIO server among them (see s3_test.go), and check what S3 adds: a
// listing without directories, prefix deletes, and a GET in progress.

// walkAll returns every blob Walk reports, by digest.
func walkAll(t *testing.T, s *Store) map[digest.Digest]BlobInfo {
	t.Helper()
	out := map[digest.Digest]BlobInfo{}
	err := s.Walk(context.Background(), func(b BlobInfo) error {
		if _, dup := out[b.Digest]; dup {
			t.Errorf("Walk reported %s twice", b.Digest)
		}
		out[b.Digest] = b
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return out
}

// samePrefix returns two digests of distinct content that share the
// two-hex-digit directory of blobPath, and so the parent of both blob
// directories.
func samePrefix(t *testing.T) ([]byte, []byte) {
	t.Helper()
	first := []byte("prefix-0")
	want := digest.FromBytes(first).Encoded()[:2]
	for i := 1; i < 100000; i++ {
		b := []byte(fmt.Sprintf("prefix-%d", i))
		if digest.FromBytes(b).Encoded()[:2] == want {
			return first, b
		}
	}
	t.Fatal("no two digests with the same prefix found")
	return nil, nil
}

// TestWalkAndDeleteEveryBackend: Walk lists exactly the complete blobs
// (with size and a recent modification time), skips uploads in progress
// and paths that are no blob's, and sees no blob twice; Delete removes
// one blob (not the cached copy nor a sibling in the same directory),
// leaves the rest, and is idempotent; after the last delete the walk is
// empty again and no error.
func TestWalkAndDeleteEveryBackend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		// An empty store: no blobs, no error (on S3 there is no /blobs).
		if got := walkAll(t, s); len(got) != 0 {
			t.Fatalf("walk of an empty store: %v", got)
		}

		start := time.Now().Add(-time.Minute) // server clock slack
		a, b := samePrefix(t)
		blobs := map[digest.Digest][]byte{
			digest.FromBytes(a): a,
			digest.FromBytes(b): b,
		}
		for i := range 5 {
			body := randomBytes(t, 100+i*1000)
			blobs[digest.FromBytes(body)] = body
		}
		for d, body := range blobs {
			if err := s.PutBytes(ctx, d, body); err != nil {
				t.Fatal(err)
			}
		}
		// An upload in progress, and objects under /blobs that are not a
		// blob's: Walk must report none of them.
		w, err := drv.Writer(ctx, path.Join(uploadsDir, randomName()), false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("half an upload")); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.Close()
		some := digest.FromBytes(a)
		junk := []string{
			"/blobs/sha256/zz/not-a-digest/data",
			path.Join(path.Dir(blobPath(digest.FromString("not stored"))), "link"),
			path.Join(path.Dir(blobPath(digest.FromString("elsewhere"))), "data.tmp"),
			"/blobs/sha256/" + some.Encoded()[2:4] + "/" + some.Encoded() + "/data", // wrong prefix directory
		}
		for _, p := range junk {
			if err := drv.PutContent(ctx, p, []byte("junk")); err != nil {
				t.Fatal(err)
			}
		}

		got := walkAll(t, s)
		if len(got) != len(blobs) {
			t.Errorf("Walk found %d blobs, want %d: %v", len(got), len(blobs), slices.Sorted(maps.Keys(got)))
		}
		for d, body := range blobs {
			bi, ok := got[d]
			switch {
			case !ok:
				t.Errorf("Walk missed %s", d)
			case bi.Size != int64(len(body)):
				t.Errorf("Walk: %s has size %d, want %d", d, bi.Size, len(body))
			case bi.ModTime.Before(start) || bi.ModTime.After(time.Now().Add(time.Minute)):
				t.Errorf("Walk: %s modified at %s, want about now", d, bi.ModTime)
			}
		}

		// fn's error stops the walk and comes back wrapped.
		stop := errors.New("stop here")
		n := 0
		if err := s.Walk(ctx, func(BlobInfo) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Errorf("Walk with a failing fn: %v after %d calls", err, n)
		}

		// Delete one of the two blobs that share a directory prefix; it
		// was read through the manifest cache first.
		da, db := digest.FromBytes(a), digest.FromBytes(b)
		if _, err := s.Get(ctx, da); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, da); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		assertAbsent(t, s, da)
		if raw, err := s.Get(ctx, db); err != nil || !bytes.Equal(raw, b) {
			t.Errorf("sibling %s after Delete of %s: %v", db, da, err)
		}
		if err := s.Delete(ctx, da); err != nil {
			t.Errorf("Delete of a deleted blob: %v", err)
		}
		if err := s.Delete(ctx, digest.Digest("sha256:nothex")); err == nil {
			t.Error("Delete of an invalid digest succeeded")
		}
		got = walkAll(t, s)
		if _, ok := got[da]; ok || len(got) != len(blobs)-1 {
			t.Errorf("Walk after Delete: %d blobs, deleted one listed: %v", len(got), ok)
		}
		// The junk and the upload are not the collector's: still there.
		for _, p := range junk {
			if _, err := drv.Stat(ctx, p); err != nil {
				t.Errorf("%s after Delete: %v", p, err)
			}
		}

		// Delete the rest: an empty walk, no error.
		for d := range blobs {
			if err := s.Delete(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range junk {
			if err := drv.Delete(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		if got := walkAll(t, s); len(got) != 0 {
			t.Errorf("Walk after deleting everything: %v", got)
		}
		for d, body := range blobs {
			assertAbsent(t, s, d)
			// A deleted blob can be stored again (a purged image fetched anew).
			if err := s.PutBytes(ctx, d, body); err != nil {
				t.Fatalf("store %s again: %v", d, err)
			}
			if raw, err := s.Get(ctx, d); err != nil || !bytes.Equal(raw, body) {
				t.Fatalf("read %s stored again: %v", d, err)
			}
		}
	})
}

// TestWalkManyS3: a listing over more than one page of S3's
// ListObjectsV2 (1000 keys) reports every blob once.
func TestWalkManyS3(t *testing.T) {
	if testing.Short() {
		t.Skip("1200 objects: skipped in -short")
	}
	s, _ := newS3Backend(t)
	ctx := context.Background()
	const n = 1200
	want := map[digest.Digest]bool{}
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i := range n {
		body := []byte(fmt.Sprintf("blob %d of the many-page walk", i))
		d := digest.FromBytes(body)
		want[d] = true
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- s.PutBytes(ctx, d, body)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	got := walkAll(t, s)
	if len(got) != n {
		t.Fatalf("Walk found %d blobs, want %d", len(got), n)
	}
	for d := range got {
		if !want[d] {
			t.Errorf("Walk found %s, never stored", d)
		}
	}
}

// TestDeleteDoesNotCutAnOpenReaderS3 is the S3 half of "a blob being
// served is never cut mid-stream by GC": a client reading a blob when it
// is deleted still gets every byte, and the delete completes. (MinIO
// makes the delete wait until the GET in progress ends; it also drops a
// GET whose client stopped reading for about 30 s, with or without a
// delete, so the reader here keeps reading.)
func TestDeleteDoesNotCutAnOpenReaderS3(t *testing.T) {
	s, _ := newS3Backend(t)
	ctx := context.Background()
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	copy(blob, randomBytes(t, 4096))
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
	// A slow client: the rest in 64 chunks, a pause after each.
	type result struct {
		b   []byte
		err error
	}
	read := make(chan result, 1)
	go func() {
		var got []byte
		buf := make([]byte, (len(blob)+63)/64)
		for {
			n, err := io.ReadFull(r, buf)
			got = append(got, buf[:n]...)
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				read <- result{got, nil}
				return
			}
			if err != nil {
				read <- result{got, err}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	if err := s.Delete(ctx, d); err != nil {
		t.Fatalf("Delete with a GET in progress: %v", err)
	}
	t.Logf("Delete with a GET in progress returned after %s", time.Since(start).Round(time.Millisecond))
	res := <-read
	if res.err != nil {
		t.Fatalf("read across the Delete: %v", res.err)
	}
	if got := append(head, res.b...); int64(len(got)) != size || !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes across the Delete, want all %d", len(got), size)
	}
	assertAbsent(t, s, d)
}
