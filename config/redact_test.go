package config

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var updateFields = flag.Bool("update-fields", false, "rewrite testdata/fields.txt with the fields of Config (new ones as unclassified)")

// fieldClasses is testdata/fields.txt: every string-valued field of Config,
// by its YAML path, and what Redacted does with it: "public" (shown as
// is), "secret" (never shown) or "part" (a part is hidden: user info of a
// URL, a DSN's password, credential parameters; tested one by one below).
func fieldClasses(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("testdata/fields.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, class, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("testdata/fields.txt: %q: want <path> <class>", line)
		}
		out[path] = class
	}
	return out
}

// stringFields calls visit for every string-valued field under v (a
// string, []string or a map of strings), by YAML path. With fill, nil
// pointers, slices and maps on the way are made (a slice gets one
// element) so that every field is reached and can be set.
func stringFields(v reflect.Value, path string, fill bool, visit func(path string, v reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			if !fill {
				return
			}
			v.Set(reflect.New(v.Type().Elem()))
		}
		stringFields(v.Elem(), path, fill, visit)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			p := path
			if opts != "inline" {
				p = strings.TrimPrefix(path+"."+name, ".")
			}
			stringFields(v.Field(i), p, fill, visit)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String {
			visit(path, v)
			return
		}
		if fill && v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		if v.Len() > 0 {
			stringFields(v.Index(0), path+"[]", fill, visit)
		}
	case reflect.Map:
		visit(path, v)
	case reflect.String:
		visit(path, v)
	}
}

// TestRedactedClassifiesEveryField: every string field of Config is in
// testdata/fields.txt, so a new field cannot reach GET /api/v1/settings
// before someone decided whether it is a secret. Then, with every field
// set to a value naming it, the redacted YAML shows each public one and
// none of the secret ones.
func TestRedactedClassifiesEveryField(t *testing.T) {
	classes := fieldClasses(t)
	var c Config
	var paths []string
	stringFields(reflect.ValueOf(&c).Elem(), "", true, func(path string, v reflect.Value) {
		paths = append(paths, path)
		mark := "S3NTINEL-" + path
		switch v.Kind() {
		case reflect.String:
			v.SetString(mark)
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{mark}))
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			m.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf(mark).Convert(v.Type().Elem()))
			v.Set(m)
		}
	})
	if *updateFields {
		var b strings.Builder
		b.WriteString("# Every string field of config.Config and what Config.Redacted does with it\n# (public, secret, part): see redact_test.go.\n")
		for _, p := range paths {
			class := classes[p]
			if class == "" {
				class = "UNCLASSIFIED"
			}
			fmt.Fprintf(&b, "%s %s\n", p, class)
		}
		if err := os.WriteFile("testdata/fields.txt", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range paths {
		switch classes[p] {
		case "public", "secret", "part":
		default:
			t.Errorf("config field %s is not classified in testdata/fields.txt (public, secret or part): is it a secret?", p)
		}
	}
	for p := range classes {
		if !slices.Contains(paths, p) {
			t.Errorf("testdata/fields.txt lists %s, which Config no longer has", p)
		}
	}
	out, err := yaml.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		shown := strings.Contains(string(out), "S3NTINEL-"+p+"\n") || strings.Contains(string(out), "S3NTINEL-"+p+"\"")
		switch classes[p] {
		case "public":
			if !shown {
				t.Errorf("public field %s is not shown", p)
			}
		case "secret":
			if strings.Contains(string(out), "S3NTINEL-"+p) {
				t.Errorf("secret field %s is shown", p)
			}
		}
	}
	// Redacted works on a copy: the configuration itself keeps its values.
	if c.Admin.Token != "S3NTINEL-admin.token" || c.Events.Webhooks[0].URL != "S3NTINEL-events.webhooks[].url" {
		t.Errorf("Redacted changed the configuration it was called on")
	}
}

