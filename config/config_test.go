package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// writeConfig writes body to a fresh airlock.yaml and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadYAML loads yaml from a fresh airlock.yaml. With wantErr it fails
// unless Load's error contains wantErr, and returns nil; without, it
// fails on any error.
func loadYAML(t *testing.T, yaml, wantErr string) *Config {
	t.Helper()
	c, err := Load(writeConfig(t, yaml))
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("Load:\n%s\n= %v, want an error containing %q", yaml, err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatalf("Load:\n%s\n= %v", yaml, err)
	}
	return c
}

// noEnvToken makes sure a token in the developer's environment does not
// leak into a test.
func noEnvToken(t *testing.T) {
	t.Helper()
	t.Setenv("AIRLOCK_ADMIN_TOKEN", "")
}

func TestDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if c.Listen != ":5000" || c.DataDir != "./data" || c.Admin.Listen != "127.0.0.1:5001" {
		t.Errorf("listen/data_dir/admin.listen = %q %q %q", c.Listen, c.DataDir, c.Admin.Listen)
	}
	if c.Admin.Token != "" {
		t.Errorf("default admin token = %q, want empty", c.Admin.Token)
	}
	if len(c.Upstreams) != 1 {
		t.Fatalf("default upstreams = %+v", c.Upstreams)
	}
	u := c.Upstreams[0]
	if u.Name != "docker.io" || u.URL != "https://registry-1.docker.io" || !u.Default || u.Insecure || len(u.Allow) != 0 {
		t.Errorf("default upstream = %+v", u)
	}
	if c.Gate.Policy != PolicyScan || c.Policy.FailOn != SeverityCritical || c.Gate.TagMode != TagModeLastApproved || c.Gate.Hold <= 0 || c.Gate.Hold > 10*time.Second {
		t.Errorf("gate defaults = %+v", c.Gate)
	}
	if c.Storage.Driver != "filesystem" {
		t.Errorf("storage.driver = %q", c.Storage.Driver)
	}
	// Well above a real grype v6 database, so that it only stops bombs.
	if c.Scan.DBMaxSize != 4<<30 {
		t.Errorf("scan.db_max_size = %s, want 4 GiB", c.Scan.DBMaxSize)
	}
}

func TestLoadEmptyPathIsDefaults(t *testing.T) {
	noEnvToken(t)
	c, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\") = %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load(\"\") = %+v\nwant %+v", c, Default())
	}
}

