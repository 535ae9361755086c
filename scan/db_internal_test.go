package scan

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
)

// TestReloadWhileInFlight holds a reference to the old DB (as a running
// scan does) across a replace-and-reload, and checks that the new DB's
// data is seen at once (no stale shared-cache reads), that the old DB keeps
// answering, and that the old view goes away with its last reference.
func TestReloadWhileInFlight(t *testing.T) {
	root := t.TempDir()
	v1 := vulndbtest.Vuln{ID: "CVE-2099-0001", Severity: "High", Distro: "alpine:3.20", Package: "libfoo", Ecosystem: "apk", Fix: "1.0.1-r0"}
	v2 := vulndbtest.Vuln{ID: "CVE-2099-0002", Severity: "Low", Distro: "alpine:3.20", Package: "libfoo", Ecosystem: "apk", Fix: "1.0.2-r0"}
	vulndbtest.Build(t, root, v1)
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img := registrytest.AlpineImage(t, "3.20.3", registrytest.Pkg{Name: "libfoo", Version: "1.0.0-r0"})
	var first *Result
	count := func() int {
		t.Helper()
		res, err := s.Scan(context.Background(), img, "alpine")
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if first == nil {
			first = res
		}
		return len(res.Matches)
	}
	if n := count(); n != 1 {
		t.Fatalf("before reload: %d matches, want 1", n)
	}

	old, err := s.acquire() // an in-flight scan
	if err != nil {
		t.Fatal(err)
	}
	// Replace the DB on disk in place, as another process would.
	vulndbtest.Build(t, root, v1, v2)
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if n := count(); n != 2 {
		t.Errorf("after reload: %d matches, want 2 (stale read of the old DB?)", n)
	}
	if old.viewDir == s.cur.viewDir {
		t.Fatal("reload reused the old view")
	}
	// The in-flight holder still matches against its own (old) DB.
	again := &Result{SyftJSON: first.SyftJSON}
	if err := s.match(context.Background(), old, again); err != nil {
		t.Errorf("match on the old DB after reload: %v", err)
	} else if len(again.Matches) != 1 {
		t.Errorf("old DB after reload: %d matches, want 1", len(again.Matches))
	}
	if _, err := os.Stat(old.viewDir); err != nil {
		t.Errorf("old view removed while in use: %v", err)
	}
	old.release()
	if _, err := os.Stat(old.viewDir); !os.IsNotExist(err) {
		t.Errorf("old view %s still there after its last release (%v)", old.viewDir, err)
	}
}

// TestStaleViewsRemoved: views left by a Scanner that was never closed are
// removed by the next New, but views in use are kept.
func TestStaleViewsRemoved(t *testing.T) {
	root := t.TempDir()
	vulndbtest.Build(t, root)
	stale := filepath.Join(root, openDirName, "db-stale")
	if err := os.MkdirAll(filepath.Join(stale, "6"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale view not removed (%v)", err)
	}
	b, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(a.cur.viewDir); err != nil {
		t.Errorf("a second New removed the first Scanner's live view: %v", err)
	}
}
