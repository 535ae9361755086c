package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// backend is one storage driver the store is tested on.
type backend struct {
	name string
	new  func(t *testing.T) (*Store, storagedriver.StorageDriver)
}

var backends = []backend{
	{"inmemory", func(t *testing.T) (*Store, storagedriver.StorageDriver) {
		d := inmemory.New()
		return NewWithDriver(d), d
	}},
	{"filesystem", func(t *testing.T) (*Store, storagedriver.StorageDriver) {
		d, err := filesystem.FromParameters(map[string]any{"rootdirectory": t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return NewWithDriver(d), d
	}},
}

// forEachBackend runs fn on a fresh store of every backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *Store, d storagedriver.StorageDriver)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, d := b.new(t)
			fn(t, s, d)
		})
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// assertAbsent checks that d cannot be read in any way.
func assertAbsent(t *testing.T, s *Store, d digest.Digest) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Stat(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(%s) = %v, want ErrNotFound", d, err)
	}
	if _, err := s.Get(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(%s) = %v, want ErrNotFound", d, err)
	}
	if rc, _, err := s.Open(ctx, d); !errors.Is(err, ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Open(%s) = %v, want ErrNotFound", d, err)
	}
}

// assertNoUploads checks that no upload is left behind.
func assertNoUploads(t *testing.T, d storagedriver.StorageDriver) {
	t.Helper()
	entries, err := d.List(context.Background(), uploadsDir)
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("List(%s): %v", uploadsDir, err)
	}
	if len(entries) > 0 {
		t.Errorf("leftover uploads: %v", entries)
	}
}

func TestNewFromFactory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(ctx, "filesystem", map[string]any{"rootdirectory": dir})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("hello airlock")
	d := digest.FromBytes(b)
	if err := s.PutBytes(ctx, d, b); err != nil {
		t.Fatal(err)
	}
	// Content lands under the root directory, spread by digest prefix.
	p := filepath.Join(dir, "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, b) {
		t.Errorf("file %s = %q, %v", p, got, err)
	}
	if _, err := New(ctx, "inmemory", nil); err != nil {
		t.Errorf("inmemory: %v", err)
	}
	if _, err := New(ctx, "no-such-driver", nil); err == nil {
		t.Error("an unknown driver was accepted")
	}
}

func TestPutAndRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		for _, n := range []int{0, 1, 4096, 1<<20 + 7} {
			b := randomBytes(t, n)
			d := digest.FromBytes(b)
			for _, size := range []int64{int64(n), -1} {
				if err := s.Put(ctx, d, size, bytes.NewReader(b)); err != nil {
					t.Fatalf("Put(%d bytes, size %d): %v", n, size, err)
				}
			}
			if got, err := s.Stat(ctx, d); err != nil || got != int64(n) {
				t.Errorf("Stat = %d, %v; want %d", got, err, n)
			}
			if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, b) {
				t.Errorf("Get(%d bytes) = %d bytes, %v", n, len(got), err)
			}
			rc, size, err := s.Open(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || size != int64(n) || !bytes.Equal(got, b) {
				t.Errorf("Open+ReadAll(%d bytes) = %d bytes (size %d), %v", n, len(got), size, err)
			}
		}
		assertNoUploads(t, drv)
	})
}