func TestLoadEmptyFileIsDefaults(t *testing.T) {
	noEnvToken(t)
	for _, body := range []string{"", "# only a comment\n", "---\n"} {
		c, err := Load(writeConfig(t, body))
		if err != nil {
			t.Fatalf("Load(%q) = %v", body, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Load(%q) = %+v\nwant the defaults", body, c)
		}
	}
}

func TestLoadExampleConfig(t *testing.T) {
	noEnvToken(t)
	c, err := Load("../airlock.example.yaml")
	if err != nil {
		t.Fatalf("the example config does not load: %v", err)
	}
	// It starts as it is: no key names a file the user has to create
	// first (those are commented out in it).
	if err := c.CheckFiles(); err != nil {
		t.Errorf("the example config names a file that does not exist: %v", err)
	}
	if c.Gate.Policy != Default().Gate.Policy || c.Scan.DBMaxSize != Default().Scan.DBMaxSize {
		t.Errorf("the example's gate.policy %q / scan.db_max_size %s are not the defaults it claims", c.Gate.Policy, c.Scan.DBMaxSize)
	}
	if len(c.Upstreams) < 2 {
		t.Errorf("the example should show more than one upstream, got %d", len(c.Upstreams))
	}
}

// TestExampleConfigHasEveryKey keeps airlock.example.yaml complete: every
// yaml key of Config must appear in it (for upstreams, in some entry).
func TestExampleConfigHasEveryKey(t *testing.T) {
	b, err := os.ReadFile("../airlock.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(typ reflect.Type, node any, prefix string)
	walk = func(typ reflect.Type, node any, prefix string) {
		m, _ := node.(map[string]any)
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			v, ok := m[key]
			if !ok {
				missing = append(missing, prefix+key)
				continue
			}
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
				walk(ft, v, prefix+key+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				// Each key must appear in at least one list entry.
				list, _ := v.([]any)
				merged := map[string]any{}
				for _, item := range list {
					if im, ok := item.(map[string]any); ok {
						for k, iv := range im {
							merged[k] = iv
						}
					}
				}
				walk(ft.Elem(), merged, prefix+key+"[].")
			}
		}
	}
	walk(reflect.TypeOf(Config{}), doc, "")
	// Keys that name files the user creates first are shown commented
	// out ("# keys: [...]"), so that the example starts as it is.
	notShown := missing[:0]
	for _, k := range missing {
		last := k[strings.LastIndex(k, ".")+1:]
		if !regexp.MustCompile(`(?m)^\s*#\s*(- )?` + regexp.QuoteMeta(last) + `:`).Match(b) {
			notShown = append(notShown, k)
		}
	}
	if len(notShown) > 0 {
		t.Errorf("airlock.example.yaml does not show these keys: %s", strings.Join(notShown, ", "))
	}
}

func TestLoadOverlaysDefaults(t *testing.T) {
	noEnvToken(t)
	p := writeConfig(t, `
listen: "127.0.0.1:6000"
gate:
  hold: 10s
  tag_mode: strict
  platforms: [linux/amd64, linux/arm64/v8]
upstreams:
  - name: ghcr.io
    alias: ghcr
    url: https://ghcr.io
    allow: ["myorg/**"]
  - name: localhost:5002
    url: http://127.0.0.1:5002
    insecure: true
    default: true
`)
	c, err := Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Listen != "127.0.0.1:6000" {
		t.Errorf("listen = %q", c.Listen)
	}
	if c.Gate.Hold != 10*time.Second || c.Gate.TagMode != TagModeStrict {
		t.Errorf("gate = %+v", c.Gate)
	}
	// Keys the file does not set keep their defaults.
	d := Default()
	if c.DataDir != d.DataDir || c.Admin.Listen != d.Admin.Listen || c.Gate.Policy != d.Gate.Policy ||
		c.Gate.Workers != d.Gate.Workers || c.Gate.Retry != d.Gate.Retry || c.Gate.TagTTL != d.Gate.TagTTL {
		t.Errorf("defaults lost: %+v", c)
	}
	// A listed upstreams section replaces the default list.
	if len(c.Upstreams) != 2 || c.Upstreams[0].Name != "ghcr.io" || c.Upstreams[1].Name != "localhost:5002" {
		t.Fatalf("upstreams = %+v", c.Upstreams)
	}
	if c.Upstreams[0].Default || !c.Upstreams[1].Default || !c.Upstreams[1].Insecure {
		t.Errorf("upstream flags = %+v", c.Upstreams)
	}
}

func TestLoadWithoutUpstreamsKeepsDockerHub(t *testing.T) {
	noEnvToken(t)
	c, err := Load(writeConfig(t, "listen: \":5005\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Upstreams, Default().Upstreams) {
		t.Errorf("upstreams = %+v, want the default Docker Hub upstream", c.Upstreams)
	}
}

func TestLoadMissingFile(t *testing.T) {
	noEnvToken(t)
	p := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load(missing) = %v, want an error naming %s", err, p)
	}
}

// TestValidationErrorsNameFieldAndFile loads broken files and checks that
// the error names both the offending field and the file.
func TestValidationErrorsNameFieldAndFile(t *testing.T) {
	noEnvToken(t)
	const hub = "upstreams:\n  - name: docker.io\n    url: https://registry-1.docker.io\n    default: true\n"
	tests := []struct {
		name  string
		yaml  string
		field string // must appear in the error
	}{
		{"empty listen", `listen: ""`, "listen:"},
		{"listen without port", `listen: "localhost"`, "listen:"},
		{"listen port out of range", `listen: ":70000"`, "listen:"},
		{"admin listen without port", "admin:\n  listen: \"127.0.0.1\"", "admin.listen:"},
		{"empty data_dir", `data_dir: ""`, "data_dir:"},
		{"empty storage driver", "storage:\n  driver: \"\"", "storage.driver:"},
		{"no upstreams", "upstreams: []", "upstreams:"},
		{"two defaults", hub + "  - name: ghcr.io\n    url: https://ghcr.io\n    default: true\n", "only one upstream may be the default"},
		{"duplicate name", hub + "  - name: docker.io\n    url: https://mirror.gcr.io\n", "upstreams[1]: name or alias \"docker.io\""},
		{"duplicate alias", "upstreams:\n  - name: ghcr.io\n    alias: gh\n    url: https://ghcr.io\n  - name: quay.io\n    alias: gh\n    url: https://quay.io\n", "upstreams[1]: name or alias \"gh\""},
		{"alias equals another name", hub + "  - name: quay.io\n    alias: docker.io\n    url: https://quay.io\n", "upstreams[1]: name or alias \"docker.io\""},
		{"empty name", "upstreams:\n  - url: https://ghcr.io\n", "upstreams[0].name:"},
		{"name with a path", "upstreams:\n  - name: ghcr.io/x\n    url: https://ghcr.io\n", "upstreams[0].name:"},
		{"name with a space", "upstreams:\n  - name: \"ghcr io\"\n    url: https://ghcr.io\n", "upstreams[0].name:"},
		{"name with empty port", "upstreams:\n  - name: \"localhost:\"\n    url: https://ghcr.io\n", "upstreams[0].name:"},
		{"alias uppercase", "upstreams:\n  - name: ghcr.io\n    alias: GHCR\n    url: https://ghcr.io\n", "upstreams[0].alias:"},
		{"alias with slash", "upstreams:\n  - name: ghcr.io\n    alias: a/b\n    url: https://ghcr.io\n", "upstreams[0].alias:"},
		{"missing url", "upstreams:\n  - name: ghcr.io\n", "upstreams[0].url:"},
		{"ftp url", "upstreams:\n  - name: ghcr.io\n    url: ftp://ghcr.io\n", "upstreams[0].url:"},
		{"url without host", "upstreams:\n  - name: ghcr.io\n    url: https://\n", "upstreams[0].url:"},
		{"http url without insecure", "upstreams:\n  - name: localhost:5002\n    url: http://127.0.0.1:5002\n", "upstreams[0].url:"},
		{"password env and file", "upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    password_env: X\n    password_file: /x\n", "upstreams[0].password_env:"},
		{"bad glob", "upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    allow: [\"myorg/[\"]\n", "upstreams[0].allow[0]:"},
		{"empty glob", "upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    allow: [\"library/*\", \"\"]\n", "upstreams[0].allow[1]:"},
		{"bad policy", "gate:\n  policy: yolo", "gate.policy:"},
		{"bad tag_mode", "gate:\n  tag_mode: newest", "gate.tag_mode:"},
		{"negative hold", "gate:\n  hold: -1s", "gate.hold:"},
		{"too long hold", "gate:\n  hold: 6m", "gate.hold:"},
		{"negative tag_ttl", "gate:\n  tag_ttl: -1s", "gate.tag_ttl:"},
		{"zero workers", "gate:\n  workers: 0", "gate.workers:"},
		{"too many workers", "gate:\n  workers: 1000", "gate.workers:"},
		{"platform without arch", "gate:\n  platforms: [linux]", "gate.platforms[0]:"},
		{"platform empty arch", "gate:\n  platforms: [linux/amd64, \"linux/\"]", "gate.platforms[1]:"},
		{"platform too long", "gate:\n  platforms: [linux/arm/v7/x]", "gate.platforms[0]:"},
		{"zero attempts", "gate:\n  retry:\n    max_attempts: 0", "gate.retry.max_attempts:"},
		{"zero backoff", "gate:\n  retry:\n    backoff: 0s", "gate.retry:"},
		{"max_backoff below backoff", "gate:\n  retry:\n    backoff: 1m\n    max_backoff: 1s", "gate.retry:"},
		{"bad log format", "log:\n  format: xml", "log.format:"},
		{"bad log level", "log:\n  level: trace", "log.level:"},
		{"tiny manifest limit", "limits:\n  max_manifest_bytes: 10", "limits.max_manifest_bytes:"},
		{"tiny db_max_size", "scan:\n  db_max_size: 4", "scan.db_max_size:"},
		{"zero db_max_size", "scan:\n  db_max_size: 0", "scan.db_max_size:"},
		{"db_max_size not a size", "scan:\n  db_max_size: huge", "huge"},
		// Decoding errors: unknown keys (typos) and wrong types.
		{"unknown top-level key", "lisen: \":5000\"", "lisen"},
		{"unknown nested key", "gate:\n  holdd: 1s", "holdd"},
		{"unknown upstream key", "upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    pasword_env: X\n", "pasword_env"},
		{"bad duration", "gate:\n  hold: soon", "soon"},
		{"wrong type", "gate:\n  workers: many", "many"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.yaml)
			_, err := Load(p)
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tt.yaml)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field) {
				t.Errorf("error %q does not name %q", msg, tt.field)
			}
			if !strings.Contains(msg, p) {
				t.Errorf("error %q does not name the file %s", msg, p)
			}
		})
	}
}

