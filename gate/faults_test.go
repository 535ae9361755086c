package gate_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/storage/state"
)

// faulty breaks the first n matching upstream responses in one way, as a
// flaky network or a broken upstream would, then lets requests through.
type faulty struct {
	n     atomic.Int32
	match func(*http.Request) bool
	fault func(*http.Response) (*http.Response, error)
	next  http.RoundTripper
}

func (f *faulty) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(r)
	if err != nil || !f.match(r) || f.n.Add(-1) < 0 {
		return resp, err
	}
	return f.fault(resp)
}

func isBlobGET(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/")
}

func isManifestGET(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
}

// errReset stands for a connection reset in the middle of a body.
var errReset = errors.New("connection reset by peer")

type resetAfter struct {
	r io.Reader
	c io.Closer
}

func (b *resetAfter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errReset
	}
	return n, err
}

func (b *resetAfter) Close() error { return b.c.Close() }

// TestUpstreamFaults: every kind of upstream fault ends with the image
// fetched intact after retries (or failed with a clear reason when the
// fault persists), and never with corrupt content in the store.
func TestUpstreamFaults(t *testing.T) {
	tests := []struct {
		name  string
		match func(*http.Request) bool
		n     int32
		fault func(*http.Response) (*http.Response, error)
		// reason is in the failed record when the fault outlasts the retries.
		reason string
	}{
		{
			name: "5xx burst", match: isBlobGET, n: 6, reason: "503",
			fault: func(r *http.Response) (*http.Response, error) {
				r.Body.Close()
				return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{}, Body: io.NopCloser(strings.NewReader("busy")), Request: r.Request}, nil
			},
		},
		{
			name: "reset mid-blob", match: isBlobGET, n: 2, reason: "reset",
			fault: func(r *http.Response) (*http.Response, error) {
				half := io.LimitReader(r.Body, r.ContentLength/2)
				r.Body = &resetAfter{r: half, c: r.Body}
				return r, nil
			},
		},
		{
			name: "truncated body", match: isBlobGET, n: 2, reason: "EOF",
			fault: func(r *http.Response) (*http.Response, error) {
				r.Body = struct {
					io.Reader
					io.Closer
				}{io.LimitReader(r.Body, r.ContentLength/2), r.Body}
				return r, nil
			},
		},
		{
			name: "wrong content type", match: isManifestGET, n: 1000, reason: "",
			fault: func(r *http.Response) (*http.Response, error) {
				// A registry that labels manifests application/json: the
				// manifest's own mediaType field decides, so this fetch succeeds.
				r.Header.Set("Content-Type", "application/json")
				return r, nil
			},
		},
		{
			name: "manifest garbage", match: isManifestGET, n: 1000, reason: "digest",
			fault: func(r *http.Response) (*http.Response, error) {
				r.Body.Close()
				r.Body = io.NopCloser(bytes.NewReader([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)))
				r.ContentLength = -1
				r.Header.Del("Content-Length")
				return r, nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := registrytest.NewUpstream(t)
			img := registrytest.Image(t, 2, 64<<10, types.OCIManifestSchema1)
			d := up.PushImage(t, "library/faulty:1", img)
			rt := &faulty{match: tt.match, fault: tt.fault, next: http.DefaultTransport}
			rt.n.Store(tt.n)
			p := newPipeline(t, up, t.TempDir(), rt, func(c *config.Config) { c.Gate.Retry.MaxAttempts = 4 })
			ref := state.Ref{Upstream: "docker.io", Repository: "library/faulty", Digest: digest.Digest(d.String())}
			if _, err := p.engine.Request(ref, "test"); err != nil {
				t.Fatal(err)
			}
			got := waitFor(t, p.store, ref, func(i state.Image) bool {
				_, jobErr := p.store.Job(ref)
				return !i.State.InPipeline() && (i.State != state.StateFailed || jobErr != nil)
			})
			switch {
			case got.State == state.StateAwaitingApproval:
				// Every blob in the store hashes to its digest.
				for _, b := range got.Blobs {
					rc, _, err := p.content.Open(t.Context(), b)
					if err != nil {
						t.Fatalf("blob %s: %v", b, err)
					}
					h, err := digest.FromReader(rc)
					rc.Close()
					if err != nil || h != b {
						t.Fatalf("blob %s stored with content %s", b, h)
					}
				}
			case got.State == state.StateFailed && tt.reason != "" && strings.Contains(got.Reason, tt.reason):
				// A fault that outlasts the retries is recorded with its cause.
			default:
				t.Fatalf("after %s: %s (%s)", tt.name, got.State, got.Reason)
			}
			if tt.name == "manifest garbage" && got.State != state.StateFailed {
				t.Fatalf("a manifest that does not match its digest was accepted")
			}
		})
	}
}
