package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/sign"
)

// readmeConfig returns the YAML block of deploy/README.md that starts with
// the comment line "# <file>".
func readmeConfig(t *testing.T, file string) string {
	t.Helper()
	return readmeBlock(t, "yaml", file)
}

// loadYAML loads y with the real loader, ignoring the developer's token and DSN.
func loadYAML(t *testing.T, y string) (*config.Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_ADMIN_TOKEN", "")
	t.Setenv("AIRLOCK_STATE_DSN", "")
	return config.Load(p)
}

// TestSystemdConfig: the airlock.yaml of the README's systemd steps loads,
// fits the unit (data_dir is its writable state directory, the key
// password comes from airlock.env), and once the steps have created the
// key it names, passes serve's file checks and opens with the password.
// Before, the README said to copy airlock.example.yaml, which named a
// signing key and signature keys no step created: serve refused to start.
func TestSystemdConfig(t *testing.T) {
	y := readmeConfig(t, "/etc/airlock/airlock.yaml")
	cfg, err := loadYAML(t, y)
	if err != nil {
		t.Fatalf("the README's airlock.yaml does not load: %v", err)
	}
	u := parseUnit(t, "systemd/airlock.service")
	if rw := u["Service"]["ReadWritePaths"]; len(rw) == 0 || rw[len(rw)-1] != cfg.DataDir {
		t.Errorf("data_dir %s is not the unit's ReadWritePaths %v", cfg.DataDir, rw)
	}
	env := parseEnvFile(t, "systemd/airlock.env.example")
	if _, ok := env[cfg.Signing.PasswordEnv]; !ok || cfg.Signing.PasswordEnv == "" {
		t.Errorf("signing.password_env %q is not set in airlock.env.example", cfg.Signing.PasswordEnv)
	}
	readme, _ := os.ReadFile("README.md")
	gen := regexp.MustCompile(`airlock keys generate --dir (\S+?)\)?\n`).FindSubmatch(readme)
	if gen == nil || string(gen[1]) != filepath.Dir(cfg.Signing.Key) {
		t.Fatalf("the steps do not create signing.key %s with `airlock keys generate --dir %s`", cfg.Signing.Key, filepath.Dir(cfg.Signing.Key))
	}

	// Do what the steps do, in a directory standing in for /etc/airlock.
	etc := t.TempDir()
	const password = "correct horse battery staple"
	priv, pub, err := sign.GenerateKeyPair([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"airlock.key": priv, "airlock.pub": pub} {
		if err := os.WriteFile(filepath.Join(etc, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err = loadYAML(t, strings.ReplaceAll(y, "/etc/airlock", etc))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckFiles(); err != nil {
		t.Fatalf("after the steps, serve would refuse the config: %v", err)
	}
	t.Setenv(cfg.Signing.PasswordEnv, password)
	pw, err := cfg.Signing.Password()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(cfg.Signing.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.LoadSigner(pem, pw); err != nil {
		t.Errorf("the signing key does not open with the password from %s: %v", cfg.Signing.PasswordEnv, err)
	}
}

// TestExampleConfigStarts: airlock.example.yaml, which the README points
// to, loads and names no file a user must create first, so `airlock serve
// --config` starts on it as it is (e2e's TestHygieneExampleConfigStarts
// runs it).
func TestExampleConfigStarts(t *testing.T) {
	b, err := os.ReadFile("../airlock.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadYAML(t, string(b))
	if err != nil {
		t.Fatalf("airlock.example.yaml does not load: %v", err)
	}
	if err := cfg.CheckFiles(); err != nil {
		t.Errorf("airlock.example.yaml names a file that does not exist: %v", err)
	}
}
