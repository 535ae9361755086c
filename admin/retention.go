package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/airlockproxy/airlock/retention"
	"github.com/airlockproxy/airlock/storage/state"
)

// WithGC enables POST /api/v1/gc: retention and the content garbage
// collector, run by c.
func WithGC(c *retention.Collector) Option { return func(s *Server) { s.gc = c } }

// retentionRoutes adds POST /api/v1/gc[?dry_run=true] and POST
// /api/v1/pin, /api/v1/unpin (body: ActionRequest).
func (s *Server) retentionRoutes(api *mux.Router) {
	api.HandleFunc("/gc", s.runGC).Methods(http.MethodPost)
	api.HandleFunc("/pin", s.pin(true)).Methods(http.MethodPost)
	api.HandleFunc("/unpin", s.pin(false)).Methods(http.MethodPost)
}

// runGC runs retention and the garbage collector and answers with its
// retention.Result; ?dry_run=true only says what it would do. The images
// it purges are audited with the caller as actor.
func (s *Server) runGC(w http.ResponseWriter, r *http.Request) {
	if s.gc == nil {
		writeErr(w, http.StatusNotFound, errors.New("garbage collection is not enabled on this instance"))
		return
	}
	dry := false
	if v := r.URL.Query().Get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("dry_run %q: want true or false", v))
			return
		}
		dry = b
	}
	res, err := s.gc.RunBy(r.Context(), dry, IdentityOf(r).Name)
	switch {
	case errors.Is(err, retention.ErrBusy):
		writeErr(w, http.StatusConflict, err)
		return
	case err != nil:
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// pin pins (exempts from retention) or unpins the image the request
// names, audited with the admin as actor.
func (s *Server) pin(pinned bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, target, actor, ok := s.actionRequest(w, r)
		if !ok {
			return
		}
		if req.AllowFallback {
			writeErr(w, http.StatusBadRequest, errors.New("allow_fallback applies to revoke by tag only"))
			return
		}
		img, err := s.store.SetPinned(target.Ref, pinned, actor, req.Reason)
		if errors.Is(err, state.ErrNotFound) {
			err = fmt.Errorf("%s has no record of its own (a platform manifest follows its index: pin the index): %w", target.Ref, err)
		}
		if err != nil {
			writeErr(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, ActionResult{Image: img})
	}
}
