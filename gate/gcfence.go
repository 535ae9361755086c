package gate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/sign"
	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// errSwept is the transient error of a fetch whose blob the content
// garbage collector deleted between the fetch finding it stored and
// recording its links: the retry fetches it again.
var errSwept = errors.New("deleted by the content garbage collector meanwhile")

// confirmStored is the writer's half of the garbage collector's sweep
// protocol (state.SweepLease), called after the links that reference the
// content committed: it waits for a running sweep to end, then stores
// again the manifests (whose bytes are at hand) and checks that every
// blob is still there. A missing blob fails the step transiently, so the
// retry downloads it. Content written fresh is protected by the grace
// period; this covers content that was found already stored.
func confirmStored(ctx context.Context, st *state.Store, cs *content.Store, manifests map[digest.Digest][]byte, blobs map[digest.Digest]int64) error {
	if err := st.WaitSweep(ctx); err != nil {
		return err
	}
	for d, raw := range manifests {
		if err := cs.PutBytes(ctx, d, raw); err != nil {
			return fmt.Errorf("store %s again: %w", d, err)
		}
	}
	for d, size := range blobs {
		n, err := cs.Stat(ctx, d)
		if errors.Is(err, content.ErrNotFound) || (err == nil && n != size) {
			return fmt.Errorf("blob %s: %w", d, errSwept)
		}
		if err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
	}
	return nil
}

// confirm is confirmStored for the manifests and blobs a fetch recorded
// (foreign layers are never stored).
func (f *FetchStep) confirm(ctx context.Context, manifests map[digest.Digest][]byte, blobs map[digest.Digest]blobDesc) error {
	sizes := make(map[digest.Digest]int64, len(blobs))
	for d, b := range blobs {
		if strings.Contains(b.MediaType, "foreign") || strings.Contains(b.MediaType, "nondistributable") {
			continue
		}
		sizes[d] = b.Size
	}
	return confirmStored(ctx, f.store, f.content, manifests, sizes)
}

// artifactBytes maps every manifest and blob of Airlock's artifacts to its bytes.
func artifactBytes(all []sign.Artifact) map[digest.Digest][]byte {
	out := map[digest.Digest][]byte{}
	for _, a := range all {
		out[a.Digest] = a.Manifest
		for d, b := range a.Blobs {
			out[d] = b
		}
	}
	return out
}
