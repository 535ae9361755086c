// Package content is Airlock's content-addressed store for manifests and
// blobs, kept on a distribution v3 storage driver (filesystem by default).
// Content is digest-verified while it is written and becomes visible only
// when complete: a mismatch or an interrupted write never reaches the
// final path.
package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"

	// The drivers Airlock can be configured with; s3 is registered in s3.go.
	// Others (gcs, azure) register the same way; they are left out to keep
	// the binary small.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// ErrNotFound is returned for content the store does not hold.
var ErrNotFound = errors.New("content not found")

// ErrDigestMismatch is returned when written bytes do not hash to the expected digest.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrSizeMismatch is returned when written bytes are not the expected size.
var ErrSizeMismatch = errors.New("size mismatch")

const uploadsDir = "/uploads"

// Store is a content-addressed store over a distribution storage driver.
type Store struct {
	driver  storagedriver.StorageDriver
	presign *presigner // nil unless the driver is s3
	cache   *byteCache // Get's, for manifests
}

// New returns a store on the named distribution driver with its parameters.
// Errors never include the parameters: they may hold secrets.
func New(ctx context.Context, driver string, params map[string]any) (*Store, error) {
	if driver == S3DriverName {
		d, p, err := newS3Driver(ctx, params)
		if err != nil {
			return nil, err
		}
		return &Store{driver: d, presign: p, cache: newByteCache()}, nil
	}
	d, err := factory.Create(ctx, driver, params)
	if err != nil {
		return nil, fmt.Errorf("storage driver %s: %w", driver, err)
	}
	return &Store{driver: d, cache: newByteCache()}, nil
}

// NewWithDriver returns a store on an existing driver.
func NewWithDriver(d storagedriver.StorageDriver) *Store {
	return &Store{driver: d, cache: newByteCache()}
}

// blobPath spreads content over directories the way distribution does.
func blobPath(d digest.Digest) string {
	hx := d.Encoded()
	return path.Join("/blobs", d.Algorithm().String(), hx[:2], hx, "data")
}

// Stat returns the size of d, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, err
	}
	fi, err := s.driver.Stat(ctx, blobPath(d))
	if err != nil {
		return 0, mapErr(d, err)
	}
	return fi.Size(), nil
}

// Get returns the whole content of d; meant for manifests.
func (s *Store) Get(ctx context.Context, d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if b, ok := s.cache.get(d); ok {
		return b, nil
	}
	b, err := s.driver.GetContent(ctx, blobPath(d))
	if err != nil {
		return nil, mapErr(d, err)
	}
	// Checked on every read from the driver: shared storage is written
	// by other processes too, and a manifest is small.
	if got := d.Algorithm().FromBytes(b); got != d {
		return nil, fmt.Errorf("%s: %w: stored content hashes to %s", d, ErrDigestMismatch, got)
	}
	s.cache.add(d, b)
	return b, nil
}

// Open returns a reader of d that can seek (for Range requests) and its size.
func (s *Store) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	size, err := s.Stat(ctx, d)
	if err != nil {
		return nil, 0, err
	}
	if s.driver.Name() != "filesystem" {
		// On object storage, opening a reader starts a GET of the whole
		// object from offset 0, which http.ServeContent would throw away
		// at once when it probes the size and seeks to a Range. The lazy
		// reader opens the driver stream at the offset of the first Read
		// instead, so a Range costs one ranged GET.
		return &reader{ctx: ctx, driver: s.driver, path: blobPath(d), size: size}, size, nil
	}
	rc, err := s.driver.Reader(ctx, blobPath(d), 0)
	if err != nil {
		return nil, 0, mapErr(d, err)
	}
	if rsc, ok := rc.(io.ReadSeekCloser); ok {
		// The filesystem driver hands out an *os.File: serving it directly
		// lets net/http use sendfile.
		return rsc, size, nil
	}
	return &reader{ctx: ctx, driver: s.driver, path: blobPath(d), size: size, rc: rc}, size, nil
}

