package proxy

import (
	"net/http"
	"regexp"

	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/proxy/route"
	"github.com/airlockproxy/airlock/storage/state"
)

// cosignTag matches cosign's classic signature and attestation tags.
var cosignTag = regexp.MustCompile(`^(sha256)-([a-f0-9]{64})\.(sig|att)$`)

// signatureTag serves "sha256-<hex>.sig" and ".att" from what Airlock signed.
// They are never resolved upstream, and they exist only while the image
// they sign is approved: revoking an image withdraws its signatures too.
func (s *Server) signatureTag(w http.ResponseWriter, r *http.Request, rt route.Route, tag string) bool {
	m := cosignTag.FindStringSubmatch(tag)
	if m == nil {
		return false
	}
	subject := state.Ref{Upstream: rt.Upstream, Repository: rt.Repository, Digest: digest.Digest(m[1] + ":" + m[2])}
	img, err := s.store.Image(subject)
	if err != nil || img.State != state.StateApproved || img.Signed == nil {
		writeError(w, r, http.StatusNotFound, CodeManifestUnknown, tag+": no signature of an approved image")
		return true
	}
	d := img.Signed.Sig.Digest
	if m[3] == "att" {
		d = img.Signed.Att.Digest
	}
	s.serveApproved(w, r, state.Ref{Upstream: rt.Upstream, Repository: rt.Repository, Digest: d})
	return true
}

// referrers serves the OCI 1.1 referrers API from the artifacts Airlock
// made for an approved image; a quarantined image has none.
func (s *Server) referrers(w http.ResponseWriter, r *http.Request) {
	rt, d, ok := s.routeDigest(w, r)
	if !ok {
		return
	}
	manifests := []state.Descriptor{}
	img, err := s.store.Image(state.Ref{Upstream: rt.Upstream, Repository: rt.Repository, Digest: d})
	if err == nil && img.State == state.StateApproved && img.Signed != nil {
		want := r.URL.Query().Get("artifactType")
		for _, desc := range img.Signed.Referrers {
			if want == "" || desc.ArtifactType == want {
				manifests = append(manifests, desc)
			}
		}
		if want != "" {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
	}
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	writeJSONAs(w, r, map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     manifests,
	})
}
