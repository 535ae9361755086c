package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
)

func testRouter() *Router {
	return NewRouter([]config.Upstream{
		{Name: "docker.io", URL: "https://registry-1.docker.io", Default: true},
		{Name: "ghcr.io", Alias: "ghcr", URL: "https://ghcr.io"},
		{Name: "quay.io", URL: "https://quay.io"},
	})
}

func TestRoute(t *testing.T) {
	rt := testRouter()
	tests := []struct {
		name, ns string
		want     Route
		err      error
	}{
		{name: "alpine", want: Route{"docker.io", "library/alpine"}},
		{name: "library/alpine", want: Route{"docker.io", "library/alpine"}},
		{name: "bitnami/redis", want: Route{"docker.io", "bitnami/redis"}},
		{name: "alpine", ns: "docker.io", want: Route{"docker.io", "library/alpine"}},
		{name: "org/app", ns: "ghcr.io", want: Route{"ghcr.io", "org/app"}},
		// containerd override_path: /v2/ghcr/<repo>?ns=ghcr.io
		{name: "ghcr/org/app", ns: "ghcr.io", want: Route{"ghcr.io", "org/app"}},
		{name: "ghcr.io/org/app", ns: "ghcr.io", want: Route{"ghcr.io", "org/app"}},
		{name: "ghcr/org/app", want: Route{"ghcr.io", "org/app"}},
		{name: "ghcr.io/org/app", want: Route{"ghcr.io", "org/app"}},
		{name: "quay.io/coreos/etcd", want: Route{"quay.io", "coreos/etcd"}},
		{name: "docker.io/nginx", want: Route{"docker.io", "library/nginx"}},
		// A lone alias is a repository name, not a prefix.
		{name: "ghcr", want: Route{"docker.io", "library/ghcr"}},
		{name: "a/b", ns: "evil.example", err: ErrUnknownUpstream},
		{name: "../etc/passwd", err: ErrNameInvalid},
		{name: "library/../x", err: ErrNameInvalid},
		{name: "Library/alpine", err: ErrNameInvalid},
		{name: "alpine/", err: ErrNameInvalid},
		{name: "/alpine", err: ErrNameInvalid},
		{name: "a//b", err: ErrNameInvalid},
		{name: "", err: ErrNameInvalid},
		{name: strings.Repeat("a", 256), err: ErrNameInvalid},
		{name: "a-", err: ErrNameInvalid},
		{name: "a__b/c.d-e", want: Route{"docker.io", "a__b/c.d-e"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+"?ns="+tt.ns, func(t *testing.T) {
			got, err := rt.Route(tt.name, tt.ns)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Route(%q, %q) error = %v, want %v", tt.name, tt.ns, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Route(%q, %q) = %+v, %v; want %+v", tt.name, tt.ns, got, err, tt.want)
			}
		})
	}
}

func TestRouteNoDefault(t *testing.T) {
	rt := NewRouter([]config.Upstream{{Name: "ghcr.io", URL: "https://ghcr.io"}})
	if _, err := rt.Route("org/app", ""); !errors.Is(err, ErrUnknownUpstream) {
		t.Fatalf("bare name without a default upstream: err = %v", err)
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		ref     string
		tag     string
		digest  bool
		invalid bool
	}{
		{ref: "3.20", tag: "3.20"},
		{ref: "latest", tag: "latest"},
		{ref: "_x", tag: "_x"},
		{ref: "sha256:" + strings.Repeat("a", 64), digest: true},
		{ref: "sha256:" + strings.Repeat("A", 64), invalid: true},
		{ref: "sha256:abc", invalid: true},
		{ref: "md5:" + strings.Repeat("a", 32), invalid: true},
		{ref: ".hidden", invalid: true},
		{ref: strings.Repeat("t", 129), invalid: true},
		{ref: "a/b", invalid: true},
	}
	for _, tt := range tests {
		tag, d, err := ParseReference(tt.ref)
		switch {
		case tt.invalid:
			if !errors.Is(err, ErrReferenceInvalid) {
				t.Errorf("ParseReference(%q) err = %v, want ErrReferenceInvalid", tt.ref, err)
			}
		case err != nil:
			t.Errorf("ParseReference(%q) err = %v", tt.ref, err)
		case tt.digest && d == "":
			t.Errorf("ParseReference(%q) gave no digest", tt.ref)
		case !tt.digest && tag != tt.tag:
			t.Errorf("ParseReference(%q) tag = %q, want %q", tt.ref, tag, tt.tag)
		}
	}
}

// FuzzRoute checks that the routing parser never panics and that whatever
// it accepts is a valid repository on a configured upstream.
func FuzzRoute(f *testing.F) {
	rt := testRouter()
	f.Fuzz(func(t *testing.T, name, ns, ref string) {
		r, err := rt.Route(name, ns)
		if err == nil {
			if r.Upstream == "" || ValidateName(r.Repository) != nil && len(r.Repository) <= maxNameLength {
				t.Fatalf("Route(%q, %q) = %+v: invalid result", name, ns, r)
			}
			if strings.Contains(r.Repository, "..") || strings.HasPrefix(r.Repository, "/") {
				t.Fatalf("Route(%q, %q) = %+v: path escape", name, ns, r)
			}
		}
		tag, d, err := ParseReference(ref)
		if err == nil && (tag == "") == (d == "") {
			t.Fatalf("ParseReference(%q) = %q, %q: want exactly one", ref, tag, d)
		}
		if err == nil && tag != "" && strings.ContainsAny(tag, "/:@") {
			t.Fatalf("ParseReference(%q) accepted tag %q", ref, tag)
		}
	})
}
