package e2e

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// TestMaxConnections: with limits.max_connections reached by idle clients,
// a new client waits instead of being served (or crashing anything), and
// is served as soon as a connection frees up.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	up := registrytest.NewUpstream(t)
	al := startAirlock(t, up, options{Policy: "manual", Extra: "limits:\n  max_connections: 2\n"})
	var idle []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", al.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// Let the server accept both idle connections before the third client.
	time.Sleep(200 * time.Millisecond)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := client.Get(al.URL + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served past max_connections=2 (status %d)", resp.StatusCode)
	}
	idle[0].Close()
	client.Timeout = 10 * time.Second
	resp, err := client.Get(al.URL + "/v2/")
	if err != nil {
		t.Fatalf("no connection freed up after one closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %d", resp.StatusCode)
	}
}
