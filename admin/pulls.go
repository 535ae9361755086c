package admin

import (
	"fmt"
	"net/http"
	"time"

	"github.com/airlockproxy/airlock/storage/state"
)

// PullsReport is the answer of GET /api/v1/images/<image>/pulls: who
// pulled the image recently, newest first. Pull records are written in
// batches (pulls.flush_interval), so the last seconds may be missing; with
// several replicas, each adds its own.
type PullsReport struct {
	Image state.Ref   `json:"image"`
	State state.State `json:"state"`
	// LastPulled is the latest manifest GET or HEAD; zero when never pulled.
	LastPulled time.Time `json:"last_pulled,omitzero"`
	// PullCount counts manifest GETs.
	PullCount int64 `json:"pull_count"`
	// Pullers are the most recent clients (at most pulls.recent), newest first.
	Pullers []state.Puller `json:"pullers"`
}

func (s *Server) pulls(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.imageRef(w, r)
	if !ok {
		return
	}
	img, pullers, err := s.store.Pulls(ref)
	if err != nil {
		writeErr(w, statusOf(err), fmt.Errorf("%s: %w", ref, err))
		return
	}
	if pullers == nil {
		pullers = []state.Puller{}
	}
	writeJSON(w, http.StatusOK, PullsReport{Image: ref, State: img.State, LastPulled: img.LastPulled, PullCount: img.PullCount, Pullers: pullers})
}
