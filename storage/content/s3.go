package content

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	// Registers the "s3" driver (distribution's s3-aws package) with the factory.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
)

// S3DriverName is the distribution driver name of S3-compatible storage.
const S3DriverName = "s3"

// caBundleEnv is the AWS SDK's variable naming an extra CA bundle file. The
// SDK reads it while the driver creates its session.
const caBundleEnv = "AWS_CA_BUNDLE"

// ErrCredentialsInConfig is returned when S3 credentials are written into
// the storage parameters: Airlock takes them from the environment (or the
// SDK's standard chain) only, so they never sit in a config file that is
// copied around, printed or committed.
var ErrCredentialsInConfig = errors.New("S3 credentials must come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the SDK's credential chain, not from storage.parameters")

// CredentialParameters are the S3 driver parameters Airlock refuses in its
// config (see ErrCredentialsInConfig).
var CredentialParameters = []string{"accesskey", "secretkey", "sessiontoken"}

// envMu serializes the temporary removal of AWS_CA_BUNDLE around session
// creation, so that two stores created at once cannot restore each other's
// view of the variable.
var envMu sync.Mutex

// newS3Driver creates distribution's S3 driver with Airlock's rules:
// credentials only from the environment, AWS_CA_BUNDLE handled instead of
// crashing, and a panic inside the driver turned into an error. Error
// messages never include the parameters (they may hold secrets in a
// misconfigured file).
func newS3Driver(ctx context.Context, params map[string]any) (d storagedriver.StorageDriver, p *presigner, err error) {
	for _, k := range CredentialParameters {
		if v, ok := params[k]; ok && v != nil && fmt.Sprint(v) != "" {
			return nil, nil, fmt.Errorf("storage driver s3: parameter %q: %w", k, ErrCredentialsInConfig)
		}
	}
	secure, err := boolParam(params, "secure", true)
	if err != nil {
		return nil, nil, fmt.Errorf("storage driver s3: %w", err)
	}

	envMu.Lock()
	defer envMu.Unlock()
	if bundle, set := os.LookupEnv(caBundleEnv); set && bundle != "" {
		if !secure {
			// A plain-HTTP endpoint uses no TLS, so a CA bundle is
			// irrelevant; the SDK would still try to load it and fail (or
			// panic) when it is missing or unusable. Hide it from the
			// session being created and restore it for everyone else.
			os.Unsetenv(caBundleEnv)
			defer os.Setenv(caBundleEnv, bundle)
		} else if err := checkCABundle(bundle); err != nil {
			return nil, nil, fmt.Errorf("storage driver s3: %s=%s: %w (fix or unset %s, or use secure: false for a plain-HTTP endpoint)",
				caBundleEnv, bundle, err, caBundleEnv)
		}
	}

	defer func() {
		// The SDK panics on some session errors (LoadCustomCABundleError
		// among them); a bad storage config must be an error at start, not a
		// crash with a stack trace.
		if r := recover(); r != nil {
			d, p = nil, nil
			msg := fmt.Sprint(r)
			if b := os.Getenv(caBundleEnv); b != "" && strings.Contains(msg, "CABundle") {
				msg = fmt.Sprintf("%s (from %s=%s)", msg, caBundleEnv, b)
			}
			err = fmt.Errorf("storage driver s3: driver creation panicked: %s", msg)
		}
	}()
	d, err = factory.Create(ctx, S3DriverName, params)
	if err != nil {
		return nil, nil, fmt.Errorf("storage driver s3: %w", err)
	}
	if p, err = newPresigner(params); err != nil {
		return nil, nil, fmt.Errorf("storage driver s3: %w", err)
	}
	return d, p, nil
}

// checkCABundle reports whether the file holds at least one PEM certificate,
// which is what the SDK needs to build its TLS config.
func checkCABundle(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("cannot read CA bundle: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return errors.New("CA bundle holds no PEM certificate")
	}
	return nil
}

// boolParam reads a boolean driver parameter the way distribution does: a
// YAML bool or the strings "true"/"false".
func boolParam(params map[string]any, key string, def bool) (bool, error) {
	v, ok := params[key]
	if !ok || v == nil {
		return def, nil
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(b)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "":
			return def, nil
		}
	}
	return false, fmt.Errorf("parameter %q: must be true or false", key)
}