func TestPutBytesChecksDigest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		d := digest.FromString("manifest")
		if err := s.PutBytes(ctx, d, []byte("tampered")); !errors.Is(err, ErrSizeMismatch) && !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("PutBytes(wrong bytes) = %v", err)
		}
		assertAbsent(t, s, d)
		if err := s.PutBytes(ctx, d, []byte("manifest")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPutRejectsWrongContent(t *testing.T) {
	good := []byte("the real layer")
	bad := []byte("the fake layer") // same length, other bytes
	d := digest.FromBytes(good)
	tests := []struct {
		name    string
		size    int64
		body    func() io.Reader
		wantErr error
	}{
		{"wrong bytes, size known", int64(len(good)), func() io.Reader { return bytes.NewReader(bad) }, ErrDigestMismatch},
		{"wrong bytes, size unknown", -1, func() io.Reader { return bytes.NewReader(bad) }, ErrDigestMismatch},
		{"prefix of the right bytes, size unknown", -1, func() io.Reader { return bytes.NewReader(good[:5]) }, ErrDigestMismatch},
		{"right bytes plus more, size unknown", -1, func() io.Reader { return io.MultiReader(bytes.NewReader(good), bytes.NewReader([]byte("x"))) }, ErrDigestMismatch},
		{"more bytes than the size", int64(len(good)), func() io.Reader { return io.MultiReader(bytes.NewReader(good), bytes.NewReader([]byte("extra"))) }, ErrSizeMismatch},
		{"fewer bytes than the size", int64(len(good)), func() io.Reader { return bytes.NewReader(good[:len(good)-1]) }, ErrSizeMismatch},
		{"right bytes, size too small", int64(len(good)) - 1, func() io.Reader { return bytes.NewReader(good) }, ErrSizeMismatch},
		{"right bytes, size too large", int64(len(good)) + 1, func() io.Reader { return bytes.NewReader(good) }, ErrSizeMismatch},
		{"empty body", int64(len(good)), func() io.Reader { return bytes.NewReader(nil) }, ErrSizeMismatch},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					s, drv := b.new(t)
					err := s.Put(context.Background(), d, tt.size, tt.body())
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Put = %v, want %v", err, tt.wantErr)
					}
					assertAbsent(t, s, d)
					assertNoUploads(t, drv)
				})
			}
		})
	}
}

func TestPutReaderErrorStoresNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		b := randomBytes(t, 256<<10)
		d := digest.FromBytes(b)
		boom := errors.New("connection reset by upstream")
		for _, size := range []int64{int64(len(b)), -1} {
			body := io.MultiReader(bytes.NewReader(b[:100<<10]), iotest.ErrReader(boom))
			if err := s.Put(ctx, d, size, body); !errors.Is(err, boom) {
				t.Fatalf("Put with a failing reader = %v, want %v", err, boom)
			}
			assertAbsent(t, s, d)
			assertNoUploads(t, drv)
		}
		// A later complete Put succeeds.
		if err := s.Put(ctx, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPutCanceledContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx, cancel := context.WithCancel(context.Background())
		b := randomBytes(t, 64<<10)
		d := digest.FromBytes(b)
		// The reader cancels the context midway, like a client going away.
		body := io.MultiReader(bytes.NewReader(b[:1000]), readerFunc(func([]byte) (int, error) {
			cancel()
			return 0, ctx.Err()
		}))
		if err := s.Put(ctx, d, int64(len(b)), body); err == nil {
			t.Fatal("Put succeeded")
		}
		assertAbsent(t, s, d)
		assertNoUploads(t, drv)
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestPutExistingContentIsNotRewritten(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ storagedriver.StorageDriver) {
		ctx := context.Background()
		b := []byte("already here")
		d := digest.FromBytes(b)
		if err := s.PutBytes(ctx, d, b); err != nil {
			t.Fatal(err)
		}
		// The body is not even read when the content is present.
		failing := iotest.ErrReader(errors.New("must not be read"))
		if err := s.Put(ctx, d, int64(len(b)), failing); err != nil {
			t.Errorf("Put(present, right size) = %v", err)
		}
		if err := s.Put(ctx, d, -1, failing); err != nil {
			t.Errorf("Put(present, unknown size) = %v", err)
		}
		if got, _ := s.Get(ctx, d); !bytes.Equal(got, b) {
			t.Errorf("content changed: %q", got)
		}
	})
}

func TestInvalidDigest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ storagedriver.StorageDriver) {
		ctx := context.Background()
		for _, d := range []digest.Digest{"", "sha256:xyz", "sha256:../../etc/passwd", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
			if err := s.Put(ctx, d, 0, bytes.NewReader(nil)); err == nil {
				t.Errorf("Put(%q) succeeded", d)
			}
			if _, err := s.Stat(ctx, d); err == nil {
				t.Errorf("Stat(%q) succeeded", d)
			}
			if _, err := s.Get(ctx, d); err == nil {
				t.Errorf("Get(%q) succeeded", d)
			}
			if _, _, err := s.Open(ctx, d); err == nil {
				t.Errorf("Open(%q) succeeded", d)
			}
		}
	})
}

func TestOpenSeekRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ storagedriver.StorageDriver) {
		ctx := context.Background()
		b := randomBytes(t, 300<<10+3)
		d := digest.FromBytes(b)
		if err := s.PutBytes(ctx, d, b); err != nil {
			t.Fatal(err)
		}
		rc, size, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		n := int64(len(b))
		if size != n {
			t.Fatalf("size = %d, want %d", size, n)
		}
		readN := func(k int) []byte {
			t.Helper()
			buf := make([]byte, k)
			got, err := io.ReadFull(rc, buf)
			if err != nil {
				t.Fatalf("ReadFull(%d): read %d, %v", k, got, err)
			}
			return buf
		}
		seek := func(off int64, whence int, want int64) {
			t.Helper()
			pos, err := rc.Seek(off, whence)
			if err != nil || pos != want {
				t.Fatalf("Seek(%d, %d) = %d, %v; want %d", off, whence, pos, err, want)
			}
		}

		// What http.ServeContent does: probe the size, rewind, read a range.
		seek(0, io.SeekEnd, n)
		seek(0, io.SeekStart, 0)
		ranges := []struct{ off, len int64 }{
			{0, 10}, {1000, 1}, {n - 1, 1}, {n / 2, 100 << 10}, {5, n - 5}, {0, n}, {70000, 12345}, {3, 3},
		}
		for _, r := range ranges {
			seek(r.off, io.SeekStart, r.off)
			if got := readN(int(r.len)); !bytes.Equal(got, b[r.off:r.off+r.len]) {
				t.Errorf("range %d+%d: wrong bytes", r.off, r.len)
			}
		}
		// Relative seeks, backwards after a read, and from the end.
		seek(100, io.SeekStart, 100)
		readN(50)
		seek(-30, io.SeekCurrent, 120)
		if got := readN(10); !bytes.Equal(got, b[120:130]) {
			t.Error("SeekCurrent backwards: wrong bytes")
		}
		seek(20, io.SeekCurrent, 150)
		if got := readN(10); !bytes.Equal(got, b[150:160]) {
			t.Error("SeekCurrent forwards: wrong bytes")
		}
		seek(-16, io.SeekEnd, n-16)
		if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, b[n-16:]) {
			t.Errorf("tail = %d bytes, %v", len(got), err)
		}
		// Reads at or past the end are EOF.
		seek(0, io.SeekEnd, n)
		if k, err := rc.Read(make([]byte, 8)); k != 0 || err != io.EOF {
			t.Errorf("Read at the end = %d, %v", k, err)
		}
		seek(10, io.SeekEnd, n+10)
		if k, err := rc.Read(make([]byte, 8)); k != 0 || err != io.EOF {
			t.Errorf("Read past the end = %d, %v", k, err)
		}
		// Invalid seeks fail and leave the position alone.
		if _, err := rc.Seek(-1, io.SeekStart); err == nil {
			t.Error("Seek to a negative position succeeded")
		}
		if _, err := rc.Seek(0, 42); err == nil {
			t.Error("Seek with a bad whence succeeded")
		}
		seek(0, io.SeekCurrent, n+10)
		// A section reader over the store reader: what a Range request sees.
		seek(0, io.SeekStart, 0)
		sec := io.NewSectionReader(readerAt{rc}, 4096, 8192)
		if got, err := io.ReadAll(sec); err != nil || !bytes.Equal(got, b[4096:4096+8192]) {
			t.Errorf("section read = %d bytes, %v", len(got), err)
		}
	})
}

// readerAt adapts a ReadSeeker for io.NewSectionReader (single goroutine only).
type readerAt struct{ rs io.ReadSeeker }

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if _, err := r.rs.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(r.rs, p)
}

func TestOpenCloseWithoutRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ storagedriver.StorageDriver) {
		ctx := context.Background()
		b := []byte("x")
		d := digest.FromBytes(b)
		if err := s.PutBytes(ctx, d, b); err != nil {
			t.Fatal(err)
		}
		rc, _, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close of an unread reader = %v", err)
		}
	})
}

