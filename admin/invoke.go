package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// invokedKey is the request context key of an Invoke call's identity.
type invokedKey struct{}

// Response is the answer of an in-process admin API call (Invoke).
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header is the answer's header.
	Header http.Header
	// Body is the answer's body.
	Body []byte
}

// Err returns nil on a 2xx answer, else an error with the API's message.
func (r Response) Err() error {
	if r.Status >= 200 && r.Status < 300 {
		return nil
	}
	return &APIError{Status: r.Status, Message: errorMessage(r.Body)}
}

// APIError is a non-2xx answer of the admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Invoke serves an admin API request in process, as id, which the caller
// has authenticated (the web console's session). Everything else is as
// for a request with id's bearer token: the same router, the same role
// table (routeRoles), the same handlers and audit actor. This is how the
// console reads and decides, so that no rule of the API has a second
// copy. body may be nil; contentType applies when it is not.
func (s *Server) Invoke(ctx context.Context, id Identity, method, target string, body io.Reader, contentType string) Response {
	s.invokeOnce.Do(func() { s.invokeHandler = s.Handler() })
	r, err := http.NewRequestWithContext(context.WithValue(ctx, invokedKey{}, id), method, target, body)
	if err != nil {
		return Response{Status: http.StatusBadRequest, Body: []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))}
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.RemoteAddr = "console"
	rec := &recorder{header: http.Header{}}
	s.invokeHandler.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return Response{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
}

// recorder is the http.ResponseWriter of Invoke.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// invokeState is the handler Invoke serves with, built once.
type invokeState struct {
	invokeOnce    sync.Once
	invokeHandler http.Handler
}

// errorMessage reads the "error" of an admin API error body.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(bytes.TrimSpace(body))
}
