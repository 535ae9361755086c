package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		v       string
		attempt int
		want    time.Duration
	}{
		{"3", 0, 3 * time.Second},
		{" 0 ", 0, default429Wait},
		{"", 0, default429Wait},
		{"", 2, 4 * default429Wait},
		{"soon", 0, default429Wait},
		{"-5", 0, default429Wait},
		{"86400", 0, MaxRetryAfter},
		{"99999999999999999999999", 0, default429Wait}, // does not parse as int64
		{now.Add(7 * time.Second).Format(http.TimeFormat), 0, 7 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, default429Wait},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), 0, MaxRetryAfter},
		{"", 100, default429Wait << 8},
	} {
		if got := retryAfter(tc.v, now, tc.attempt); got != tc.want {
			t.Errorf("retryAfter(%q, attempt %d) = %s, want %s", tc.v, tc.attempt, got, tc.want)
		}
	}
}

// throttler answers the first n requests with 429 and Retry-After, then
// passes requests to next; it records when each request arrived.
type throttler struct {
	next       http.Handler
	retryAfter string
	left       atomic.Int32

	mu    sync.Mutex
	times []time.Time
}

func (h *throttler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.times = append(h.times, time.Now())
	h.mu.Unlock()
	if h.left.Add(-1) >= 0 {
		w.Header().Set("Retry-After", h.retryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
		return
	}
	h.next.ServeHTTP(w, r)
}

func (h *throttler) arrivals() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.times...)
}

func ok200() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
}

func get(t *testing.T, rt http.RoundTripper, ctx context.Context, u string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err == nil {
		t.Cleanup(func() { resp.Body.Close() })
	}
	return resp, err
}

func TestPolite429WaitsRetryAfterAndRetries(t *testing.T) {
	h := &throttler{next: ok200(), retryAfter: "1"}
	h.left.Store(1)
	srv := httptest.NewServer(h)
	defer srv.Close()
	pt := newPoliteTransport("test", config.RateLimit{}, http.DefaultTransport)

	start := time.Now()
	resp, err := get(t, pt, context.Background(), srv.URL+"/v2/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %v, %v; want 200 after waiting", resp, err)
	}
	arr := h.arrivals()
	if len(arr) != 2 {
		t.Fatalf("upstream saw %d requests, want 2 (the 429, then one retry)", len(arr))
	}
	if gap := arr[1].Sub(arr[0]); gap < 950*time.Millisecond {
		t.Errorf("retry came %s after the 429; Retry-After said 1s", gap)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestPolite429CoolDownIsShared(t *testing.T) {
	h := &throttler{next: ok200(), retryAfter: "1"}
	h.left.Store(1)
	srv := httptest.NewServer(h)
	defer srv.Close()
	pt := newPoliteTransport("test", config.RateLimit{}, http.DefaultTransport)

	if _, err := get(t, pt, context.Background(), srv.URL+"/a"); err != nil {
		t.Fatal(err)
	}
	// The first request met the 429 and waited; a request started now
	// must not reach the upstream before the cool-down ended either.
	h2 := &throttler{next: ok200(), retryAfter: "1"}
	h2.left.Store(1)
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	pt2 := newPoliteTransport("test2", config.RateLimit{}, http.DefaultTransport)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = get(t, pt2, context.Background(), srv2.URL+"/a")
	}()
	time.Sleep(100 * time.Millisecond) // the 429 has been met and the cool-down set
	go func() {
		defer wg.Done()
		if _, err := get(t, pt2, context.Background(), srv2.URL+"/b"); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	arr := h2.arrivals()
	if len(arr) != 3 {
		t.Fatalf("upstream saw %d requests, want 3 (429, the retry, the second caller)", len(arr))
	}
	for _, at := range arr[1:] {
		if gap := at.Sub(arr[0]); gap < 950*time.Millisecond {
			t.Errorf("a request reached the upstream %s after its 429; Retry-After said 1s", gap)
		}
	}
}

func TestPolite429ShortContextFailsFast(t *testing.T) {
	h := &throttler{next: ok200(), retryAfter: "30"}
	h.left.Store(100)
	srv := httptest.NewServer(h)
	defer srv.Close()
	pt := newPoliteTransport("test", config.RateLimit{}, http.DefaultTransport)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := get(t, pt, ctx, srv.URL+"/a")
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("got %v, %v; want the 429 itself (the caller cannot wait 30s)", resp, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the 429 came back after %s; it should come at once", took)
	}
	// Meanwhile the upstream cools down: the next call is not sent.
	_, err = get(t, pt, ctx, srv.URL+"/b")
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("during the cool-down: err %v, want ErrRateLimited", err)
	}
	if n := len(h.arrivals()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
	if until := pt.CoolingDown(); time.Until(until) < 25*time.Second {
		t.Errorf("cooling down until %s, want ~30s from now", until)
	}
}

func TestPolite429RetriesAreBounded(t *testing.T) {
	h := &throttler{next: ok200(), retryAfter: "0"}
	h.left.Store(1000)
	srv := httptest.NewServer(h)
	defer srv.Close()
	pt := newPoliteTransport("test", config.RateLimit{}, http.DefaultTransport)
	// Retry-After 0 falls back to 1s, 2s, 4s: keep the test short by
	// letting only the first two waits fit.
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	resp, err := get(t, pt, ctx, srv.URL+"/a")
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("got %v, %v; want the 429", resp, err)
	}
	if n := len(h.arrivals()); n > max429Retries+1 || n < 2 {
		t.Errorf("upstream saw %d requests, want 2..%d", n, max429Retries+1)
	}
}

