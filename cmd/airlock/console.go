package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sso"
)

// ssoRetry spaces the attempts to reach an identity provider that could
// not be reached: sign-in attempts (anonymous clients) must not turn into
// a stream of discovery requests.
const ssoRetry = 30 * time.Second

// ssoDiscoveryTimeout bounds one discovery of the identity provider.
const ssoDiscoveryTimeout = 10 * time.Second

// consoleSSO is single sign-on for the console (console.SSO) through
// package sso. The provider is discovered at start; if it cannot be
// reached then, Airlock still starts (the registry must not depend on the
// identity provider, and API tokens still sign in to the console) and
// discovery is tried again at the next single sign-on, at most every
// ssoRetry.
type consoleSSO struct {
	cfg  config.OIDC
	path string
	log  *slog.Logger

	mu      sync.Mutex
	p       *sso.Provider
	tried   time.Time
	lastErr error
}

// newConsoleSSO checks what cannot get better by retrying (the client
// secret's variable; config validated the callback path) and discovers
// the provider.
func newConsoleSSO(ctx context.Context, cfg config.OIDC, log *slog.Logger) (*consoleSSO, error) {
	u, err := url.Parse(cfg.RedirectURL)
	if err != nil {
		return nil, fmt.Errorf("admin.oidc.redirect_url: %w", err)
	}
	if cfg.ClientSecretEnv != "" && os.Getenv(cfg.ClientSecretEnv) == "" {
		return nil, fmt.Errorf("admin.oidc.client_secret_env: environment variable %s is empty or unset", cfg.ClientSecretEnv)
	}
	s := &consoleSSO{cfg: cfg, path: u.Path, log: log}
	if _, err := s.provider(ctx); err != nil {
		log.Error("single sign-on: the identity provider cannot be reached; API tokens still sign in, and single sign-on is tried again when used",
			"issuer", cfg.Issuer, "error", err)
	}
	return s, nil
}

// provider returns the discovered provider, discovering it if that was
// not done yet and the last attempt is older than ssoRetry.
func (s *consoleSSO) provider(ctx context.Context) (*sso.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return s.p, nil
	}
	if !s.tried.IsZero() && time.Since(s.tried) < ssoRetry {
		return nil, s.lastErr
	}
	s.tried = time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ssoDiscoveryTimeout)
	defer cancel()
	p, err := sso.New(ctx, s.cfg)
	if err != nil {
		s.lastErr = err
		return nil, err
	}
	s.log.Info("single sign-on ready", "issuer", s.cfg.Issuer, "callback", s.path)
	s.p = p
	return p, nil
}

// Start redirects the browser to the identity provider.
func (s *consoleSSO) Start(w http.ResponseWriter, r *http.Request) {
	p, err := s.provider(r.Context())
	if err != nil {
		s.log.Warn("single sign-on unavailable", "issuer", s.cfg.Issuer, "error", err)
		http.Error(w, "single sign-on is unavailable: the identity provider cannot be reached; sign in with an API token or try again later", http.StatusServiceUnavailable)
		return
	}
	p.Start(w, r)
}

// Finish completes the sign-in at the callback: the person's name (the
// audit actor, "oidc:…") and role.
func (s *consoleSSO) Finish(w http.ResponseWriter, r *http.Request) (string, admin.Role, error) {
	p, err := s.provider(r.Context())
	if err != nil {
		return "", "", errors.New("the identity provider cannot be reached")
	}
	login, err := p.Callback(w, r)
	if err != nil {
		return login.Name, "", err
	}
	return login.Name, admin.Role(login.Role), nil
}

// CallbackPath is the path of admin.oidc.redirect_url.
func (s *consoleSSO) CallbackPath() string { return s.path }
