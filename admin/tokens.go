package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/airlockproxy/airlock/storage/state"
)

// BootstrapIdentity is the identity of the configured admin.token: role
// admin, and the audit actor of its actions. No API token may take the name.
const BootstrapIdentity = "admin"

// TokenPrefix starts every API token secret, so a leaked one is
// recognisable (secret scanners) and never mistaken for the bootstrap token.
const TokenPrefix = "alk_"

// DefaultTokenTTL is how long a token lives when its request names no expiry.
const DefaultTokenTTL = 90 * 24 * time.Hour

// tokenName is what a token name may be: it becomes the audit actor.
var tokenName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	// Name identifies the person or robot: [a-z0-9][a-z0-9._-]{0,63}.
	Name string `json:"name"`
	// Role is "puller" (registry pulls only), "viewer", "approver" or "admin".
	Role Role `json:"role"`
	// Expires is a lifetime: a Go duration ("720h") or days ("90d"); ""
	// means DefaultTokenTTL, "never" a token that does not expire.
	Expires string `json:"expires,omitempty"`
}

// TokenCreated is the answer of POST /api/v1/tokens: the record and the
// secret, which is shown this once and never stored.
type TokenCreated struct {
	state.Token
	Secret string `json:"token"`
}

// TokenList is the answer of GET /api/v1/tokens.
type TokenList struct {
	Tokens []state.Token `json:"tokens"`
}

// ParseTTL reads a token lifetime: a Go duration ("720h"), whole days
// ("90d"), or "never" (zero). It must be positive.
func ParseTTL(s string) (time.Duration, error) {
	switch s {
	case "":
		return DefaultTokenTTL, nil
	case "never":
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100*365 {
			return 0, fmt.Errorf("expires %q: want a number of days, a Go duration or \"never\"", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("expires %q: want a number of days, a Go duration or \"never\"", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("expires %q: must be positive", s)
	}
	return d, nil
}

// checkTokenName refuses names that are not tokenName or that belong to
// Airlock itself (the bootstrap admin, the system audit actors).
func checkTokenName(name string) error {
	if !tokenName.MatchString(name) {
		return fmt.Errorf("name %q: want [a-z0-9][a-z0-9._-]{0,63}", name)
	}
	if name == BootstrapIdentity || name == "anonymous" || slices.Contains(state.SystemActors, name) {
		return fmt.Errorf("name %q is reserved", name)
	}
	return nil
}

// newSecret returns a new token secret: TokenPrefix and 32 random bytes,
// base64url.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token secret: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	if err := checkTokenName(req.Name); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if !req.Role.Valid() {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("role %q: want puller, viewer, approver or admin", req.Role))
		return
	}
	ttl, err := ParseTTL(req.Expires)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	secret, err := newSecret()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	tok := state.Token{Name: req.Name, Role: string(req.Role)}
	if ttl > 0 {
		tok.Expires = time.Now().Add(ttl).UTC()
	}
	tok, err = s.store.CreateToken(tok, sha256.Sum256([]byte(secret)), IdentityOf(r).Name)
	if err != nil {
		writeErr(w, tokenStatusOf(err), err)
		return
	}
	tok.Hash = ""
	writeJSON(w, http.StatusOK, TokenCreated{Token: tok, Secret: secret})
}

func (s *Server) listTokens(w http.ResponseWriter, _ *http.Request) {
	list, err := s.store.Tokens()
	if err != nil {
		writeErr(w, tokenStatusOf(err), err)
		return
	}
	if list == nil {
		list = []state.Token{}
	}
	writeJSON(w, http.StatusOK, TokenList{Tokens: list})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	tok, err := s.store.RevokeToken(mux.Vars(r)["name"], IdentityOf(r).Name)
	if err != nil {
		writeErr(w, tokenStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

func tokenStatusOf(err error) int {
	switch {
	case errors.Is(err, state.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, state.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, state.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