// TestRedactedParts: what of a partly secret value is hidden.
func TestRedactedParts(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   func(*Config)
		got  func(Config) string
		want string
	}{
		{"dsn url password", func(c *Config) { c.State.DSN = "postgres://airlock:hunter2@db:5432/airlock?sslmode=require" },
			func(c Config) string { return c.State.DSN }, "postgres://airlock:REDACTED@db:5432/airlock?sslmode=require"},
		{"dsn url without password", func(c *Config) { c.State.DSN = "postgres://airlock@db/airlock" },
			func(c Config) string { return c.State.DSN }, "postgres://airlock@db/airlock"},
		{"dsn url password parameter", func(c *Config) { c.State.DSN = "postgres://db/airlock?password=hunter2&user=a" },
			func(c Config) string { return c.State.DSN }, "postgres://db/airlock?password=REDACTED&user=a"},
		{"dsn key=value", func(c *Config) { c.State.DSN = "host=db user=airlock password=hunter2 dbname=airlock" },
			func(c Config) string { return c.State.DSN }, "host=db user=airlock password=REDACTED dbname=airlock"},
		{"dsn key=value quoted", func(c *Config) { c.State.DSN = `host=db password='hun ter\'2' dbname=airlock` },
			func(c Config) string { return c.State.DSN }, "host=db password=REDACTED dbname=airlock"},
		{"dsn key = value", func(c *Config) { c.State.DSN = "host=db PASSWORD = hunter2" },
			func(c Config) string { return c.State.DSN }, "host=db PASSWORD = REDACTED"},
		{"upstream user info", func(c *Config) { c.Upstreams = []Upstream{{URL: "https://bot:hunter2@registry.example.com/v2"}} },
			func(c Config) string { return c.Upstreams[0].URL }, "https://REDACTED@registry.example.com/v2"},
		{"upstream plain", func(c *Config) { c.Upstreams = []Upstream{{URL: "https://registry-1.docker.io"}} },
			func(c Config) string { return c.Upstreams[0].URL }, "https://registry-1.docker.io"},
		{"slack webhook", func(c *Config) {
			c.Events.Webhooks = []Webhook{{URL: "https://hooks.slack.com/services/T000/B000/XXXXSECRET"}}
		}, func(c Config) string { return c.Events.Webhooks[0].URL }, "https://hooks.slack.com/REDACTED"},
		{"webhook with a query", func(c *Config) { c.Events.Webhooks = []Webhook{{URL: "https://ci.example.com?token=x"}} },
			func(c Config) string { return c.Events.Webhooks[0].URL }, "https://ci.example.com/REDACTED"},
		{"webhook host only", func(c *Config) { c.Events.Webhooks = []Webhook{{URL: "https://ci.example.com"}} },
			func(c Config) string { return c.Events.Webhooks[0].URL }, "https://ci.example.com"},
		{"s3 credentials", func(c *Config) {
			c.Storage.Parameters = map[string]any{"accesskey": "AKIA", "secretkey": "s3cr3t", "sessiontoken": "t", "bucket": "airlock", "region": "eu-1"}
		}, func(c Config) string {
			return fmt.Sprintf("%v %v %v %v %v", c.Storage.Parameters["accesskey"], c.Storage.Parameters["secretkey"], c.Storage.Parameters["sessiontoken"],
				c.Storage.Parameters["bucket"], c.Storage.Parameters["region"])
		}, "REDACTED REDACTED REDACTED airlock eu-1"},
		{"nested credentials", func(c *Config) {
			c.Storage.Parameters = map[string]any{"auth": map[string]any{"password": "hunter2", "user": "a"}}
		}, func(c Config) string { return fmt.Sprint(c.Storage.Parameters["auth"]) }, "map[password:REDACTED user:a]"},
		{"admin token", func(c *Config) { c.Admin.Token = "hunter2" }, func(c Config) string { return c.Admin.Token }, "REDACTED"},
		{"no admin token", func(c *Config) {}, func(c Config) string { return c.Admin.Token }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			tc.in(&c)
			if got := tc.got(c.Redacted()); got != tc.want {
				t.Errorf("redacted %q, want %q", got, tc.want)
			}
		})
	}
}
