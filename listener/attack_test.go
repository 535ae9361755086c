package listener

import (
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/internal/tlstest"
)

// TestMutualTLSImpostors: with client_ca_file, only certificates the
// client CA issued for client authentication open a connection. A
// server certificate of that very CA (issued for another purpose, e.g.
// a node's own HTTPS endpoint) and a client certificate of a look-alike
// CA (same name, another key) are refused at the handshake.
func TestMutualTLSImpostors(t *testing.T) {
	ca := tlstest.NewCA(t, "server CA")
	nodes := tlstest.NewCA(t, "nodes CA")
	lookalike := tlstest.NewCA(t, "nodes CA")
	s := start(t, ca.Server(t, "127.0.0.1"), nodes, Options{})
	for name, client := range map[string]*tlstest.Pair{
		"server certificate of the client CA":   nodes.Server(t, "node-1"),
		"client certificate of a look-alike CA": lookalike.Client(t, "node-1"),
	} {
		c := clientConfig(ca, client)
		if _, err := s.get(c); err == nil {
			t.Errorf("%s: answered, want refused", name)
		}
		if err := s.alert(c); err == nil || !strings.Contains(err.Error(), "remote error: tls:") {
			t.Errorf("%s: %v, want a TLS alert from the server", name, err)
		}
	}
	if n := s.hits.Load(); n != 0 {
		t.Errorf("the handler saw %d requests, want none", n)
	}
	if _, err := s.get(clientConfig(ca, nodes.Client(t, "node-1"))); err != nil {
		t.Errorf("the client CA's client certificate: %v", err)
	}
}
