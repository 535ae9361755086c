package oidctest

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestProvider walks the provider's own side of a login: discovery names
// the issuer, a registered redirect URI gets code and state after the
// right password, a wrong password stays on the login page, and an
// unregistered redirect URI is refused.
func TestProvider(t *testing.T) {
	p := Start(t, User{Username: "alice", Password: "pw", Groups: []string{"ops"}})

	resp, err := http.Get(p.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		Issuer                string   `json:"issuer"`
		AuthorizationEndpoint string   `json:"authorization_endpoint"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	}
	err = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if err != nil || disc.Issuer != p.Issuer || !strings.HasPrefix(disc.AuthorizationEndpoint, p.Issuer+"/") {
		t.Fatalf("discovery: %+v, %v", disc, err)
	}

	got := make(chan url.Values, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
	}))
	defer rp.Close()
	p.AllowRedirectURI(rp.URL + "/cb")
	authURL := func(redirect string) string {
		return disc.AuthorizationEndpoint + "?" + url.Values{
			"client_id": {p.ClientID}, "redirect_uri": {redirect}, "response_type": {"code"},
			"scope": {"openid"}, "state": {"st4te"},
		}.Encode()
	}
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar}
	}

	if _, err := p.SignIn(browser(), authURL(rp.URL+"/cb"), "alice", "wrong"); err == nil || !strings.Contains(err.Error(), "username or password wrong") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := p.SignIn(browser(), authURL(rp.URL+"/elsewhere"), "alice", "pw"); err == nil || !strings.Contains(err.Error(), "not the provider's login page") {
		t.Errorf("unregistered redirect URI: %v", err)
	}
	resp, err = p.SignIn(browser(), authURL(rp.URL+"/cb"), "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case q := <-got:
		if q.Get("code") == "" || q.Get("state") != "st4te" {
			t.Errorf("callback query %v, want code and state", q)
		}
	default:
		t.Fatal("the relying party's callback was not called")
	}
}
