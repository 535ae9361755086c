package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/storage/state"
	"github.com/airlockproxy/airlock/watch"
)

// Watches is what the admin API needs of the watch scheduler.
type Watches interface {
	List() ([]watch.Listed, error)
	Add(w config.Watch, actor string) (watch.Definition, error)
	Remove(image, actor string) error
}

// WithWatches enables /api/v1/watches.
func WithWatches(w Watches) Option { return func(s *Server) { s.watches = w } }

// WatchRequest is the body of POST /api/v1/watches.
type WatchRequest struct {
	// Image is "<upstream>/<repository>".
	Image string `json:"image"`
	// Tags are tag patterns: glob, "regex:…" or "semver:…".
	Tags []string `json:"tags"`
	// Interval is a Go duration ("1h"); empty means the default (1h).
	Interval string `json:"interval,omitempty"`
	// MaxNewPerRun bounds the watch's pipelines running at once; 0 means the default (5).
	MaxNewPerRun int `json:"max_new_per_run,omitempty"`
	// Actor is accepted for compatibility and ignored: the audit actor is
	// the authenticated identity.
	//
	// Deprecated: authenticate with a token of your own instead.
	Actor string `json:"actor,omitempty"`
}

// WatchList is the answer of GET /api/v1/watches.
type WatchList struct {
	Watches []watch.Listed `json:"watches"`
}

func (s *Server) noWatches(w http.ResponseWriter) bool {
	if s.watches == nil {
		writeErr(w, http.StatusNotFound, errors.New("watched repositories are not enabled in this process"))
		return true
	}
	return false
}

func (s *Server) listWatches(w http.ResponseWriter, _ *http.Request) {
	if s.noWatches(w) {
		return
	}
	list, err := s.watches.List()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []watch.Listed{}
	}
	writeJSON(w, http.StatusOK, WatchList{Watches: list})
}

func (s *Server) addWatch(w http.ResponseWriter, r *http.Request) {
	if s.noWatches(w) {
		return
	}
	var req WatchRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	if err := checkText("actor", req.Actor); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if err := checkText("image", req.Image); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	for i, t := range req.Tags {
		if err := checkText(fmt.Sprintf("tags[%d]", i), t); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
	}
	cw := config.Watch{Image: req.Image, Tags: req.Tags, MaxNewPerRun: req.MaxNewPerRun}
	if req.Interval != "" {
		d, err := time.ParseDuration(req.Interval)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("interval: %w", err))
			return
		}
		if d <= 0 {
			writeErr(w, http.StatusBadRequest, errors.New("interval: must be positive"))
			return
		}
		cw.Interval = d
	}
	def, err := s.watches.Add(cw, IdentityOf(r).Name)
	if err != nil {
		writeErr(w, watchStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, def)
}

func (s *Server) removeWatch(w http.ResponseWriter, r *http.Request) {
	if s.noWatches(w) {
		return
	}
	// ?actor= is accepted for compatibility and ignored, like the
	// body's actor: the audit actor is the authenticated identity.
	image := mux.Vars(r)["image"]
	if err := s.watches.Remove(image, IdentityOf(r).Name); err != nil {
		writeErr(w, watchStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": image})
}

func watchStatusOf(err error) int {
	switch {
	case errors.Is(err, state.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, state.ErrConflict), errors.Is(err, watch.ErrConfigured):
		return http.StatusConflict
	case errors.Is(err, state.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
