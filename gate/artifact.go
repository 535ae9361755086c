package gate

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/storage/content"
	"github.com/airlockproxy/airlock/storage/state"
)

// imageConfigTypes are the config media types of container images. A
// manifest with another config media type, or with an artifactType, is an
// OCI artifact (a Helm chart, a WASM module, ...): container scanners have
// nothing to read in it, and policy.artifact_types decides it.
var imageConfigTypes = map[string]bool{
	string(types.OCIConfigJSON):    true,
	string(types.DockerConfigJSON): true,
}

// artifactType returns the type of an image that is an OCI artifact (its
// artifactType, else its config media type), or "" for a container image.
// An index counts as a container image: its children are what runs.
func artifactType(ctx context.Context, cs *content.Store, img state.Image) (string, error) {
	if isIndex(img.MediaType) {
		return "", nil
	}
	raw, err := cs.Get(ctx, img.Digest)
	if err != nil {
		return "", fmt.Errorf("read manifest %s: %w", img.Ref, err)
	}
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", Permanent(fmt.Errorf("manifest %s: %w", img.Ref, err))
	}
	if m.ArtifactType != "" && !imageConfigTypes[m.ArtifactType] {
		return m.ArtifactType, nil
	}
	if !imageConfigTypes[m.Config.MediaType] {
		return m.Config.MediaType, nil
	}
	return "", nil
}
