package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/proxy"
	"github.com/airlockproxy/airlock/pullrec"
	"github.com/airlockproxy/airlock/storage/state"
)

// BenchmarkManifestPullRecords measures cached manifest GETs by digest
// through the real registry handler, with pull records off and on, in the
// same run: handlers on one store, content store and approved image.
// Every client alternates between two handlers request by request (which
// one goes first alternates too), so both see the same machine, the same
// concurrency, the same GC and the same background flushes. Each round
// pairs off with on, then off with a second handler without records (an
// A/A control: the noise floor of the comparison). The overhead is the
// median over rounds of each round's on/off ratio, so a burst of load from
// elsewhere on the machine during one round does not decide it; the A/A
// ratio is reported next to it. Issue 12's target: p99 under 5 %.
func BenchmarkManifestPullRecords(b *testing.B) {
	off, on, off2, path, rec := pullRecordsStack(b)
	for _, clients := range []int{1, 2, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			const rounds, pairs = 10, 200 // pairs per client and round
			var offLat, onLat []time.Duration
			var p99Ratios, aaRatios, meanRatios []float64
			for range b.N {
				for range rounds {
					o, n := measure(b, off, on, path, clients, pairs)
					offLat, onLat = append(offLat, o...), append(onLat, n...)
					_, op99, omean := stats(o)
					_, np99, nmean := stats(n)
					p99Ratios = append(p99Ratios, float64(np99)/float64(op99))
					meanRatios = append(meanRatios, float64(nmean)/float64(omean))
					a, a2 := measure(b, off, off2, path, clients, pairs)
					_, ap99, _ := stats(a)
					_, a2p99, _ := stats(a2)
					aaRatios = append(aaRatios, float64(a2p99)/float64(ap99))
				}
			}
			if err := rec.Flush(); err != nil {
				b.Fatal(err)
			}
			offP50, offP99, offMean := stats(offLat)
			onP50, onP99, onMean := stats(onLat)
			p99Over, meanOver, aaOver := 100*(medianOf(p99Ratios)-1), 100*(medianOf(meanRatios)-1), 100*(medianOf(aaRatios)-1)
			b.ReportMetric(float64(offP50.Nanoseconds())/1e3, "off-p50-µs")
			b.ReportMetric(float64(offP99.Nanoseconds())/1e3, "off-p99-µs")
			b.ReportMetric(float64(offMean.Nanoseconds())/1e3, "off-mean-µs")
			b.ReportMetric(float64(onP50.Nanoseconds())/1e3, "on-p50-µs")
			b.ReportMetric(float64(onP99.Nanoseconds())/1e3, "on-p99-µs")
			b.ReportMetric(float64(onMean.Nanoseconds())/1e3, "on-mean-µs")
			b.ReportMetric(p99Over, "p99-overhead-%")
			b.ReportMetric(meanOver, "mean-overhead-%")
			b.ReportMetric(aaOver, "p99-A/A-%")
			b.ReportMetric(0, "ns/op")
			b.Logf("manifest GET, %d clients, %d requests per mode: off p50 %s p99 %s mean %s | on p50 %s p99 %s mean %s | overhead p99 %+.1f%% mean %+.1f%% | A/A p99 %+.1f%%",
				clients, len(offLat), offP50, offP99, offMean.Round(100*time.Nanosecond), onP50, onP99, onMean.Round(100*time.Nanosecond),
				p99Over, meanOver, aaOver)
		})
	}
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// measure has clients send pairs GETs of path to each of off and on,
// alternating, and returns the latencies of each.
func measure(b *testing.B, off, on http.Handler, path string, clients, pairs int) (offLat, onLat []time.Duration) {
	offLat, onLat = make([]time.Duration, clients*pairs), make([]time.Duration, clients*pairs)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ua := fmt.Sprintf("containerd/1.7.24 bench-node-%d", c)
			addr := fmt.Sprintf("10.0.%d.%d:40000", c/250, c%250)
			get := func(h http.Handler) (time.Duration, bool) {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.RemoteAddr = addr
				req.Header.Set("User-Agent", ua)
				req.Header.Set("Accept", string(types.OCIManifestSchema1))
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, req)
				d := time.Since(start)
				if w.Code != http.StatusOK {
					b.Errorf("GET %s: %d %s", path, w.Code, w.Body)
					return d, false
				}
				return d, true
			}
			for i := range pairs {
				var ok1, ok2 bool
				if (i+c)%2 == 0 {
					offLat[c*pairs+i], ok1 = get(off)
					onLat[c*pairs+i], ok2 = get(on)
				} else {
					onLat[c*pairs+i], ok1 = get(on)
					offLat[c*pairs+i], ok2 = get(off)
				}
				if !ok1 || !ok2 {
					return
				}
			}
		}()
	}
	wg.Wait()
	return offLat, onLat
}

func stats(d []time.Duration) (p50, p99, mean time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	return s[len(s)/2], s[len(s)*99/100], sum / time.Duration(len(s))
}

// pullRecordsStack returns registry handlers on one approved image,
// without pull records, with them (flushed every 5s, the default) and
// without again, the image's manifest path and the recorder.
func pullRecordsStack(b *testing.B) (off, on, off2 http.Handler, path string, rec *pullrec.Recorder) {
	b.Helper()
	st := newStack(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	rec = pullrec.New(st.store, st.cfg.Pulls)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); rec.Run(ctx) }()
	b.Cleanup(func() { cancel(); wg.Wait() })

	path = st.benchImage(b)
	// Each request is logged as in production, into io.Discard.
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	handler := func(opts ...proxy.Option) http.Handler {
		return proxy.New(st.cfg, st.store, st.content, st.engine, st.ups, append(opts, proxy.WithLogger(log))...).Handler()
	}
	return handler(), handler(proxy.WithPullRecorder(rec)), handler(), path, rec
}

// benchImage pushes library/bench:1 (two 1 KiB layers) upstream, has the
// stack approve it and returns its manifest path by digest.
func (s *stack) benchImage(b *testing.B) string {
	b.Helper()
	d := s.up.PushImage(b, "library/bench:1", registrytest.Image(b, 2, 1024, types.OCIManifestSchema1))
	ref := state.Ref{Upstream: "docker.io", Repository: "library/bench", Digest: digest.Digest(d.String())}
	if _, err := s.engine.Request(ref, "bench"); err != nil {
		b.Fatal(err)
	}
	s.waitState(b, ref, state.StateAwaitingApproval)
	if _, err := s.engine.Approve(ref, "admin", "bench"); err != nil {
		b.Fatal(err)
	}
	return "/v2/library/bench/manifests/" + d.String()
}