// TestValidateTable runs Validate on edited defaults, without a file.
func TestValidateTable(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"hold zero", func(c *Config) { c.Gate.Hold = 0 }, ""},
		{"hold at the limit", func(c *Config) { c.Gate.Hold = 5 * time.Minute }, ""},
		{"hold over the limit", func(c *Config) { c.Gate.Hold = 5*time.Minute + 1 }, "gate.hold:"},
		{"auto policy", func(c *Config) { c.Gate.Policy = PolicyAuto }, ""},
		{"strict", func(c *Config) { c.Gate.TagMode = TagModeStrict }, ""},
		{"empty tag_mode", func(c *Config) { c.Gate.TagMode = "" }, "gate.tag_mode:"},
		{"empty policy", func(c *Config) { c.Gate.Policy = "" }, "gate.policy:"},
		{"platform with variant", func(c *Config) { c.Gate.Platforms = []string{"linux/arm/v7"} }, ""},
		{"platform empty os", func(c *Config) { c.Gate.Platforms = []string{"/amd64"} }, "gate.platforms[0]:"},
		{"host with port", func(c *Config) {
			c.Upstreams = append(c.Upstreams, Upstream{Name: "localhost:5002", URL: "http://localhost:5002", Insecure: true})
		}, ""},
		{"host with bad port", func(c *Config) {
			c.Upstreams = append(c.Upstreams, Upstream{Name: "localhost:50x", URL: "https://localhost:5002"})
		}, "upstreams[1].name:"},
		{"no default upstream is fine", func(c *Config) { c.Upstreams[0].Default = false }, ""},
		{"json log", func(c *Config) { c.Log.Format = "json"; c.Log.Level = "debug" }, ""},
		{"valid globs", func(c *Config) { c.Upstreams[0].Allow = []string{"library/*", "myorg/**", "**/tools", "a?c/[a-z]*"} }, ""},
		{"db_max_size at the minimum", func(c *Config) { c.Scan.DBMaxSize = 1 << 20 }, ""},
		{"db_max_size under the minimum", func(c *Config) { c.Scan.DBMaxSize = 1<<20 - 1 }, "scan.db_max_size:"},
		{"notation rule", func(c *Config) {
			c.Signatures.Rules = []SignatureRule{{Mode: VerifyRequired, Notation: &NotationTrust{TrustPolicy: "p.json", TrustStore: "ts"}}}
		}, ""},
		{"notation rule without a store", func(c *Config) {
			c.Signatures.Rules = []SignatureRule{{Mode: VerifyRequired, Notation: &NotationTrust{TrustPolicy: "p.json"}}}
		}, "signatures.rules[0].notation:"},
		{"require both with both", func(c *Config) {
			c.Signatures.Rules = []SignatureRule{{Mode: VerifyRequired, Keys: []string{"k.pub"}, Require: RequireBoth, Notation: &NotationTrust{TrustPolicy: "p.json", TrustStore: "ts"}}}
		}, ""},
		{"require both without notation", func(c *Config) {
			c.Signatures.Rules = []SignatureRule{{Mode: VerifyRequired, Keys: []string{"k.pub"}, Require: RequireBoth}}
		}, "signatures.rules[0].require:"},
		{"require notation with cosign keys only", func(c *Config) {
			c.Signatures.Rules = []SignatureRule{{Mode: VerifyIfPresent, Keys: []string{"k.pub"}, Require: RequireNotation}}
		}, "signatures.rules[0].require:"},
		{"require unknown", func(c *Config) {
			c.Signatures.Rules = []SignatureRule{{Mode: VerifyRequired, Keys: []string{"k.pub"}, Require: "any"}}
		}, "signatures.rules[0].require:"},
		{"notation signing", func(c *Config) {
			c.Signing.Key = "airlock.key"
			c.Signing.Notation = &NotationSigning{Key: "n.key", CertificateChain: "n.pem", Format: "cose"}
		}, ""},
		{"notation signing without cosign", func(c *Config) {
			c.Signing.Notation = &NotationSigning{Key: "n.key", CertificateChain: "n.pem"}
		}, "signing.notation:"},
		{"notation signing bad format", func(c *Config) {
			c.Signing.Key = "airlock.key"
			c.Signing.Notation = &NotationSigning{Key: "n.key", CertificateChain: "n.pem", Format: "pgp"}
		}, "signing.notation.format:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(c)
			err := c.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error naming %q", tt.field)
			case tt.field != "" && !strings.Contains(err.Error(), tt.field):
				t.Fatalf("Validate() = %q, want it to name %q", err, tt.field)
			}
		})
	}
}