func TestPoliteRateLimit(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { n.Add(1) }))
	defer srv.Close()
	pt := newPoliteTransport("test", config.RateLimit{RequestsPerSecond: 20, Burst: 5}, http.DefaultTransport)
	start := time.Now()
	for i := 0; i < 15; i++ {
		if _, err := get(t, pt, context.Background(), srv.URL+"/x"); err != nil {
			t.Fatal(err)
		}
	}
	// 5 at once, then 10 more at 20/s: at least ~0.5s.
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Errorf("15 requests at 20/s with burst 5 took %s, want ≥ 0.5s", took)
	}
	// A caller that cannot wait for its turn fails instead of queueing.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	slow := newPoliteTransport("test", config.RateLimit{RequestsPerSecond: 0.1, Burst: 1}, http.DefaultTransport)
	_, _ = get(t, slow, context.Background(), srv.URL+"/x")
	if _, err := get(t, slow, ctx, srv.URL+"/x"); err == nil || !strings.Contains(err.Error(), "rate_limit") {
		t.Errorf("err %v, want a rate_limit wait error", err)
	}
}

func TestTagListBodyIsBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"name":"x","tags":["a"`)
		chunk := strings.Repeat(`,"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"`, 1000)
		for i := 0; i < (maxTagListBytes/len(chunk))+10; i++ {
			if _, err := fmt.Fprint(w, chunk); err != nil {
				return
			}
		}
		fmt.Fprint(w, `]}`)
	}))
	defer srv.Close()
	reg, err := New(config.Upstream{Name: "hostile.test", URL: srv.URL, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Tags(context.Background(), "x", 1000)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err %v, want the page refused as too large", err)
	}
}

func TestRegistryHonours429(t *testing.T) {
	up := registrytest.NewUpstream(t)
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := up.PushImage(t, "team/app:v1", img)
	for i := 0; i < 30; i++ {
		up.PushImage(t, fmt.Sprintf("team/app:t%02d", i), img)
	}
	h := &throttler{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxyTo(t, up.URL(), w, r)
	}), retryAfter: "1"}
	h.left.Store(1)
	front := httptest.NewServer(h)
	defer front.Close()

	reg, err := New(config.Upstream{Name: "upstream.test", URL: front.URL, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	desc, err := reg.Resolve(context.Background(), "team/app", "v1")
	if err != nil {
		t.Fatalf("resolve through a 429: %v", err)
	}
	if desc.Digest != want {
		t.Fatalf("digest %s, want %s", desc.Digest, want)
	}
	if took := time.Since(start); took < 950*time.Millisecond {
		t.Errorf("resolved after %s: the Retry-After of 1s was not waited", took)
	}
	// go-containerregistry's own retries must not add to the 429's:
	// one 429, then the requests the resolution needs.
	before := len(h.arrivals())
	list, err := reg.Tags(context.Background(), "team/app", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Tags) != 10 || !list.Truncated {
		t.Errorf("listed %d tags (truncated %v), want 10 of 31, truncated", len(list.Tags), list.Truncated)
	}
	if n := len(h.arrivals()) - before; n > 3 {
		t.Errorf("listing 10 tags took %d requests", n)
	}
}

// proxyTo forwards r to base and copies the answer.
func proxyTo(t *testing.T, base string, w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), nil)
	if err != nil {
		t.Error(err)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}
