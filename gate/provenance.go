package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/common"
	slsa1 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v1"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/storage/state"
)

// The SLSA provenance of an import: Airlock's acquisition of an image is
// its "build", so consumers can tell where an internal image came from and
// what was checked before it was let in.
const (
	// ProvenanceBuildType names what Airlock does: import from an upstream
	// registry through the quarantine pipeline.
	ProvenanceBuildType = "https://airlock.dev/provenance/import/v1"
	// ProvenanceBuilderID identifies Airlock as the builder.
	ProvenanceBuilderID = "https://airlock.dev/airlock"
)

// ImportParameters are the external parameters of an import: what was
// asked for, from where, and what it resolved to.
type ImportParameters struct {
	Upstream    string   `json:"upstream"`
	UpstreamURL string   `json:"upstreamURL,omitempty"`
	Repository  string   `json:"repository"`
	Tags        []string `json:"tags,omitempty"`
	Digest      string   `json:"digest"`
}

// ImportInternals are the internal parameters: how Airlock was set up to
// judge the image.
type ImportInternals struct {
	PolicyVersion string              `json:"policyVersion,omitempty"`
	Verification  *state.Verification `json:"upstreamSignature,omitempty"`
	Steps         []state.StepResult  `json:"steps,omitempty"`
}

// provenance builds the SLSA v1 provenance predicate of img: every
// manifest and blob fetched is a resolved dependency, with its digest.
func (g *SignStep) provenance(ctx context.Context, img state.Image, now time.Time) ([]byte, error) {
	params := ImportParameters{Upstream: img.Upstream, Repository: img.Repository, Tags: img.Tags, Digest: string(img.Digest)}
	if reg, ok := g.upstreams.Get(img.Upstream); ok {
		params.UpstreamURL = reg.Config().URL
	}
	deps, err := g.dependencies(ctx, img)
	if err != nil {
		return nil, err
	}
	internals := ImportInternals{Verification: img.Verification, Steps: img.Steps}
	if img.Policy != nil {
		internals.PolicyVersion = img.Policy.Version
	}
	var started *time.Time
	for _, s := range img.Steps {
		if !s.Started.IsZero() && (started == nil || s.Started.Before(*started)) {
			t := s.Started
			started = &t
		}
	}
	p := slsa1.ProvenancePredicate{
		BuildDefinition: slsa1.ProvenanceBuildDefinition{
			BuildType:            ProvenanceBuildType,
			ExternalParameters:   params,
			InternalParameters:   internals,
			ResolvedDependencies: deps,
		},
		RunDetails: slsa1.ProvenanceRunDetails{
			Builder:       slsa1.Builder{ID: ProvenanceBuilderID, Version: map[string]string{"airlock": airlockVersion()}},
			BuildMetadata: slsa1.BuildMetadata{InvocationID: img.Ref.String(), StartedOn: started, FinishedOn: &now},
		},
	}
	return json.Marshal(p)
}

// dependencies lists the image's manifests and blobs as fetched: the
// image (or index), each fetched platform manifest, and their configs and
// layers, each with its digest and media type.
func (g *SignStep) dependencies(ctx context.Context, img state.Image) ([]slsa1.ResourceDescriptor, error) {
	uri := func(d digest.Digest) string { return "oci://" + img.Upstream + "/" + img.Repository + "@" + string(d) }
	rd := func(d digest.Digest, name, mt string) slsa1.ResourceDescriptor {
		return slsa1.ResourceDescriptor{URI: uri(d), Name: name, MediaType: mt, Digest: common.DigestSet{d.Algorithm().String(): d.Encoded()}}
	}
	out := []slsa1.ResourceDescriptor{rd(img.Digest, "manifest", img.MediaType)}
	ms, err := manifests(ctx, g.content, img)
	if err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	seen := map[digest.Digest]bool{img.Digest: true}
	for _, m := range ms {
		if !seen[m.Manifest] {
			seen[m.Manifest] = true
			out = append(out, rd(m.Manifest, "platform-manifest", m.mediaType))
		}
		if m.Config != nil {
			if d := digest.Digest(m.Config.Digest.String()); !seen[d] {
				seen[d] = true
				out = append(out, rd(d, "config", string(m.Config.MediaType)))
			}
		}
		for _, l := range m.Layers {
			if d := digest.Digest(l.Digest.String()); !seen[d] {
				seen[d] = true
				out = append(out, rd(d, "layer", string(l.MediaType)))
			}
		}
	}
	return out, nil
}

// airlockVersion is the version of the running binary (its module
// version, or the VCS revision of a development build).
func airlockVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return "devel+" + strings.TrimSpace(s.Value)
		}
	}
	return "devel"
}