func TestEnvTokenOverridesFile(t *testing.T) {
	p := writeConfig(t, "admin:\n  token: from-file\n")

	t.Setenv("AIRLOCK_ADMIN_TOKEN", "")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "from-file" {
		t.Errorf("token = %q, want from-file", c.Admin.Token)
	}

	t.Setenv("AIRLOCK_ADMIN_TOKEN", "from-env")
	if c, err = Load(p); err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "from-env" {
		t.Errorf("token = %q, want from-env", c.Admin.Token)
	}
	if c, err = Load(""); err != nil {
		t.Fatal(err)
	}
	if c.Admin.Token != "from-env" {
		t.Errorf("defaults: token = %q, want from-env", c.Admin.Token)
	}
}

func TestAllows(t *testing.T) {
	tests := []struct {
		allow []string
		repo  string
		want  bool
	}{
		// An empty list allows everything.
		{nil, "library/alpine", true},
		{nil, "any/deep/repo", true},
		{[]string{}, "x", true},
		// "*" matches within one path component.
		{[]string{"library/*"}, "library/alpine", true},
		{[]string{"library/*"}, "library/alpine/extra", false},
		{[]string{"library/*"}, "library", false},
		{[]string{"library/*"}, "other/alpine", false},
		{[]string{"library/*"}, "librar/alpine", false},
		{[]string{"library/alp*"}, "library/alpine", true},
		{[]string{"library/alp*"}, "library/busybox", false},
		{[]string{"*/*"}, "a/b", true},
		{[]string{"*/*"}, "a/b/c", false},
		{[]string{"*"}, "alpine", true},
		{[]string{"*"}, "library/alpine", false},
		// "**" matches any number of components, including none.
		{[]string{"myorg/**"}, "myorg/app", true},
		{[]string{"myorg/**"}, "myorg/team/app/sub", true},
		{[]string{"myorg/**"}, "myorg", true},
		{[]string{"myorg/**"}, "myorgx/app", false},
		{[]string{"myorg/**"}, "other/myorg/app", false},
		{[]string{"**"}, "anything/at/all", true},
		{[]string{"**/tools"}, "tools", true},
		{[]string{"**/tools"}, "a/b/tools", true},
		{[]string{"**/tools"}, "a/b/tools2", false},
		{[]string{"myorg/**/tools"}, "myorg/tools", true},
		{[]string{"myorg/**/tools"}, "myorg/a/b/tools", true},
		{[]string{"myorg/**/tools"}, "myorg/a/b/toolsx", false},
		// Exact names.
		{[]string{"library/alpine"}, "library/alpine", true},
		{[]string{"library/alpine"}, "library/alpine2", false},
		{[]string{"library/alpine"}, "library/alpin", false},
		{[]string{"library/alpine"}, "library/alpine/x", false},
		// Any pattern of the list may match.
		{[]string{"library/alpine", "myorg/**"}, "myorg/x", true},
		{[]string{"library/alpine", "myorg/**"}, "library/nginx", false},
	}
	for _, tt := range tests {
		u := Upstream{Name: "docker.io", Allow: tt.allow}
		if got := u.Allows(tt.repo); got != tt.want {
			t.Errorf("Allow %q: Allows(%q) = %v, want %v", tt.allow, tt.repo, got, tt.want)
		}
	}
}

