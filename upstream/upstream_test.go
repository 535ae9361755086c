package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/airlockproxy/airlock/config"
)

// refusedAddr returns a 127.0.0.1 address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCause(t *testing.T) {
	_, dialErr := net.Dial("tcp", refusedAddr(t))
	if dialErr == nil {
		t.Fatal("dial of a closed port succeeded")
	}
	dnsErr := &net.DNSError{Err: "no such host", Name: "registry.invalid", Server: "10.0.0.53:53", IsNotFound: true}
	u, _ := url.Parse("https://bot:s3cret@registry.example/v2/x/blobs/sha256:ab?X-Amz-Signature=deadbeef&token=t0k")
	for _, tc := range []struct {
		name      string
		err       error
		want      []string
		forbidden []string
		reach     bool // unreachable(err)
	}{
		{"connection refused", &url.Error{Op: "Get", URL: "http://127.0.0.1:1/v2/", Err: dialErr}, []string{"connect: connection refused"}, nil, true},
		{"DNS failure", fmt.Errorf("resolve: %w", &url.Error{Op: "Get", URL: "https://registry.invalid/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: dnsErr}}),
			[]string{"lookup registry.invalid: no such host"}, []string{"10.0.0.53"}, true},
		{"registry error", &transport.Error{StatusCode: 401, Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode, Message: "authentication required"}}},
			[]string{"401", "UNAUTHORIZED", "authentication required"}, nil, false},
		{"bare status", &transport.Error{StatusCode: 502}, []string{"502 Bad Gateway"}, nil, false},
		{"timeout", fmt.Errorf("resolve: %w", context.DeadlineExceeded), []string{"no answer in time"}, nil, false},
		{"credentials and signed URL", &url.Error{Op: "Get", URL: u.String(), Err: fmt.Errorf("stream error from %s: reset", u)},
			[]string{"https://registry.example/v2/x/blobs/sha256:ab", "reset"}, []string{"s3cret", "bot", "deadbeef", "t0k", "X-Amz"}, false},
		{"long", errors.New(strings.Repeat("x", 1000)), []string{"…"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Cause(tc.err)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Cause = %q, want it to contain %q", got, w)
				}
			}
			for _, f := range tc.forbidden {
				if strings.Contains(got, f) {
					t.Errorf("Cause = %q leaks %q", got, f)
				}
			}
			if len(got) > maxCause+len("…") {
				t.Errorf("Cause is %d bytes long", len(got))
			}
			if r := unreachable(tc.err); r != tc.reach {
				t.Errorf("unreachable = %v, want %v", r, tc.reach)
			}
		})
	}
}

// TestRetryable: what cannot be reached is not retried (a retry a second
// later meets the same DNS answer or closed port); flaky transfers are.
func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{"temporary DNS failure", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}}, false},
		{"DNS timeout", &net.DNSError{Err: "i/o timeout", Name: "x", IsTimeout: true}, false},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"truncated body", io.ErrUnexpectedEOF, true},
		{"deadline", context.DeadlineExceeded, false},
		{"other", errors.New("no"), false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// countingTransport counts round trips and fails them as a closed port does.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: r.URL.Hostname(), IsTemporary: true}}
}

// TestUnreachableFailsFast: an upstream whose name does not resolve (even
// "temporarily") or whose port is closed fails at once with ErrUnreachable
// and the cause; go-containerregistry's default retried temporary DNS
// failures for ~4s.
func TestUnreachableFailsFast(t *testing.T) {
	ct := &countingTransport{}
	for _, tc := range []struct {
		name string
		cfg  config.Upstream
		opts []Option
		want string
	}{
		{"refused", config.Upstream{Name: "docker.io", URL: "http://" + refusedAddr(t), Insecure: true}, nil, "connection refused"},
		{"temporary DNS failure", config.Upstream{Name: "docker.io", URL: "https://registry.invalid"}, []Option{WithTransport(ct)}, "server misbehaving"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = r.Resolve(context.Background(), "library/alpine", "3.20")
			if el := time.Since(start); el > time.Second {
				t.Errorf("Resolve took %s to fail", el)
			}
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(Cause(err), tc.want) {
				t.Errorf("Resolve = %v (cause %q), want ErrUnreachable with %q", err, Cause(err), tc.want)
			}
		})
	}
	if n := ct.n.Load(); n > 2 {
		t.Errorf("%d round trips for one resolution (ping over https and http at most)", n)
	}
}
