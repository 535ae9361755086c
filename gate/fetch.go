package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/upstream"
)

// blobConcurrency bounds parallel blob downloads of one image.
const blobConcurrency = 4

// FetchStep copies an image (every platform manifest of an index, or the
// configured ones, and every blob) from its upstream into the content
// store. Blobs already held are not fetched again, and concurrent fetches
// of the same blob share one upstream request.
type FetchStep struct {
	upstreams   *upstream.Set
	content     *content.Store
	store       *state.Store
	platforms   []v1.Platform
	maxManifest int64
	flights     singleflight.Group
}

// NewFetchStep returns the fetch step. platforms ("linux/amd64") limits the
// platform manifests taken from an index; empty takes all.
func NewFetchStep(ups *upstream.Set, cs *content.Store, st *state.Store, platforms []string, maxManifest int64) (*FetchStep, error) {
	f := &FetchStep{upstreams: ups, content: cs, store: st, maxManifest: maxManifest}
	for _, p := range platforms {
		pl, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", p, err)
		}
		f.platforms = append(f.platforms, *pl)
	}
	return f, nil
}

// Name implements Step.
func (f *FetchStep) Name() string { return "fetch" }

// State implements Step.
func (f *FetchStep) State() state.State { return state.StateFetching }

// manifestLike is the part of a Docker or OCI manifest or index the fetch needs.
type manifestLike struct {
	MediaType string          `json:"mediaType"`
	Config    *v1.Descriptor  `json:"config"`
	Layers    []v1.Descriptor `json:"layers"`
	Manifests []v1.Descriptor `json:"manifests"`
	Subject   *v1.Descriptor  `json:"subject"`
}

// Run implements Step.
func (f *FetchStep) Run(ctx context.Context, s *Subject) (Verdict, error) {
	if s.Rescan {
		return Verdict{Outcome: Skip, Detail: "content already held"}, nil
	}
	ref := s.Image.Ref
	reg, ok := f.upstreams.Get(ref.Upstream)
	if !ok {
		return Verdict{}, Permanent(fmt.Errorf("upstream %q is no longer configured", ref.Upstream))
	}
	raw, mt, err := f.manifest(ctx, reg, ref.Repository, ref.Digest)
	if err != nil {
		return Verdict{}, err
	}
	top, err := parseManifest(raw, mt)
	if err != nil {
		return Verdict{}, Permanent(fmt.Errorf("manifest %s: %w", ref, err))
	}

	blobs := map[digest.Digest]blobDesc{}
	raws := map[digest.Digest][]byte{ref.Digest: raw} // for confirmStored
	var (
		children []digest.Digest
		links    []state.Link
		total    = int64(len(raw))
	)
	if isIndex(mt) {
		for _, child := range top.Manifests {
			if !f.wanted(child) {
				continue
			}
			if isIndex(string(child.MediaType)) {
				// Nested indexes are rare and not pulled by runtimes; leave them out.
				continue
			}
			d := digest.Digest(child.Digest.String())
			if slices.Contains(children, d) {
				continue
			}
			craw, cmt, err := f.manifest(ctx, reg, ref.Repository, d)
			if err != nil {
				return Verdict{}, err
			}
			if isIndex(cmt) {
				// Listed as an image but is an index: its own children
				// would go unprocessed, so it is left out like any nested
				// index and never served through this one.
				continue
			}
			m, err := parseManifest(craw, cmt)
			if err != nil {
				return Verdict{}, Permanent(fmt.Errorf("manifest %s@%s: %w", ref.Repo(), d, err))
			}
			children = append(children, d)
			raws[d] = craw
			total += int64(len(craw))
			links = append(links, state.Link{Digest: d, Role: state.RoleChild, Parent: ref.Digest, Image: ref.Digest, MediaType: cmt, Size: int64(len(craw))})
			links = addBlobs(blobs, links, d, ref.Digest, m)
		}
		if len(children) == 0 {
			return Verdict{}, Permanent(fmt.Errorf("index %s has no platform manifest matching %v", ref, f.platforms))
		}
	} else {
		links = addBlobs(blobs, links, ref.Digest, ref.Digest, top)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(blobConcurrency)
	for d, c := range blobs {
		total += c.Size
		if strings.Contains(c.MediaType, "foreign") || strings.Contains(c.MediaType, "nondistributable") {
			continue
		}
		g.Go(func() error { return f.blob(gctx, reg, ref.Repository, d, c.Size) })
	}
	if err := g.Wait(); err != nil {
		return Verdict{}, err
	}
	if err := f.store.AddLinks(ref, links); err != nil {
		return Verdict{}, fmt.Errorf("record content of %s: %w", ref, err)
	}
	if err := f.confirm(ctx, raws, blobs); err != nil {
		return Verdict{}, fmt.Errorf("content of %s: %w", ref, err)
	}
	blobList := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		blobList = append(blobList, d)
	}
	detail := fmt.Sprintf("fetched %d blobs, %d bytes", len(blobs), total)
	if len(children) > 0 {
		detail = fmt.Sprintf("fetched %d platform manifests, %d blobs, %d bytes", len(children), len(blobs), total)
	}
	return Verdict{Outcome: Pass, Detail: detail, Update: func(img *state.Image) {
		img.MediaType, img.Size = mt, int64(len(raw))
		img.Manifests, img.Blobs, img.ContentSize = children, blobList, total
	}}, nil
}

