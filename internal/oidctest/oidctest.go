// Package oidctest runs a real OpenID Connect provider for tests: the
// example OpenID Provider of github.com/zitadel/oidc/v3 (an OpenID
// certified library; packages example/server/exampleop and
// example/server/storage), in process on 127.0.0.1, with users who carry
// groups and one registered confidential web client. Relying parties talk
// the whole protocol to it (discovery, JWKS, authorization endpoint,
// login page, token endpoint, userinfo); nothing is mocked.
//
// # Logging in through its login page
//
// The authorization endpoint redirects the browser to
//
//	<Issuer>/login/username?authRequestID=<id>
//
// a page with one form (POST /login/username) whose fields are
//
//	id        hidden, the auth request's id (already filled in)
//	username  text input, element id "username"
//	password  password input, element id "password"
//
// and a single <button type="submit">. A right password redirects (302)
// through <Issuer>/auth/callback?id=<id> to the client's redirect URI with
// code and state; a wrong one renders the page again with the error
// "username or password wrong". In a browser test (chromedp): navigate to
// the relying party's start URL, wait for #username, SendKeys to #username
// and #password, Click `button[type=submit]`, and wait for the relying
// party's page. Go tests can call Provider.SignIn instead.
//
// # Claims
//
// The ID token carries sub, the standard claims and "groups" (a string
// array; absent for a user without groups). As OpenID Connect Core 1.0
// section 5.4 says for the code flow, the profile and email claims
// (preferred_username, email, email_verified) come from the userinfo
// endpoint, not in the ID token; userinfo also carries "groups".
package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// GroupsClaim is the claim the provider lists a user's groups in.
const GroupsClaim = "groups"

// User is a person who can log in at the provider.
type User struct {
	// Username is typed on the login page and is the preferred_username
	// claim.
	Username string
	// Password is typed on the login page.
	Password string
	// Email, when set, is the (verified) email claim.
	Email string
	// Groups are the "groups" claim; none leaves the claim out.
	Groups []string
}

// Mode makes the provider misbehave on purpose, so that tests can check a
// relying party refuses what a broken or hostile provider sends.
type Mode int32

// The modes. Each applies to the tokens issued while it is set; set the
// misbehaving ones after the login, before the relying party's token
// request (WrongAudience would also confuse the authorization request).
const (
	// Honest is the default: tokens as the protocol says.
	Honest Mode = iota
	// GroupsOnlyInUserinfo leaves "groups" out of the ID token; only the
	// userinfo endpoint returns it (as some providers do).
	GroupsOnlyInUserinfo
	// WrongAudience issues ID tokens whose aud and azp are another
	// client, OtherAudience (the provider treats the code as that
	// client's: a provider mixing up its clients).
	WrongAudience
	// WrongNonce issues ID tokens with a nonce other than the request's.
	WrongNonce
	// ExpiredIDToken issues ID tokens that expired a minute ago.
	ExpiredIDToken
	// ForeignKey signs ID tokens with a key other than the published
	// one, under the published key's ID: the signature does not verify.
	ForeignKey
)

// OtherAudience is the aud of ID tokens issued in mode WrongAudience.
const OtherAudience = "someone-else"

// Provider is a running OpenID provider.
type Provider struct {
	// Issuer is the issuer URL, http://127.0.0.1:<port>.
	Issuer string
	// ClientID and ClientSecret are the registered confidential web
	// client's credentials (client_secret_basic or client_secret_post).
	ClientID     string
	ClientSecret string

	mode      atomic.Int32
	mu        sync.Mutex
	redirects []string
}

// Start runs a provider with users until the test ends. Register the
// relying party's redirect URI with AllowRedirectURI before logging in.
func Start(t testing.TB, users ...User) *Provider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oidctest: listen: %v", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	p := &Provider{
		Issuer:       "http://" + ln.Addr().String(),
		ClientID:     "airlock",
		ClientSecret: hex.EncodeToString(secret),
	}
	us := userStore{byID: map[string]*storage.User{}, groups: map[string][]string{}}
	for i, u := range users {
		if u.Username == "" {
			t.Fatalf("oidctest: user %d has no username", i)
		}
		id := fmt.Sprintf("sub-%d", i+1)
		us.byID[id] = &storage.User{ID: id, Username: u.Username, Password: u.Password,
			FirstName: u.Username, Email: u.Email, EmailVerified: u.Email != ""}
		us.groups[id] = slices.Clone(u.Groups)
	}
	// The client registry is per provider (storage.RegisterClients would
	// write a package-wide map that parallel tests share).
	clients := map[string]*storage.Client{p.ClientID: storage.WebClient(p.ClientID, p.ClientSecret)}
	st := &idpStorage{Storage: storage.NewStorageWithClients(us, clients), p: p, users: us}
	// The example provider logs every request at INFO through the
	// process's default logger, and a logger given here replaces that
	// default: keep the test process's output to warnings.
	handler := exampleop.SetupServer(p.Issuer, st, quietLogger, false)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return p
}

// AllowRedirectURI registers uri as a redirect URI of the client. The
// provider refuses an authorization request naming any other.
func (p *Provider) AllowRedirectURI(uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirects = append(p.redirects, uri)
}

// SetMode makes the provider misbehave (or, with Honest, stop).
func (p *Provider) SetMode(m Mode) { p.mode.Store(int32(m)) }

