package retention

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/airlockproxy/airlock/storage/state"
)

// The tests run on bbolt + filesystem by default and on PostgreSQL with
// AIRLOCK_TEST_STATE=postgres, like the state store's own.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a state store and a filesystem content store.
type env struct {
	t     *testing.T
	st    *state.Store
	cs    *content.Store
	clock func() time.Time
}

func newEnv(t *testing.T, now func() time.Time) *env {
	t.Helper()
	opts := []state.Option{state.WithLease(3 * time.Second)}
	if now != nil {
		opts = append(opts, state.WithClock(now))
	} else {
		now = time.Now
	}
	var st *state.Store
	var err error
	if os.Getenv("AIRLOCK_TEST_STATE") == "postgres" {
		dsn := pgtest.Shared(t).NewDatabase(t)
		db, derr := kv.OpenPostgres(context.Background(), dsn, kv.WithTimeout(2*time.Minute))
		if derr != nil {
			t.Fatal(derr)
		}
		st, err = state.New(db, opts...)
	} else {
		st, err = state.Open(filepath.Join(t.TempDir(), "airlock.db"), opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs, err := content.New(context.Background(), "filesystem", map[string]any{"rootdirectory": filepath.Join(t.TempDir(), "content")})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, cs: cs, clock: now}
}

// image is a synthetic single-platform image: a manifest, a config and layers.
type image struct {
	ref      state.Ref
	manifest []byte
	blobs    map[digest.Digest][]byte
}

// layer returns deterministic bytes for a named layer of size n.
func layer(name string, n int) []byte {
	b := make([]byte, n)
	seed := digest.FromString(name).Encoded()
	for i := range b {
		b[i] = seed[i%len(seed)]
	}
	return b
}

// newImage builds an image in repo whose layers are the named ones.
func newImage(repo, name string, layers map[string]int) image {
	img := image{blobs: map[digest.Digest][]byte{}}
	cfg := []byte(`{"config":"` + name + `"}`)
	cd := digest.FromBytes(cfg)
	img.blobs[cd] = cfg
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":%q,"size":%d},"layers":[`, cd, len(cfg))
	first := true
	for ln, size := range layers {
		b := layer(ln, size)
		d := digest.FromBytes(b)
		img.blobs[d] = b
		if !first {
			m += ","
		}
		first = false
		m += fmt.Sprintf(`{"digest":%q,"size":%d}`, d, len(b))
	}
	m += `],"annotations":{"name":"` + name + `"}}`
	img.manifest = []byte(m)
	img.ref = state.Ref{Upstream: "docker.io", Repository: repo, Digest: digest.FromBytes(img.manifest)}
	return img
}

// fetch does what the pipeline's fetch step does for img (content first,
// reusing what is stored; then links; then the sweep protocol's check)
// and approves it. A pull of a new or purged image goes through here.
func (e *env) fetch(ctx context.Context, img image) error {
	if _, _, err := e.st.Request(img.ref, "pull"); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := e.fetchOnce(ctx, img)
		if err == nil {
			break
		}
		if !errors.Is(err, errGone) || attempt > 20 {
			return err
		}
	}
	job, err := e.st.Job(img.ref)
	if errors.Is(err, state.ErrNotFound) {
		return nil // another fetcher of the same image finished it
	}
	if err != nil {
		return err
	}
	var size int64
	var blobs []digest.Digest
	for d, b := range img.blobs {
		blobs = append(blobs, d)
		size += int64(len(b))
	}
	_, err = e.st.FinishJob(job, &state.Change{To: state.StateApproved, Actor: "pipeline", Action: "approve", Mutate: func(i *state.Image) error {
		i.MediaType, i.Size = "application/vnd.oci.image.manifest.v1+json", int64(len(img.manifest))
		i.Blobs, i.ContentSize = blobs, size+int64(len(img.manifest))
		return nil
	}})
	return err
}

var errGone = errors.New("content swept meanwhile")

func (e *env) fetchOnce(ctx context.Context, img image) error {
	var links []state.Link
	for d, b := range img.blobs {
		if n, err := e.cs.Stat(ctx, d); err != nil || n != int64(len(b)) {
			if err := e.cs.PutBytes(ctx, d, b); err != nil {
				return err
			}
		}
		links = append(links, state.Link{Digest: d, Role: state.RoleLayer, Parent: img.ref.Digest, Image: img.ref.Digest, Size: int64(len(b))})
	}
	if err := e.cs.PutBytes(ctx, img.ref.Digest, img.manifest); err != nil {
		return err
	}
	if err := e.st.AddLinks(img.ref, links); err != nil {
		return err
	}
	// The writer's half of the sweep protocol (gate.confirmStored).
	if err := e.st.WaitSweep(ctx); err != nil {
		return err
	}
	if err := e.cs.PutBytes(ctx, img.ref.Digest, img.manifest); err != nil {
		return err
	}
	for d, b := range img.blobs {
		if n, err := e.cs.Stat(ctx, d); err != nil || n != int64(len(b)) {
			return errGone
		}
	}
	return nil
}

// pull records a pull of ref at the store's now.
func (e *env) pull(ref state.Ref) error {
	_, err := e.st.Transition(ref, state.Change{Actor: "pull", Action: "pulled", Mutate: func(i *state.Image) error {
		i.LastPulled = e.clock().UTC()
		i.PullCount++
		return nil
	}})
	return err
}

// checkKept fails the test when a digest of an image that is not purged
// is missing from the content store or differs from its bytes.
func (e *env) checkKept(ctx context.Context, imgs map[state.Ref]image) {
	e.t.Helper()
	for ref, img := range imgs {
		rec, err := e.st.Image(ref)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if rec.State == state.StatePurged || rec.State.InPipeline() {
			continue
		}
		all := map[digest.Digest][]byte{ref.Digest: img.manifest}
		for d, b := range img.blobs {
			all[d] = b
		}
		for d, b := range all {
			got, err := readAll(ctx, e.cs, d)
			if err != nil {
				e.t.Fatalf("%s (%s) lost %s: %v", ref, rec.State, d, err)
			}
			if string(got) != string(b) {
				e.t.Fatalf("%s: %s differs", ref, d)
			}
		}
	}
}

// readAll reads d through Open, as the registry API serves it.
func readAll(ctx context.Context, cs *content.Store, d digest.Digest) ([]byte, error) {
	r, size, err := cs.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, size)
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			break
		}
	}
	if n != len(b) || digest.FromBytes(b) != d {
		return nil, fmt.Errorf("partial or corrupt read of %s: %d of %d bytes", d, n, size)
	}
	return b, nil
}

// storeBytes returns the content store's blobs and total size.
func storeBytes(t *testing.T, cs *content.Store) (map[digest.Digest]int64, int64) {
	t.Helper()
	out := map[digest.Digest]int64{}
	var total int64
	err := cs.Walk(context.Background(), func(b content.BlobInfo) error {
		out[b.Digest] = b.Size
		total += b.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, total
}

var _ = sync.Mutex{}
