package sso_test

import (
	"context"
	"errors"
	"log"
	"net/http"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sso"
)

// The console wires single sign-on like this: Start at /ui/login/oidc,
// Callback at the path of admin.oidc.redirect_url.
func Example() {
	cfg := config.OIDC{
		Issuer:          "https://login.example.com/realms/airlock",
		ClientID:        "airlock",
		ClientSecretEnv: "AIRLOCK_OIDC_CLIENT_SECRET",
		RedirectURL:     "https://airlock.example.com:5001/ui/login/oidc/callback",
		Roles:           map[string]string{"platform-team": "admin"},
	}
	p, err := sso.New(context.Background(), cfg)
	if err != nil {
		log.Printf("single sign-on is off: %v", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/login/oidc", p.Start)
	mux.HandleFunc("GET "+p.CallbackPath(), func(w http.ResponseWriter, r *http.Request) {
		login, err := p.Callback(w, r)
		switch {
		case errors.Is(err, sso.ErrNoRole):
			http.Error(w, err.Error(), http.StatusForbidden)
		case err != nil:
			http.Error(w, "sign-in failed: "+err.Error(), http.StatusUnauthorized)
		default:
			// Start a console session for login.Name with login.Role.
			_ = login
			http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		}
	})
}