// Put stores what r yields as d. size is the expected size, or -1 when not
// known. The bytes are hashed while they are written to a private upload
// path; only when digest and size match is the upload moved into place.
// Content already present is not written again.
func (s *Store) Put(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if n, err := s.Stat(ctx, d); err == nil && (size < 0 || n == size) {
		return nil
	}
	upload := path.Join(uploadsDir, randomName())
	w, err := s.driver.Writer(ctx, upload, false)
	if err != nil {
		return fmt.Errorf("put %s: open upload: %w", d, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = w.Cancel(context.WithoutCancel(ctx))
			_ = w.Close()
			_ = s.driver.Delete(context.WithoutCancel(ctx), upload)
		}
	}()
	verifier := d.Algorithm().Hash()
	src := r
	if size >= 0 {
		// Read one byte past the expected size so an oversized body is
		// detected instead of silently truncated.
		src = io.LimitReader(r, size+1)
	}
	n, err := io.Copy(io.MultiWriter(w, verifier), src)
	if err != nil {
		return fmt.Errorf("put %s: %w", d, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("put %s: got %d bytes, want %d: %w", d, n, size, ErrSizeMismatch)
	}
	if got := digest.NewDigest(d.Algorithm(), verifier); got != d {
		return fmt.Errorf("put %s: content hashes to %s: %w", d, got, ErrDigestMismatch)
	}
	if err := w.Commit(ctx); err != nil {
		return fmt.Errorf("put %s: commit: %w", d, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", d, err)
	}
	ok = true
	if err := s.driver.Move(ctx, upload, blobPath(d)); err != nil {
		_ = s.driver.Delete(context.WithoutCancel(ctx), upload)
		return fmt.Errorf("put %s: move into place: %w", d, err)
	}
	return nil
}

// PutBytes stores b as d after checking that b hashes to d.
func (s *Store) PutBytes(ctx context.Context, d digest.Digest, b []byte) error {
	return s.Put(ctx, d, int64(len(b)), bytes.NewReader(b))
}

// CleanUploads deletes uploads left behind by interrupted processes: all
// of them when olderThan is 0 (one process owns the store; call it at
// start, before any Put), else those last written more than olderThan
// ago (several replicas share the store, and another one may be
// uploading right now). It returns how many it deleted.
func (s *Store) CleanUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	var nf storagedriver.PathNotFoundError
	if olderThan <= 0 {
		entries, err := s.driver.List(ctx, uploadsDir)
		if errors.As(err, &nf) {
			return 0, nil
		}
		if err := s.driver.Delete(ctx, uploadsDir); err != nil && !errors.As(err, &nf) {
			return 0, fmt.Errorf("clean uploads: %w", err)
		}
		return len(entries), nil
	}
	entries, err := s.driver.List(ctx, uploadsDir)
	if err != nil {
		if errors.As(err, &nf) {
			return 0, nil
		}
		return 0, fmt.Errorf("clean uploads: %w", err)
	}
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for _, p := range entries {
		fi, err := s.driver.Stat(ctx, p)
		if err != nil || fi.IsDir() || !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := s.driver.Delete(ctx, p); err != nil && !errors.As(err, &nf) {
			return n, fmt.Errorf("clean uploads: %w", err)
		}
		n++
	}
	return n, nil
}

func mapErr(d digest.Digest, err error) error {
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", d, err)
}

func randomName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reader is a lazily opened, seekable reader over a driver path. Seeking
// costs nothing until the next Read, so http.ServeContent's size probe and
// Range handling open the driver stream once, at the right offset.
type reader struct {
	ctx    context.Context
	driver storagedriver.StorageDriver
	path   string
	size   int64
	off    int64
	rc     io.ReadCloser
}

func (r *reader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.rc == nil {
		rc, err := r.driver.Reader(r.ctx, r.path, r.off)
		if err != nil {
			return 0, err
		}
		r.rc = rc
	}
	n, err := r.rc.Read(p)
	r.off += int64(n)
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	if abs != r.off && r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
	r.off = abs
	return abs, nil
}

func (r *reader) Close() error {
	if r.rc != nil {
		return r.rc.Close()
	}
	return nil
}