func TestPassword(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		pw, err := Upstream{Name: "ghcr.io"}.Password()
		if err != nil || pw != "" {
			t.Fatalf("Password() = %q, %v", pw, err)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("AIRLOCK_TEST_PW", "s3cret")
		pw, err := Upstream{Name: "ghcr.io", PasswordEnv: "AIRLOCK_TEST_PW"}.Password()
		if err != nil || pw != "s3cret" {
			t.Fatalf("Password() = %q, %v", pw, err)
		}
	})
	t.Run("file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(p, []byte("s3cret\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		pw, err := Upstream{Name: "ghcr.io", PasswordFile: p}.Password()
		if err != nil || pw != "s3cret" {
			t.Fatalf("Password() = %q, %v", pw, err)
		}
	})
	t.Run("file keeps inner spaces", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(p, []byte(" a b \n"), 0o600); err != nil {
			t.Fatal(err)
		}
		pw, err := Upstream{Name: "ghcr.io", PasswordFile: p}.Password()
		if err != nil || pw != " a b " {
			t.Fatalf("Password() = %q, %v", pw, err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "missing")
		_, err := Upstream{Name: "ghcr.io", PasswordFile: p}.Password()
		if err == nil || !strings.Contains(err.Error(), "password_file") || !strings.Contains(err.Error(), "ghcr.io") {
			t.Fatalf("Password() error = %v, want one naming password_file and the upstream", err)
		}
	})
	t.Run("loaded from yaml", func(t *testing.T) {
		noEnvToken(t)
		t.Setenv("AIRLOCK_TEST_PW", "from-env")
		p := writeConfig(t, "upstreams:\n  - name: ghcr.io\n    url: https://ghcr.io\n    username: bot\n    password_env: AIRLOCK_TEST_PW\n")
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		pw, err := c.Upstreams[0].Password()
		if err != nil || pw != "from-env" || c.Upstreams[0].Username != "bot" {
			t.Fatalf("Password() = %q, %v (upstream %+v)", pw, err, c.Upstreams[0])
		}
	})
}

// keyPaths lists every yaml key of typ, nested keys dotted and list
// elements as "[]": "gate.retry.backoff", "upstreams[].name".
func keyPaths(typ reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		out = append(out, prefix+key)
		switch ft := f.Type; {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
			out = append(out, keyPaths(ft, prefix+key+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, keyPaths(ft.Elem(), prefix+key+"[].")...)
		}
	}
	return out
}

// TestReadmeDocumentsEveryKey keeps the README's configuration reference
// complete: every leaf key must appear there as `key`.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var missing []string
	keys := keyPaths(reflect.TypeOf(Config{}), "")
	for _, k := range keys {
		parent := slices.ContainsFunc(keys, func(o string) bool { return strings.HasPrefix(o, k+".") })
		if !parent && !strings.Contains(readme, "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("README.md's configuration reference lacks: %s", strings.Join(missing, ", "))
	}
}
