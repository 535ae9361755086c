package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/airlockproxy/airlock/events"
	"github.com/airlockproxy/airlock/storage/state"
)

// EventsStatus is the answer of GET /api/v1/events: the configured
// webhook endpoints, and the outbox with each endpoint's progress, its
// last failure and next attempt, and the newest events.
type EventsStatus struct {
	Webhooks []events.Endpoint `json:"webhooks"`
	state.OutboxStatus
}

// WithEvents adds the configured webhook endpoints to GET /api/v1/events
// (the outbox is read from the state store either way).
func WithEvents(d *events.Deliverer) Option { return func(s *Server) { s.events = d } }

// eventsStatus serves GET /api/v1/events?recent=N (default 20, at most 1000).
func (s *Server) eventsStatus(w http.ResponseWriter, r *http.Request) {
	recent := 20
	if v := r.URL.Query().Get("recent"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			writeErr(w, http.StatusBadRequest, errors.New("recent: want a number 0..1000"))
			return
		}
		recent = n
	}
	out := EventsStatus{Webhooks: []events.Endpoint{}}
	if s.events != nil {
		out.Webhooks = s.events.Endpoints()
	}
	st, err := s.store.Outbox(recent)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, fmt.Errorf("outbox: %w", err))
		return
	}
	if st.Endpoints == nil {
		st.Endpoints = []state.EndpointStatus{}
	}
	if st.Recent == nil {
		st.Recent = []state.Event{}
	}
	out.OutboxStatus = st
	writeJSON(w, http.StatusOK, out)
}
