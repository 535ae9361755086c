package proxy_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/proxy"
	"github.com/airlockproxy/airlock/pullauth"
	"github.com/airlockproxy/airlock/storage/state"
)

// BenchmarkManifestPullAuth measures what pull authentication adds to a
// cached manifest GET by digest: anonymous (registry.auth off) against a
// bearer token of an htpasswd user and a bearer token of a puller API
// token (whose token is checked in the state store at every use), and
// against HTTP Basic straight on the request (the login remembered after
// the first bcrypt check). Each mode is paired with the anonymous handler
// request by request in the same run, as BenchmarkManifestPullRecords does;
// the figures are medians over rounds.
func BenchmarkManifestPullAuth(b *testing.B) {
	st := newStack(b, nil)
	path := st.benchImage(b)
	file := htpasswdFile(b, "alice", "alice-pw", bcrypt.DefaultCost)
	const secret = "alk_benchnode1secretbenchnode1secret"
	if _, err := st.store.CreateToken(state.Token{Name: "node1", Role: "puller"}, sha256.Sum256([]byte(secret)), "admin"); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	pa, err := pullauth.New(config.RegistryAuth{Htpasswd: file}, st.store, pullauth.WithLogger(log))
	if err != nil {
		b.Fatal(err)
	}
	off := proxy.New(st.cfg, st.store, st.content, st.engine, st.ups, proxy.WithLogger(log)).Handler()
	authed := proxy.New(st.cfg, st.store, st.content, st.engine, st.ups, proxy.WithLogger(log), proxy.WithAuth(pa)).Handler()

	bearer := func(user, pass string) string {
		req := httptest.NewRequest(http.MethodGet, "/token?service=airlock&scope=repository:library/bench:pull", nil)
		req.SetBasicAuth(user, pass)
		w := httptest.NewRecorder()
		authed.ServeHTTP(w, req)
		var out struct {
			Token string `json:"token"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &out) != nil || out.Token == "" {
			b.Fatalf("GET /token as %s: %d %s", user, w.Code, w.Body)
		}
		return "Bearer " + out.Token
	}
	basic := httptest.NewRequest(http.MethodGet, "/", nil)
	basic.SetBasicAuth("alice", "alice-pw")
	modes := []struct {
		name, authorization string
	}{
		{"bearer-htpasswd", bearer("alice", "alice-pw")},
		{"bearer-puller-token", bearer("node1", secret)},
		{"basic-htpasswd", basic.Header.Get("Authorization")},
	}
	for _, m := range modes {
		on := withAuthorization(authed, m.authorization)
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/clients=%d", m.name, clients), func(b *testing.B) {
				const rounds, pairs = 5, 200
				var offLat, onLat []time.Duration
				var p50Ratios, meanRatios []float64
				for range b.N {
					for range rounds {
						o, n := measure(b, off, on, path, clients, pairs)
						offLat, onLat = append(offLat, o...), append(onLat, n...)
						op50, _, omean := stats(o)
						np50, _, nmean := stats(n)
						p50Ratios = append(p50Ratios, float64(np50)/float64(op50))
						meanRatios = append(meanRatios, float64(nmean)/float64(omean))
					}
				}
				offP50, offP99, offMean := stats(offLat)
				onP50, onP99, onMean := stats(onLat)
				b.ReportMetric(float64(offP50.Nanoseconds())/1e3, "anon-p50-µs")
				b.ReportMetric(float64(onP50.Nanoseconds())/1e3, "auth-p50-µs")
				b.ReportMetric(float64(onP99.Nanoseconds())/1e3, "auth-p99-µs")
				b.ReportMetric(100*(medianOf(p50Ratios)-1), "p50-overhead-%")
				b.ReportMetric(100*(medianOf(meanRatios)-1), "mean-overhead-%")
				b.ReportMetric(0, "ns/op")
				b.Logf("manifest GET, %s, %d clients, %d requests per mode: anonymous p50 %s p99 %s mean %s | authenticated p50 %s p99 %s mean %s | overhead p50 %+.1f%% mean %+.1f%%",
					m.name, clients, len(offLat), offP50, offP99, offMean.Round(100*time.Nanosecond), onP50, onP99, onMean.Round(100*time.Nanosecond),
					100*(medianOf(p50Ratios)-1), 100*(medianOf(meanRatios)-1))
			})
		}
	}
}

// withAuthorization serves h with the Authorization header set to v.
func withAuthorization(h http.Handler, v string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", v)
		h.ServeHTTP(w, r)
	})
}
