package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/gate"
	"github.com/airlockproxy/airlock/storage/state"
)

// testAdmin is the admin API the commands talk to: a real admin.Server
// over a bbolt state store in t's temporary directory and a gate.Engine
// (not running), with token as its bootstrap admin token and a logger
// that discards. Each test serves it as it needs (plain, TLS, behind the
// console); the store closes when the test ends.
func testAdmin(t *testing.T, token string) (*admin.Server, *state.Store) {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := admin.New(gate.New(st, config.Gate{}, nil), st, token, admin.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}
