package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// SessionTTL bounds a console session signed in with a token (which also
// ends with the token, revoked or expired), and one signed in through
// single sign-on unless WithSSO sets another lifetime.
const SessionTTL = 8 * time.Hour

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// SSO is the single sign-on the console offers (package sso implements
// it); nil without admin.oidc.
type SSO interface {
	// Start redirects the browser to the identity provider.
	Start(w http.ResponseWriter, r *http.Request)
	// Finish completes the sign-in at the callback: the person's name
	// (the audit actor) and role, or why they may not sign in.
	Finish(w http.ResponseWriter, r *http.Request) (name string, role admin.Role, err error)
	// CallbackPath is the path of the callback (from redirect_url).
	CallbackPath() string
}

// Console is the web console.
type Console struct {
	api   *admin.Server
	store *state.Store
	sso   SSO
	// ssoTTL is the lifetime of a session signed in through sso.
	ssoTTL time.Duration
	log    *slog.Logger
	pages  map[string]*pageTemplate
	// streams are the open live-update streams (live.go).
	streams liveState
}

// Option configures the console.
type Option func(*Console)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Console) { c.log = l } }

// WithSSO offers single sign-on through s. A session signed in through it
// lasts sessionTTL (SessionTTL when 0): its role is what the provider said
// at sign-in, so this bounds how long a change at the provider takes to
// reach the console.
func WithSSO(s SSO, sessionTTL time.Duration) Option {
	return func(c *Console) { c.sso, c.ssoTTL = s, sessionTTL }
}

// New returns the console over the admin API api and the state store
// holding its sessions.
func New(api *admin.Server, store *state.Store, opts ...Option) (*Console, error) {
	c := &Console{api: api, store: store, log: slog.Default()}
	for _, o := range opts {
		o(c)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	return c, nil
}

// Handler returns the console's handler; mount it at /ui/.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/", http.FileServerFS(staticFS)))
	mux.HandleFunc("GET /ui/login", c.loginPage)
	mux.HandleFunc("POST /ui/login", c.login)
	mux.HandleFunc("POST /ui/logout", c.logout)
	if c.sso != nil {
		mux.HandleFunc("GET /ui/login/oidc", c.sso.Start)
		mux.HandleFunc("GET "+c.sso.CallbackPath(), c.ssoCallback)
	}
	mux.Handle("GET /ui/{$}", c.authed(c.queue))
	mux.Handle("GET /ui/live", c.authed(c.live))
	// An image's page is /ui/images/<IMAGE>; its actions are
	// /ui/images/<IMAGE>/approve|revoke|rescan (GET: the confirmation
	// form, POST: the decision). Image names contain slashes, so one
	// pattern takes both and the suffix decides.
	mux.Handle("GET /ui/images/{image...}", c.authed(func(w http.ResponseWriter, r *http.Request) {
		if image, action, ok := splitAction(r.PathValue("image")); ok {
			c.confirmAction(w, r, image, action)
			return
		}
		c.imagePage(w, r, r.PathValue("image"))
	}))
	mux.Handle("POST /ui/images/{image...}", c.authed(func(w http.ResponseWriter, r *http.Request) {
		image, action, ok := splitAction(r.PathValue("image"))
		if !ok {
			c.fail(w, r, http.StatusNotFound, "no such action")
			return
		}
		c.act(w, r, image, action)
	}))
	c.routes(mux)
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, "no such page")
	})
	return secure(mux)
}

// actions are the decisions the console offers on an image; each is the
// admin API's POST /api/v1/<action>.
var actions = []string{"approve", "revoke", "rescan"}

// splitAction splits "<IMAGE>/<action>" into the image and the action.
func splitAction(p string) (image, action string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 || !slices.Contains(actions, p[i+1:]) {
		return "", "", false
	}
	return p[:i], p[i+1:], true
}

// call invokes the admin API as the request's identity: a JSON body
// (nil for none) and, on a 2xx answer, the JSON answer decoded into out
// (nil to ignore it). A refusal is an *admin.APIError.
func (c *Console) call(r *http.Request, method, path string, body, out any) error {
	var rd io.Reader
	ctype := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd, ctype = bytes.NewReader(b), "application/json"
	}
	resp := c.api.Invoke(r.Context(), sessionOf(r).identity(), method, path, rd, ctype)
	if err := resp.Err(); err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// ctxKey keys the console's request context values.
type ctxKey int

const sessionKey ctxKey = 0

// sessionOf returns the request's session (set by authed).
func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey).(*session)
	if s == nil {
		return &session{}
	}
	return s
}

func withSession(ctx context.Context, s *session) context.Context {
	return context.WithValue(ctx, sessionKey, s)
}
