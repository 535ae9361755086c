package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/registrytest"
)

// runServe runs `airlock serve --config file` expecting it to exit on its
// own within timeout, and returns its combined output and exit error.
func runServe(t *testing.T, file string, timeout time.Duration) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, airlockBin, "serve", "--config", file)
	cmd.Env = childEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	el := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("airlock serve --config %s was still running after %s (killed); output:\n%s", file, timeout, out.String())
	}
	return out.String(), el, err
}

// TestServeConfigErrors: a bad config file or a data_dir in use by another
// airlock makes `airlock serve` exit non-zero, quickly, saying why.
func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	base := func(dataDir string, regPort, adminPort int, upstreamURL string) string {
		return fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %q
admin:
  listen: 127.0.0.1:%d
  token: t
upstreams:
  - name: docker.io
    url: %q
    default: true
    insecure: true
`, regPort, dataDir, adminPort, upstreamURL)
	}
	for _, tc := range []struct {
		name   string
		config func(dir string) string
		want   []string
	}{
		{
			name: "unknown key",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "http://127.0.0.1:1") + "gate:\n  hodl: 1s\n"
			},
			want: []string{"hodl"},
		},
		{
			name: "unknown top-level key",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "http://127.0.0.1:1") + "upstream_timeout: 3s\n"
			},
			want: []string{"upstream_timeout"},
		},
		{
			name: "bad upstream URL",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "ftp://registry.example")
			},
			want: []string{"upstreams[0].url", "ftp://registry.example"},
		},
		{
			name: "upstream URL without host",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "not a url")
			},
			want: []string{"upstreams[0].url"},
		},
		{
			name: "bad policy",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "http://127.0.0.1:1") + "gate:\n  policy: yolo\n"
			},
			want: []string{"gate.policy", "yolo"},
		},
		{
			name: "postgres without a dsn",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "http://127.0.0.1:1") + "state:\n  driver: postgres\n"
			},
			want: []string{"state.dsn", "AIRLOCK_STATE_DSN"},
		},
		{
			name: "fail_static on bbolt",
			config: func(dir string) string {
				return base(dir, freePort(t), freePort(t), "http://127.0.0.1:1") + "state:\n  fail_static: 5m\n"
			},
			want: []string{"state.fail_static", "postgres"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := filepath.Join(dir, "airlock.yaml")
			if err := os.WriteFile(file, []byte(tc.config(filepath.Join(dir, "data"))), 0o600); err != nil {
				t.Fatal(err)
			}
			out, el, err := runServe(t, file, 20*time.Second)
			if !isExitError(err) {
				t.Fatalf("airlock serve exited with %v, want a non-zero exit; output:\n%s", err, out)
			}
			if el > 10*time.Second {
				t.Errorf("airlock serve took %s to refuse the config", el)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if !strings.Contains(out, file) {
				t.Errorf("output does not name the config file %s:\n%s", file, out)
			}
			t.Logf("%s: %s", tc.name, strings.TrimSpace(out))
		})
	}

	// A database that cannot be reached stops the start at once, saying
	// so, and never prints the DSN (its password least of all).
	t.Run("state database unreachable", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		file := filepath.Join(dir, "airlock.yaml")
		cfg := base(filepath.Join(dir, "data"), freePort(t), freePort(t), "http://127.0.0.1:1") +
			"state:\n  driver: postgres\n  dsn: \"postgres://airlock:pw-s3cr3t-x@127.0.0.1:1/airlock?sslmode=disable\"\n"
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out, el, err := runServe(t, file, 40*time.Second)
		if !isExitError(err) {
			t.Fatalf("airlock serve exited with %v, want non-zero; output:\n%s", err, out)
		}
		if !strings.Contains(out, "state database") {
			t.Errorf("output does not say the state database is the problem:\n%s", out)
		}
		if strings.Contains(out, "pw-s3cr3t-x") {
			t.Errorf("output prints the DSN's password:\n%s", out)
		}
		t.Logf("after %s: %s", el.Round(time.Millisecond), strings.TrimSpace(out))
	})

	t.Run("data_dir locked", func(t *testing.T) {
		t.Parallel()
		up := registrytest.NewUpstream(t)
		first := startAirlock(t, up, options{})
		dir := t.TempDir()
		file := filepath.Join(dir, "second.yaml")
		if err := os.WriteFile(file, []byte(base(first.DataDir, freePort(t), freePort(t), up.URL())), 0o600); err != nil {
			t.Fatal(err)
		}
		out, el, err := runServe(t, file, 30*time.Second)
		if !isExitError(err) {
			t.Fatalf("second airlock on the same data_dir exited with %v, want non-zero; output:\n%s", err, out)
		}
		if el > 15*time.Second {
			t.Errorf("second airlock took %s to give up", el)
		}
		if !strings.Contains(out, "locked") || !strings.Contains(out, "airlock.db") {
			t.Errorf("second airlock's output does not say the state file is locked:\n%s", out)
		}
		t.Logf("second airlock: %s", strings.TrimSpace(out))
		// The first one is unharmed.
		if first.exited() {
			t.Fatal("the first airlock exited")
		}
		if r := doHTTP(t, "GET", first.AdminURL+"/readyz", nil, nil); r.Status != 200 {
			t.Errorf("first airlock /readyz = %d after the second one tried the same data_dir", r.Status)
		}
		first.Stop(t)
	})
}
