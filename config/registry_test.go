package config

import (
	"strings"
	"testing"
)

func TestRegistryAuth(t *testing.T) {
	noEnvToken(t)
	c, err := Load(writeConfig(t, "registry:\n  auth:\n    htpasswd: /etc/airlock/htpasswd\n    realm: https://airlock.example.com/token\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Registry.Auth.Enabled() || c.Registry.Auth.Htpasswd != "/etc/airlock/htpasswd" || c.Registry.Auth.Realm != "https://airlock.example.com/token" {
		t.Errorf("registry = %+v", c.Registry)
	}
	if Default().Registry.Auth.Enabled() {
		t.Error("pull authentication is on by default")
	}
	for _, tc := range []struct{ body, want string }{
		{"registry:\n  auth:\n    htpasswd: ' /x'\n", "registry.auth.htpasswd: \" /x\" has leading or trailing spaces"},
		{"registry:\n  auth:\n    realm: https://a.example/token\n", "registry.auth.realm: set without registry.auth.htpasswd"},
		{"registry:\n  auth:\n    htpasswd: /x\n    realm: ftp://a.example/token\n", "registry.auth.realm: \"ftp://a.example/token\" is not an http(s) URL"},
		{"registry:\n  auth:\n    htpasswd: /x\n    realm: https:///token\n", "is not an http(s) URL"},
		{"registry:\n  auth:\n    htpasswd: /x\n    realm: https://a.example/token?x=1\n", "is not an http(s) URL"},
		{"registry:\n  auth:\n    htpasswd: /x\n    realm: 'https://a.example/to\"ken'\n", "contains a quote"},
		{"registry:\n  auth:\n    htpasswd: /x\n    user: bob\n", "field user not found"},
	} {
		if _, err := Load(writeConfig(t, tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.body, err, tc.want)
		}
	}
}
