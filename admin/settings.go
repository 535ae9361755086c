package admin

import (
	"errors"
	"fmt"
	"net/http"

	"gopkg.in/yaml.v3"

	"github.com/airlockproxy/airlock/config"
)

// WithSettings enables GET /api/v1/settings: the running configuration
// cfg as YAML, with its secrets redacted (config.Config.Redacted).
// Settings are changed in the configuration file (config as code, the
// same on every replica), not through the API: this shows an admin what
// the process runs with, e.g. after a reload or on one replica of many.
func WithSettings(cfg config.Config) Option {
	return func(s *Server) {
		out, err := yaml.Marshal(cfg.Redacted())
		if err != nil {
			out = fmt.Appendf(nil, "# cannot encode the settings: %v\n", err)
		}
		s.settings = out
	}
}

// settingsYAML answers GET /api/v1/settings (admins only: the settings
// name files, hosts and identities an attacker would like to know).
func (s *Server) settingsYAML(w http.ResponseWriter, _ *http.Request) {
	if s.settings == nil {
		writeErr(w, http.StatusNotFound, errors.New("settings are not available on this instance"))
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	_, _ = w.Write(s.settings)
}
