package content

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// BlobInfo describes one blob the store holds.
type BlobInfo struct {
	Digest  digest.Digest
	Size    int64
	ModTime time.Time
}

// Walk calls fn for every complete blob in the store (uploads in progress
// are not blobs yet). Paths that are not a blob's are skipped. An error
// of fn stops the walk and is returned as it is.
func (s *Store) Walk(ctx context.Context, fn func(BlobInfo) error) error {
	var fnErr error
	err := s.driver.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "data" {
			return nil
		}
		d, ok := blobDigest(fi.Path())
		if !ok {
			return nil
		}
		// The drivers wrap the error in one errors.Is cannot see through.
		fnErr = fn(BlobInfo{Digest: d, Size: fi.Size(), ModTime: fi.ModTime()})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) && strings.TrimSuffix(nf.Path, "/") == "/blobs" {
		return nil // nothing stored yet
	}
	// Any other missing path (a directory removed while the walk was in
	// it) fails the walk: a partial listing must not pass for the store.
	if err != nil {
		return fmt.Errorf("walk content store: %w", err)
	}
	return nil
}

// blobDigest is the inverse of blobPath:
// "/blobs/<algorithm>/<xx>/<encoded>/data" → "<algorithm>:<encoded>".
func blobDigest(p string) (digest.Digest, bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) != 5 || parts[0] != "blobs" || parts[4] != "data" {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[3])
	if d.Validate() != nil || blobPath(d) != p {
		return "", false
	}
	return d, true
}

// Delete removes blob d from the store (and from the manifest cache). It
// is the garbage collector's: whether d may go is decided by the state
// store (retention package). A reader that already opened d keeps
// reading it to the end: on the filesystem driver the open file outlives
// its name, and on S3 a GET in progress completes.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return err
	}
	s.cache.remove(d)
	err := s.driver.Delete(ctx, path.Dir(blobPath(d)))
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("delete %s: %w", d, err)
	}
	return nil
}

// remove drops d from the cache.
func (c *byteCache) remove(d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[d]
	if !ok {
		return
	}
	c.order.Remove(e)
	delete(c.items, d)
	c.size -= len(e.Value.(*cacheEntry).b)
}