// manifest returns manifest d from the content store, or fetches and stores it.
func (f *FetchStep) manifest(ctx context.Context, reg *upstream.Registry, repo string, d digest.Digest) ([]byte, string, error) {
	raw, err := f.content.Get(ctx, d)
	if err == nil {
		mt, perr := mediaTypeOf(raw)
		if perr == nil {
			return raw, mt, nil
		}
	}
	var mt string
	stored := func() bool {
		r, err := f.content.Get(ctx, d)
		if err != nil {
			return false
		}
		t, err := mediaTypeOf(r)
		if err != nil {
			return false
		}
		raw, mt = r, t
		return true
	}
	err = f.once(ctx, d, stored, func() error {
		var ferr error
		raw, mt, ferr = f.fetchManifest(ctx, reg, repo, d)
		return ferr
	})
	if err != nil {
		return nil, "", err
	}
	return raw, mt, nil
}

// fetchManifest fetches manifest d from the upstream and stores it.
func (f *FetchStep) fetchManifest(ctx context.Context, reg *upstream.Registry, repo string, d digest.Digest) ([]byte, string, error) {
	raw, mt, err := reg.Manifest(ctx, repo, d, f.maxManifest)
	if err != nil {
		if errors.Is(err, upstream.ErrNotFound) || errors.Is(err, upstream.ErrTooLarge) {
			return nil, "", Permanent(err)
		}
		return nil, "", err
	}
	if !manifestMediaTypes[mt] {
		// Some registries send a generic Content-Type; the manifest's own
		// mediaType field is authoritative then.
		if mt, err = mediaTypeOf(raw); err != nil {
			return nil, "", Permanent(fmt.Errorf("manifest %s@%s: %w", repo, d, err))
		}
	}
	if err := f.content.PutBytes(ctx, d, raw); err != nil {
		return nil, "", fmt.Errorf("store manifest %s@%s: %w", repo, d, err)
	}
	return raw, mt, nil
}

// blob makes sure blob d is in the content store. Concurrent callers for
// the same digest share one upstream fetch.
func (f *FetchStep) blob(ctx context.Context, reg *upstream.Registry, repo string, d digest.Digest, size int64) error {
	if n, err := f.content.Stat(ctx, d); err == nil && n == size {
		return nil
	}
	_, err, _ := f.flights.Do(string(d), func() (any, error) {
		// Checked again inside the flight: a flight that just finished
		// may have stored it.
		if n, err := f.content.Stat(ctx, d); err == nil && n == size {
			return nil, nil
		}
		return nil, f.once(ctx, d, func() bool {
			n, err := f.content.Stat(ctx, d)
			return err == nil && n == size
		}, func() error {
			rc, err := reg.Blob(ctx, repo, d)
			if err != nil {
				if errors.Is(err, upstream.ErrNotFound) {
					return Permanent(err)
				}
				return err
			}
			defer rc.Close()
			if err := f.content.Put(ctx, d, size, rc); err != nil {
				return fmt.Errorf("fetch blob %s/%s@%s: %w", reg.Name(), repo, d, err)
			}
			return nil
		})
	})
	return err
}

