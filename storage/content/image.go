package content

import (
	"bytes"
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// Image returns manifest d, held in the store, as a go-containerregistry
// image whose config and layers stream from the store: scanners read the
// image Airlock holds, never the upstream's.
func (s *Store) Image(ctx context.Context, d digest.Digest, mediaType string) (v1.Image, error) {
	raw, err := s.Get(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", d, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", d, err)
	}
	mt := types.MediaType(mediaType)
	if mt == "" {
		mt = m.MediaType
	}
	img, err := partial.CompressedToImage(&storedImage{ctx: ctx, s: s, raw: raw, manifest: m, mt: mt})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", d, err)
	}
	return img, nil
}

type storedImage struct {
	ctx      context.Context
	s        *Store
	raw      []byte
	manifest *v1.Manifest
	mt       types.MediaType
}

func (i *storedImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storedImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *storedImage) RawConfigFile() ([]byte, error) {
	return i.s.Get(i.ctx, digest.Digest(i.manifest.Config.Digest.String()))
}
func (i *storedImage) Manifest() (*v1.Manifest, error)     { return i.manifest, nil }
func (i *storedImage) ConfigName() (v1.Hash, error)        { return i.manifest.Config.Digest, nil }
func (i *storedImage) Descriptor() (*v1.Descriptor, error) { return partial.Descriptor(i) }
func (i *storedImage) Digest() (v1.Hash, error)            { return partial.Digest(i) }
func (i *storedImage) Size() (int64, error)                { return int64(len(i.raw)), nil }
func (i *storedImage) ConfigLayer() (v1.Layer, error)      { return partial.ConfigLayer(i) }

func (i *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range i.manifest.Layers {
		if l.Digest == h {
			return &storedLayer{ctx: i.ctx, s: i.s, desc: l}, nil
		}
	}
	if i.manifest.Config.Digest == h {
		return &storedLayer{ctx: i.ctx, s: i.s, desc: i.manifest.Config}, nil
	}
	return nil, fmt.Errorf("layer %s is not in the manifest", h)
}

type storedLayer struct {
	ctx  context.Context
	s    *Store
	desc v1.Descriptor
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	rc, _, err := l.s.Open(l.ctx, digest.Digest(l.desc.Digest.String()))
	return rc, err
}
