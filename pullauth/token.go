package pullauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/storage/state"
)

// bearerPrefix starts every bearer token Airlock issues (format version 1):
// "alb1.<base64url claims>.<base64url HMAC-SHA256 of what precedes it>".
const bearerPrefix = "alb1"

// claims is what a bearer token says: who (and the credential), which
// repositories it may pull, when it was issued and until when it is valid.
type claims struct {
	Subject string `json:"sub"`
	// Source is "htpasswd" or "token"; Fingerprint names the credential
	// (see principal) and is checked again at every use.
	Source      string   `json:"src"`
	Fingerprint string   `json:"fp"`
	Audience    string   `json:"aud"`
	Repos       []string `json:"repos,omitempty"`
	IssuedAt    int64    `json:"iat"`
	Expires     int64    `json:"exp"`
}

// TokenResponse is the answer of GET /token: the same token under both
// names clients read (distribution's token spec).
type TokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// issue signs a bearer token for p and repos.
func (a *Authenticator) issue(p principal, repos []string) (string, time.Time, time.Time, error) {
	key, err := a.signingKey()
	if err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	now := a.now()
	exp := now.Add(TokenTTL)
	if !p.expires.IsZero() && p.expires.Before(exp) {
		exp = p.expires
	}
	c := claims{Subject: p.name, Source: p.src, Fingerprint: p.fp, Audience: Service, Repos: repos,
		IssuedAt: now.Unix(), Expires: exp.Unix()}
	body, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, time.Time{}, fmt.Errorf("encode token: %w", err)
	}
	signed := bearerPrefix + "." + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(key, signed)), now, exp, nil
}