func (p *Provider) currentMode() Mode { return Mode(p.mode.Load()) }

// SignIn logs username in the way a browser would: it GETs startURL (the
// relying party's "sign in" URL, which redirects to the provider), submits
// the provider's login form, and follows the redirects back to the relying
// party's callback. c must have a cookie jar (and trust the relying
// party's TLS certificate). It returns the relying party's final response,
// whose body the caller closes; a login the provider refuses is an error.
func (p *Provider) SignIn(c *http.Client, startURL, username, password string) (*http.Response, error) {
	if c.Jar == nil {
		return nil, errors.New("oidctest: SignIn needs a client with a cookie jar")
	}
	resp, err := c.Get(startURL)
	if err != nil {
		return nil, fmt.Errorf("oidctest: start %s: %w", startURL, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	page := resp.Request.URL
	if !strings.HasPrefix(page.String(), p.Issuer+"/login/username?") || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidctest: %s led to %s (%s), not the provider's login page", startURL, page, resp.Status)
	}
	form := url.Values{
		"id":       {page.Query().Get("authRequestID")},
		"username": {username},
		"password": {password},
	}
	resp, err = c.PostForm(p.Issuer+"/login/username", form)
	if err != nil {
		return nil, fmt.Errorf("oidctest: submit the login form: %w", err)
	}
	if strings.HasPrefix(resp.Request.URL.String(), p.Issuer+"/login/") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		msg := "no error shown"
		if strings.Contains(string(b), "username or password wrong") {
			msg = "username or password wrong"
		}
		return nil, fmt.Errorf("oidctest: the provider kept the login at %s (%s): %s", resp.Request.URL, resp.Status, msg)
	}
	return resp, nil
}

// userStore is the provider's user directory.
type userStore struct {
	byID   map[string]*storage.User
	groups map[string][]string // by user ID
}

func (u userStore) GetUserByID(id string) *storage.User { return u.byID[id] }

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, user := range u.byID {
		if user.Username == name {
			return user
		}
	}
	return nil
}

// ExampleClientID names the example storage's service user (JWT profile
// grant), which these tests do not use.
func (u userStore) ExampleClientID() string { return storage.ServiceUserID }

// idpStorage is the example storage with groups added to the claims, the
// client's redirect URIs taken from the Provider, and the misbehaviour
// modes.
type idpStorage struct {
	*storage.Storage
	p     *Provider
	users userStore
}

// SetUserinfoFromRequest fills the ID token's claims.
func (s *idpStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	if s.p.currentMode() != GroupsOnlyInUserinfo {
		s.addGroups(info, req.GetSubject())
	}
	return nil
}

// SetUserinfoFromToken fills the userinfo endpoint's answer.
func (s *idpStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(info, subject)
	return nil
}

func (s *idpStorage) addGroups(info *oidc.UserInfo, subject string) {
	if g := s.users.groups[subject]; len(g) > 0 {
		info.AppendClaims(GroupsClaim, slices.Clone(g))
	}
}

// GetClientByClientID returns the client with the Provider's redirect
// URIs and, in mode ExpiredIDToken, a negative ID token lifetime.
func (s *idpStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	cl := client{Client: c, id: c.GetID(), redirects: slices.Clone(s.p.redirects), expired: s.p.currentMode() == ExpiredIDToken}
	if s.p.currentMode() == WrongAudience {
		cl.id = OtherAudience
	}
	return cl, nil
}

type client struct {
	op.Client
	id        string
	redirects []string
	expired   bool
}

func (c client) GetID() string { return c.id }

func (c client) RedirectURIs() []string { return c.redirects }

func (c client) IDTokenLifetime() time.Duration {
	if c.expired {
		return -time.Minute
	}
	return c.Client.IDTokenLifetime()
}

// AuthRequestByCode is where the token endpoint finds what the ID token
// says: the modes WrongAudience and WrongNonce alter it there.
func (s *idpStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	req, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil {
		return nil, err
	}
	switch s.p.currentMode() {
	case WrongAudience:
		return alteredRequest{AuthRequest: req, clientID: OtherAudience, aud: []string{OtherAudience}, nonce: req.GetNonce()}, nil
	case WrongNonce:
		return alteredRequest{AuthRequest: req, clientID: req.GetClientID(), aud: req.GetAudience(), nonce: "not-the-nonce-you-sent"}, nil
	}
	return req, nil
}

type alteredRequest struct {
	op.AuthRequest
	clientID string
	aud      []string
	nonce    string
}

func (a alteredRequest) GetClientID() string   { return a.clientID }
func (a alteredRequest) GetAudience() []string { return a.aud }
func (a alteredRequest) GetNonce() string      { return a.nonce }

// SigningKey is the key tokens are signed with: in mode ForeignKey a
// fresh one under the published key's ID.
func (s *idpStorage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	k, err := s.Storage.SigningKey(ctx)
	if err != nil || s.p.currentMode() != ForeignKey {
		return k, err
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return foreignKey{SigningKey: k, key: other}, nil
}

type foreignKey struct {
	op.SigningKey
	key *rsa.PrivateKey
}

func (f foreignKey) Key() any { return f.key }

// quietLogger is the test process's default logger once a provider runs:
// warnings and errors only, to stderr.
var quietLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