func TestCleanUploads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		// Nothing to clean is fine.
		if _, err := s.CleanUploads(ctx, 0); err != nil {
			t.Fatalf("CleanUploads on an empty store = %v", err)
		}
		if n, err := s.CleanUploads(ctx, time.Hour); err != nil || n != 0 {
			t.Fatalf("CleanUploads(1h) on an empty store = %d, %v", n, err)
		}
		b := []byte("kept")
		d := digest.FromBytes(b)
		if err := s.PutBytes(ctx, d, b); err != nil {
			t.Fatal(err)
		}
		// Leftovers of a process killed mid-upload.
		for _, p := range []string{uploadsDir + "/0123abcd", uploadsDir + "/fedc4321"} {
			if err := drv.PutContent(ctx, p, []byte("half a layer")); err != nil {
				t.Fatal(err)
			}
		}
		w, err := drv.Writer(ctx, uploadsDir+"/open-writer", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// Shared by replicas: uploads younger than the bound are
		// another replica's, in flight, and stay. (On S3 a writer that
		// was not committed is an unlisted multipart upload: the
		// bucket's lifecycle rule aborts those.)
		before, err := drv.List(ctx, uploadsDir)
		if err != nil || len(before) < 2 {
			t.Fatalf("uploads before = %v, %v", before, err)
		}
		if n, err := s.CleanUploads(ctx, time.Hour); err != nil || n != 0 {
			t.Fatalf("CleanUploads(1h) = %d, %v; want 0 deleted", n, err)
		}
		if entries, err := drv.List(ctx, uploadsDir); err != nil || len(entries) != len(before) {
			t.Fatalf("uploads after CleanUploads(1h) = %v, %v; want all of %v kept", entries, err, before)
		}
		time.Sleep(1100 * time.Millisecond) // S3 and file times have second resolution
		if n, err := s.CleanUploads(ctx, time.Second); err != nil || n != len(before) {
			t.Fatalf("CleanUploads(1s) = %d, %v; want %d deleted", n, err, len(before))
		}
		assertNoUploads(t, drv)
		for _, p := range []string{uploadsDir + "/0123abcd", uploadsDir + "/fedc4321"} {
			if err := drv.PutContent(ctx, p, []byte("half a layer")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.CleanUploads(ctx, 0); err != nil {
			t.Fatalf("CleanUploads = %v", err)
		}
		assertNoUploads(t, drv)
		if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, b) {
			t.Errorf("stored content lost by CleanUploads: %q, %v", got, err)
		}
		// Put works after a clean.
		b2 := []byte("after clean")
		if err := s.PutBytes(ctx, digest.FromBytes(b2), b2); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConcurrentPutsOfOneDigest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		b := randomBytes(t, 512<<10)
		d := digest.FromBytes(b)
		const writers = 16
		var wg sync.WaitGroup
		errs := make(chan error, 2*writers)
		for i := 0; i < writers; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				errs <- s.Put(ctx, d, int64(len(b)), iotest.HalfReader(bytes.NewReader(b)))
			}()
			// Readers racing the writers see either nothing or everything.
			go func() {
				defer wg.Done()
				got, err := s.Get(ctx, d)
				switch {
				case errors.Is(err, ErrNotFound):
					errs <- nil
				case err != nil:
					errs <- err
				case !bytes.Equal(got, b):
					errs <- errors.New("a reader saw partial or wrong content")
				default:
					errs <- nil
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Get after concurrent Puts = %d bytes, %v", len(got), err)
		}
		assertNoUploads(t, drv)
	})
}

func TestConcurrentPutsOfManyDigests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ storagedriver.StorageDriver) {
		ctx := context.Background()
		blobs := make([][]byte, 20)
		for i := range blobs {
			blobs[i] = randomBytes(t, 10<<10+i)
		}
		var wg sync.WaitGroup
		for _, b := range blobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.PutBytes(ctx, digest.FromBytes(b), b); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for _, b := range blobs {
			if got, err := s.Get(ctx, digest.FromBytes(b)); err != nil || !bytes.Equal(got, b) {
				t.Errorf("Get = %d bytes, %v", len(got), err)
			}
		}
	})
}

// TestGetVerifiesStoredBytes: Get hands out only bytes that hash to the
// digest asked for, from the driver or from its cache: content changed
// behind the store's back (shared storage) is an error, not a manifest.
func TestGetVerifiesStoredBytes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, drv storagedriver.StorageDriver) {
		ctx := context.Background()
		b := []byte(`{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
		d := digest.FromBytes(b)
		if err := s.PutBytes(ctx, d, b); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Get = %q, %v", got, err)
		}
		if err := drv.PutContent(ctx, blobPath(d), []byte(`{"evil":true}`)); err != nil {
			t.Fatal(err)
		}
		// The cache holds the verified bytes.
		if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("cached Get = %q, %v", got, err)
		}
		// Another process (a fresh cache) reads the changed bytes: refused.
		if got, err := NewWithDriver(drv).Get(ctx, d); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("Get of tampered content = %q, %v; want ErrDigestMismatch", got, err)
		}
	})
}
