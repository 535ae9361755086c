package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// TestQueryNotGuessed: a query Go's parser would silently thin out (pairs
// holding ';' are dropped) or that names the upstream twice is refused
// with 400 UNSUPPORTED on every endpoint, GET and HEAD, before anything is
// routed, queued or recorded. Before, "?ns=ghcr.io;ns=docker.io" lost both
// ns pairs and was routed to the default upstream.
func TestQueryNotGuessed(t *testing.T) {
	s := newStack(t, nil)
	s.up.PushImage(t, "allowed/app:1", registrytest.Image(t, 1, 256, types.OCIManifestSchema1))
	upstreamReqs := func() int {
		return s.up.Count("GET", "/v2/allowed/app/manifests/1") + s.up.Count("HEAD", "/v2/allowed/app/manifests/1")
	}
	before := upstreamReqs()
	for _, tc := range []struct {
		query string
		want  string // in the message
	}{
		{"ns=ghcr.io;ns=docker.io", "';'"},
		{"ns=ghcr.io;", "';'"},
		{";ns=ghcr.io", "';'"},
		{"x=1;y=2&ns=ghcr.io", "';'"},
		{"ns=ghcr.io&ns=docker.io", "ns) 2 times"},
		{"ns=ghcr.io&ns=ghcr.io", "ns) 2 times"},
		{"ns=%zz", "malformed"},
	} {
		for _, path := range []string{"/v2/", "/v2/allowed/app/manifests/1", "/v2/allowed/app/blobs/sha256:" + strings.Repeat("a", 64), "/v2/allowed/app/tags/list"} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				status, body, code, h := s.get(t, method, path+"?"+tc.query)
				if status != http.StatusBadRequest {
					t.Errorf("%s %s?%s = %d, want 400", method, path, tc.query, status)
					continue
				}
				if h.Get("OCI-Namespace") != "" {
					t.Errorf("%s %s?%s echoed OCI-Namespace %q for a refused query", method, path, tc.query, h.Get("OCI-Namespace"))
				}
				if method == http.MethodGet && (code != "UNSUPPORTED" || !strings.Contains(string(body), tc.want)) {
					t.Errorf("%s %s?%s: %s %s, want UNSUPPORTED saying %q", method, path, tc.query, code, body, tc.want)
				}
				if !strings.Contains(h.Get("Airlock-Reason"), strings.Trim(tc.want, "'")) {
					t.Errorf("%s %s?%s: Airlock-Reason %q", method, path, tc.query, h.Get("Airlock-Reason"))
				}
			}
		}
	}
	if imgs, err := s.store.Images(""); err != nil || len(imgs) != 0 {
		t.Errorf("refused queries created records: %v, %v", imgs, err)
	}
	if n := upstreamReqs() - before; n != 0 {
		t.Errorf("refused queries reached the upstream %d times", n)
	}

	// An escaped ';' is part of a value, and one ns is routed as before.
	if status, _, code, _ := s.get(t, http.MethodGet, "/v2/?x=a%3Bb"); status != http.StatusOK {
		t.Errorf("GET /v2/?x=a%%3Bb = %d %s, want 200", status, code)
	}
	status, _, _, h := s.get(t, http.MethodGet, "/v2/allowed/app/manifests/1?ns=ghcr.io")
	if status != http.StatusForbidden || h.Get("OCI-Namespace") != "ghcr.io" {
		t.Errorf("one ns: %d, OCI-Namespace %q; want 403 (quarantine) and ghcr.io", status, h.Get("OCI-Namespace"))
	}
	if imgs, _ := s.store.Images(""); len(imgs) != 1 || imgs[0].Ref.Upstream != "ghcr.io" {
		t.Errorf("one ns: records %+v, want one of ghcr.io", imgs)
	}
}
