package content

import (
	"container/list"
	"sync"

	"github.com/opencontainers/go-digest"
)

// Get's cache bounds: manifests are read on every pull and never change
// (content-addressed), and on S3 each read is a network round trip.
const (
	cacheBytes    = 32 << 20 // all entries together
	cacheMaxEntry = 1 << 20  // larger contents are read each time
)

// byteCache is a size-bounded LRU of whole contents by digest. It holds
// only bytes that hashed to their digest when read, so it can never hand
// out other bytes than the store would; whether they may be served is
// decided elsewhere, on every request.
type byteCache struct {
	mu    sync.Mutex
	size  int
	order *list.List // front: most recently used
	items map[digest.Digest]*list.Element
}

type cacheEntry struct {
	d digest.Digest
	b []byte
}

func newByteCache() *byteCache {
	return &byteCache{order: list.New(), items: map[digest.Digest]*list.Element{}}
}

func (c *byteCache) get(d digest.Digest) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[d]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).b, true
}

func (c *byteCache) add(d digest.Digest, b []byte) {
	if len(b) > cacheMaxEntry {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[d]; ok {
		return
	}
	c.items[d] = c.order.PushFront(&cacheEntry{d: d, b: b})
	c.size += len(b)
	for c.size > cacheBytes {
		last := c.order.Back()
		ent := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.items, ent.d)
		c.size -= len(ent.b)
	}
}