// once runs fetch to store digest d unless have reports it stored. When
// the state store is shared by several replicas, one upstream fetch per
// digest happens across all of them: the replica that takes the lease
// "fetch:<digest>" fetches (renewing the lease while it does), the others
// wait for the content to appear in the shared storage, and take over
// when the holder's lease ends without it (the holder was killed).
func (f *FetchStep) once(ctx context.Context, d digest.Digest, have func() bool, fetch func() error) error {
	if !f.store.Shared() {
		return fetch()
	}
	name := "fetch:" + string(d)
	for {
		changed := f.store.Changed()
		held, until, err := f.store.TryLease(name)
		if err != nil {
			return fmt.Errorf("fetch lease for %s: %w", d, err)
		}
		if held {
			return f.holding(ctx, name, func() error {
				if have() { // stored by the previous holder
					return nil
				}
				return fetch()
			})
		}
		wait := min(max(time.Until(until), 10*time.Millisecond), time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed: // the holder released the lease, or anything else changed
		case <-time.After(wait):
		}
		if have() {
			return nil
		}
	}
}

// holding runs fn while renewing lease name, and releases it after.
func (f *FetchStep) holding(ctx context.Context, name string, fn func() error) error {
	stop := f.store.KeepLease(name)
	err := fn()
	stop()
	// A lease left behind (the database is away) delays nobody: waiters
	// check for the content first, and it expires.
	_ = f.store.ReleaseLease(name)
	return err
}

// wanted reports whether a platform manifest of an index is to be fetched.
func (f *FetchStep) wanted(desc v1.Descriptor) bool {
	if len(f.platforms) == 0 {
		return true
	}
	if desc.Platform == nil {
		return false
	}
	for _, p := range f.platforms {
		if desc.Platform.Satisfies(p) {
			return true
		}
	}
	return false
}

// blobDesc is what the fetch needs to know of a blob.
type blobDesc struct {
	MediaType string
	Size      int64
}

// addBlobs adds the config and layers of manifest m (digest parent, part of
// image) to blobs and appends their links.
func addBlobs(blobs map[digest.Digest]blobDesc, links []state.Link, parent, image digest.Digest, m manifestLike) []state.Link {
	add := func(role state.Role, d v1.Descriptor) {
		dg := digest.Digest(d.Digest.String())
		blobs[dg] = blobDesc{MediaType: string(d.MediaType), Size: d.Size}
		links = append(links, state.Link{Digest: dg, Role: role, Parent: parent, Image: image, MediaType: string(d.MediaType), Size: d.Size})
	}
	if m.Config != nil && m.Config.Digest.Hex != "" {
		add(state.RoleConfig, *m.Config)
	}
	for _, l := range m.Layers {
		add(state.RoleLayer, l)
	}
	return links
}

func isIndex(mt string) bool {
	return mt == string(types.OCIImageIndex) || mt == string(types.DockerManifestList)
}

// manifestMediaTypes are the manifest kinds Airlock stores and serves.
var manifestMediaTypes = map[string]bool{
	string(types.OCIImageIndex):         true,
	string(types.DockerManifestList):    true,
	string(types.OCIManifestSchema1):    true,
	string(types.DockerManifestSchema2): true,
}

func parseManifest(raw []byte, mt string) (manifestLike, error) {
	var m manifestLike
	if !manifestMediaTypes[mt] {
		return m, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("invalid manifest JSON: %w", err)
	}
	if m.MediaType != "" && m.MediaType != mt {
		return m, fmt.Errorf("manifest says media type %q but was served as %q", m.MediaType, mt)
	}
	if isIndex(mt) {
		for _, c := range m.Manifests {
			if _, err := digest.Parse(c.Digest.String()); err != nil {
				return m, fmt.Errorf("index entry: %w", err)
			}
		}
		return m, nil
	}
	if m.Config == nil {
		return m, errors.New("manifest has no config")
	}
	for _, d := range append([]v1.Descriptor{*m.Config}, m.Layers...) {
		if _, err := digest.Parse(d.Digest.String()); err != nil {
			return m, fmt.Errorf("descriptor: %w", err)
		}
		if d.Size < 0 {
			return m, fmt.Errorf("descriptor %s: negative size", d.Digest)
		}
	}
	return m, nil
}

// mediaTypeOf reads the mediaType field of a stored manifest.
func mediaTypeOf(raw []byte) (string, error) {
	var m struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", err
	}
	if m.MediaType == "" {
		return "", errors.New("manifest has no mediaType field")
	}
	return m.MediaType, nil
}
