package config

import (
	"strings"
	"testing"
)

func TestStorageS3Validation(t *testing.T) {
	ok := map[string]any{"bucket": "airlock", "region": "eu-west-1"}
	cases := []struct {
		name    string
		params  map[string]any
		wantErr string // substring; "" means valid
	}{
		{"aws region", ok, ""},
		{"endpoint without region", map[string]any{"bucket": "b", "regionendpoint": "http://127.0.0.1:9000", "secure": false, "v4auth": "true"}, ""},
		{"no bucket", map[string]any{"region": "eu-west-1"}, "storage.parameters.bucket"},
		{"no region nor endpoint", map[string]any{"bucket": "b"}, "storage.parameters.region"},
		{"bad endpoint", map[string]any{"bucket": "b", "regionendpoint": "127.0.0.1:9000"}, "storage.parameters.regionendpoint"},
		{"bad bool", map[string]any{"bucket": "b", "region": "r", "secure": "yes"}, "storage.parameters.secure"},
		{"accesskey", map[string]any{"bucket": "b", "region": "r", "accesskey": "AKIA-SECRET-VALUE"}, "storage.parameters.accesskey"},
		{"secretkey", map[string]any{"bucket": "b", "region": "r", "secretkey": "SECRET-VALUE"}, "storage.parameters.secretkey"},
		{"rootdirectory not a string", map[string]any{"bucket": "b", "region": "r", "rootdirectory": 3}, "storage.parameters.rootdirectory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.Storage = Storage{Driver: "s3", Parameters: c.params}
			err := cfg.Validate()
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Validate = %v, want an error naming %s", err, c.wantErr)
			case err != nil && strings.Contains(err.Error(), "SECRET-VALUE"):
				t.Fatalf("the error echoes a secret: %v", err)
			}
		})
	}
}