func mac(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// verify checks a bearer token: signature, audience, times, that it covers
// repository (unless ""), and that its credential is still valid. When a
// token Airlock signed is refused for its scope or its credential, the
// principal names whom it was issued to (the refusal is logged so).
func (a *Authenticator) verify(tok, repository string) (principal, error) {
	bad := func(why string) (principal, error) {
		return principal{}, refuse(ErrUnauthorized, "bearer token %s; log in again", why)
	}
	if len(tok) > maxBearerLen {
		return bad("is too long")
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != bearerPrefix {
		return bad("is not one Airlock issued")
	}
	key, err := a.signingKey()
	if err != nil {
		return principal{}, err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac(key, parts[0]+"."+parts[1])) {
		return bad("has an invalid signature")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return bad("is malformed")
	}
	var c claims
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Audience != Service || c.Subject == "" {
		return bad("is malformed")
	}
	now := a.now()
	switch {
	case now.Unix() >= c.Expires:
		return bad("expired")
	case time.Unix(c.IssuedAt, 0).After(now.Add(clockSkew)):
		return bad("is issued in the future")
	}
	p := principal{name: c.Subject, src: c.Source, fp: c.Fingerprint}
	if repository != "" && !slices.Contains(c.Repos, repository) {
		return p, refuse(ErrUnauthorized, "bearer token does not cover repository %s; ask /token with scope repository:%s:pull", repository, repository)
	}
	switch c.Source {
	case srcHtpasswd:
		hash, known := a.users.user(c.Subject)
		if !known || fingerprint(hash) != c.Fingerprint {
			_, err := bad("belongs to a user whose password changed or who was removed")
			return p, err
		}
	case srcToken:
		if err := a.tokenStillValid(c); err != nil {
			return p, err
		}
	default:
		return bad("is malformed")
	}
	return p, nil
}

// tokenStillValid checks that the API token a bearer token was issued for
// is still active. An unreachable database accepts it (it was valid when
// issued, at most TokenTTL ago), as fail-static serving would.
func (a *Authenticator) tokenStillValid(c claims) error {
	raw, err := hex.DecodeString(c.Fingerprint)
	if err != nil || len(raw) != sha256.Size {
		return refuse(ErrUnauthorized, "bearer token is malformed")
	}
	tok, err := a.store.TokenByHash([32]byte(raw))
	switch {
	case errors.Is(err, state.ErrNotFound):
		return refuse(ErrUnauthorized, "token %s no longer exists", c.Subject)
	case errors.Is(err, state.ErrUnavailable):
		a.log.Warn("registry: state database unreachable; accepting an unexpired bearer token without checking its API token", "token", c.Subject, "err", err)
		return nil
	case err != nil:
		a.log.Warn("registry: cannot look up the API token of a bearer token", "token", c.Subject, "err", err)
		return refuse(ErrUnavailable, "cannot check the API token now; retry later")
	case tok.Name != c.Subject:
		return refuse(ErrUnauthorized, "token %s no longer exists", c.Subject)
	}
	return a.tokenUsable(tok)
}

// scopes returns the repositories the scope parameters ask to pull, each
// once and sorted. Push and other actions, and resource types other than
// repository, are not granted (and not an error: clients ask for what
// they might use). A malformed scope or repository name is an error.
func scopes(values []string) ([]string, error) {
	var repos []string
	n := 0
	for _, v := range values {
		for _, s := range strings.Fields(v) {
			if n++; n > maxScopes {
				return nil, fmt.Errorf("more than %d scopes", maxScopes)
			}
			typ, rest, ok1 := strings.Cut(s, ":")
			i := strings.LastIndexByte(rest, ':')
			if !ok1 || i < 0 {
				return nil, fmt.Errorf("scope %q: want repository:<name>:pull", clip(s))
			}
			name, actions := rest[:i], rest[i+1:]
			if typ != "repository" {
				continue
			}
			if !validRepo(name) {
				return nil, fmt.Errorf("scope %q: invalid repository name", clip(s))
			}
			for _, act := range strings.Split(actions, ",") {
				if act == "pull" || act == "*" {
					repos = append(repos, name)
					break
				}
			}
		}
	}
	slices.Sort(repos)
	return slices.Compact(repos), nil
}

// clip shortens client input quoted in an error.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// ServeToken serves GET /token: HTTP Basic credentials in, a bearer token
// for the asked pull scopes out. Failed logins are 401 (429 when too many
// wait, 503 when the state database cannot be reached).
func (a *Authenticator) ServeToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	if svc := q.Get("service"); svc != "" && svc != Service {
		tokenError(w, r, http.StatusBadRequest, "UNSUPPORTED", fmt.Sprintf("unknown service %q; this is %q", clip(svc), Service))
		return
	}
	repos, err := scopes(q["scope"])
	if err != nil {
		tokenError(w, r, http.StatusBadRequest, "UNSUPPORTED", err.Error())
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+Service+`"`)
		tokenError(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "log in with an htpasswd user or an API token (HTTP Basic)")
		return
	}
	p, err := a.login(r.Context(), user, pass)
	if err != nil {
		a.refused(r, user, err)
		status := Status(err)
		switch status {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Service+`"`)
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", "1")
		default:
			w.Header().Set("Retry-After", "5")
		}
		tokenError(w, r, status, codeOf(status), err.Error())
		return
	}
	tok, iat, exp, err := a.issue(p, repos)
	if err != nil {
		a.log.Error("registry: cannot issue a bearer token", "err", err)
		w.Header().Set("Retry-After", "5")
		tokenError(w, r, Status(err), codeOf(Status(err)), err.Error())
		return
	}
	a.log.Info("registry login", "user", p.String(), "remote", r.RemoteAddr, "repositories", repos)
	body, _ := json.Marshal(TokenResponse{Token: tok, AccessToken: tok,
		ExpiresIn: int(exp.Sub(iat).Seconds()), IssuedAt: iat.UTC().Format(time.RFC3339)})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// codeOf is the OCI error code of an authentication status.
func codeOf(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "UNAUTHORIZED"
}

// tokenError answers with an OCI error body, as the registry API does.
func tokenError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		Errors []entry `json:"errors"`
	}{[]entry{{code, msg}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
