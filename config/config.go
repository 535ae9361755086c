// Package config holds Airlock's configuration: the YAML file format, the
// embedded defaults that make `airlock serve` work with no file at all, and
// validation that names the offending field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Policy names accepted in gate.policy.
const (
	// PolicyManual holds every fetched image in quarantine until an admin approves it.
	PolicyManual = "manual"
	// PolicyAuto approves an image right after it is fetched, with no scan:
	// meant for tests and benchmarks, never for production.
	PolicyAuto = "auto"
	// PolicyScan (the default) scans every image and approves it when the
	// vulnerability policy passes; otherwise it is rejected.
	PolicyScan = "scan"
)

// Rescan outcomes accepted in scan.on_rescan_fail.
const (
	// RescanRevoke revokes an approved image that fails a rescan.
	RescanRevoke = "revoke"
	// RescanFlag keeps serving it and only records the failure.
	RescanFlag = "flag"
)

// Tag modes accepted in gate.tag_mode.
const (
	// TagModeLastApproved serves the last approved digest of a tag while the
	// digest the tag now points to upstream is in quarantine.
	TagModeLastApproved = "last-approved"
	// TagModeStrict serves a tag only when its current upstream digest is approved.
	TagModeStrict = "strict"
)

// DockerHubName is the upstream name Docker Hub is known by; single-component
// repositories on it get the implicit "library/" prefix.
const DockerHubName = "docker.io"

// Config is the whole of airlock.yaml.
type Config struct {
	// Listen is the registry API listen address.
	Listen string `yaml:"listen"`
	// TLS serves the registry API over TLS, optionally requiring client
	// certificates (see tls.go); empty is plain HTTP.
	TLS TLS `yaml:"tls"`
	// DataDir holds the bbolt state file and, with the filesystem driver,
	// the content store.
	DataDir string `yaml:"data_dir"`
	// Storage selects the content store's distribution storage driver.
	Storage Storage `yaml:"storage"`
	// State selects where image states, the queue, leases and the audit
	// log live.
	State State `yaml:"state"`
	// Admin configures the admin API listener.
	Admin Admin `yaml:"admin"`
	// Upstreams lists the registries Airlock pulls from.
	Upstreams []Upstream `yaml:"upstreams"`
	// Gate configures the quarantine pipeline and serving rules.
	Gate Gate `yaml:"gate"`
	// Log configures logging.
	Log Log `yaml:"log"`
	// Limits bounds what Airlock accepts from clients and upstreams.
	Limits Limits `yaml:"limits"`
	// Scan configures vulnerability scanning and its database.
	Scan Scan `yaml:"scan"`
	// Malware configures malware scanning with clamd.
	Malware Malware `yaml:"malware"`
	// Policy is what a scanned image must satisfy to be approved.
	Policy Policy `yaml:"policy"`
	// Signatures configures verification of upstream signatures.
	Signatures Signatures `yaml:"signatures"`
	// Signing configures signing and attesting approved images.
	Signing Signing `yaml:"signing"`
	// Audit bounds the audit log.
	Audit Audit `yaml:"audit"`
	// Retention purges the content of stale images and runs the content
	// garbage collector (see retention.go).
	Retention Retention `yaml:"retention"`
	// Events configures webhooks on state changes (see events.go).
	Events Events `yaml:"events"`
	// Watch lists upstream repositories whose matching tags are checked
	// and queued through the pipeline before anyone pulls them.
	Watch []Watch `yaml:"watch"`
	// Pulls configures pull records (last_pulled, pull counts, recent pullers).
	Pulls Pulls `yaml:"pulls"`
	// Registry configures the registry API: pull authentication (registry.go).
	Registry Registry `yaml:"registry"`
}

// Audit bounds the audit log, which anonymous pulls would otherwise grow
// without end. Pruning runs at start and every PruneInterval.
type Audit struct {
	// MaxAge removes entries older than this, admin actions included;
	// an admin action younger than it is never removed. 0 keeps entries
	// regardless of age.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxEntries bounds the log: beyond it the oldest entries that are not
	// admin actions (pipeline and pull entries) are removed. 0 means no bound.
	MaxEntries int `yaml:"max_entries"`
	// PruneInterval is how often the bounds are enforced.
	PruneInterval time.Duration `yaml:"prune_interval"`
}

// validate checks the audit bounds.
func (a Audit) validate() error {
	if a.MaxAge < 0 {
		return errors.New("audit.max_age: must not be negative (0 keeps entries regardless of age)")
	}
	if a.MaxAge > 0 && a.MaxAge < time.Hour {
		return fmt.Errorf("audit.max_age: %s is under 1h; admin actions are kept for max_age, so it must be at least 1h (0 keeps entries regardless of age)", a.MaxAge)
	}
	if a.MaxEntries < 0 {
		return errors.New("audit.max_entries: must not be negative (0 means no bound)")
	}
	if a.PruneInterval < time.Second {
		return fmt.Errorf("audit.prune_interval: %s is under 1s", a.PruneInterval)
	}
	return nil
}

// Malware actions and what to do with files that were not scanned.
const (
	MalwareReject = "reject"
	MalwareFlag   = "flag"
	MalwareAllow  = "allow"
)

// Malware configures malware scanning with ClamAV's clamd (step "malware").
type Malware struct {
	// Clamd is clamd's address: unix:///run/clamav/clamd.ctl or
	// tcp://127.0.0.1:3310. Empty (the default) runs no malware step.
	Clamd string `yaml:"clamd"`
	// Action on malware found: "reject" (default) or "flag" (approved,
	// with the finding on the record).
	Action string `yaml:"action"`
	// MaxFileSize: a larger file is not sent to clamd; OnUnscanned decides.
	MaxFileSize Size `yaml:"max_file_size"`
	// OnUnscanned is "reject" (default) or "allow" for an image with a
	// file that was not scanned.
	OnUnscanned string `yaml:"on_unscanned"`
	// Timeout bounds one exchange with clamd (not a whole scan).
	Timeout time.Duration `yaml:"timeout"`
	// DBDir is clamd's DatabaseDirectory, when Airlock can read it: a
	// change there (freshclam, signatures copied in) makes clamd reload
	// and every approved image be scanned again.
	DBDir string `yaml:"db_dir"`
	// DBCheckInterval is how often DBDir is looked at.
	DBCheckInterval time.Duration `yaml:"db_check_interval"`
}

func (m Malware) validate() error {
	if m.Clamd == "" {
		return nil
	}
	u, err := url.Parse(m.Clamd)
	if err != nil || (u.Scheme == "unix" && u.Path == "") || (u.Scheme == "tcp" && (u.Host == "" || u.Port() == "")) || (u.Scheme != "unix" && u.Scheme != "tcp") {
		return fmt.Errorf("malware.clamd: %q is not unix:///path/to/socket or tcp://host:port", m.Clamd)
	}
	if m.Action != MalwareReject && m.Action != MalwareFlag {
		return fmt.Errorf("malware.action: %q is not %q or %q", m.Action, MalwareReject, MalwareFlag)
	}
	if m.OnUnscanned != MalwareReject && m.OnUnscanned != MalwareAllow {
		return fmt.Errorf("malware.on_unscanned: %q is not %q or %q", m.OnUnscanned, MalwareReject, MalwareAllow)
	}
	if m.MaxFileSize < 1<<10 {
		return fmt.Errorf("malware.max_file_size: %s is under 1KiB", m.MaxFileSize)
	}
	if m.Timeout < time.Second {
		return fmt.Errorf("malware.timeout: %s is under 1s", m.Timeout)
	}
	if m.DBDir != "" && m.DBCheckInterval < time.Second {
		return fmt.Errorf("malware.db_check_interval: %s is under 1s", m.DBCheckInterval)
	}
	return nil
}

// Scan configures vulnerability scanning and its database.
type Scan struct {
	// DBDir holds the grype vulnerability DB; default <data_dir>/vulndb.
	DBDir string `yaml:"db_dir"`
	// MaxDBAge refuses to approve on a DB older than this (0 disables the check).
	MaxDBAge time.Duration `yaml:"max_db_age"`
	// UpdateURL is a grype DB listing URL (grype's "latest.json") to update
	// from on a schedule, for sites with internet; empty means offline:
	// DBs come in with `airlock db import`.
	UpdateURL string `yaml:"update_url"`
	// UpdateInterval is how often UpdateURL is checked.
	UpdateInterval time.Duration `yaml:"update_interval"`
	// RescanInterval is how often every approved image is scanned again
	// (0 disables scheduled rescans; a DB import always triggers one).
	RescanInterval time.Duration `yaml:"rescan_interval"`
	// OnRescanFail is "revoke" (default) or "flag".
	OnRescanFail string `yaml:"on_rescan_fail"`
	// DBMaxSize bounds an imported or downloaded vulnerability database:
	// the .db file, and what an archive decompresses to. An import over
	// it stops there and fails, so a compression bomb cannot fill the
	// disk. Default 4GiB, well above the size of a current grype v6 database.
	DBMaxSize Size `yaml:"db_max_size"`
}

// minDBMaxSize is the smallest scan.db_max_size accepted: below it no real
// database fits, and the value is more likely a unit typo (4 for 4GiB).
const minDBMaxSize = 1 << 20

// Storage selects a distribution v3 storage driver by name with its
// driver-specific parameters (the same keys distribution's config uses).
type Storage struct {
	// Driver is a registered distribution driver name: "filesystem"
	// (default), "inmemory" or "s3" (S3-compatible object storage through
	// distribution's s3-aws driver).
	Driver string `yaml:"driver"`
	// Parameters are passed to the driver factory. For "filesystem" the
	// rootdirectory defaults to <data_dir>/content. For "s3": bucket,
	// region, regionendpoint, secure, v4auth, forcepathstyle,
	// rootdirectory, chunksize, ... as in distribution's config; the
	// credentials come from the environment (AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY) or the SDK's chain, never from this file.
	Parameters map[string]any `yaml:"parameters"`
	// Redirect answers blob GETs of the s3 driver with a redirect to a
	// presigned URL valid for RedirectTTL, so blob bytes flow from S3 to
	// the client. Off by default: nodes often cannot reach S3, and a URL
	// handed out before a revoke stays usable until it expires.
	Redirect bool `yaml:"redirect"`
	// RedirectTTL is how long a presigned URL is valid (default 1m).
	RedirectTTL time.Duration `yaml:"redirect_ttl"`
}

// State drivers accepted in state.driver.
const (
	// StateBolt is a bbolt file in data_dir: one process, the default.
	StateBolt = "bbolt"
	// StatePostgres is a PostgreSQL database several replicas share.
	StatePostgres = "postgres"
)

// State selects the state store.
type State struct {
	// Driver is "bbolt" (default) or "postgres".
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection string (postgres://… or
	// key=value); the environment variable AIRLOCK_STATE_DSN overrides
	// it, and is the better place for a password. Never logged.
	DSN string `yaml:"dsn"`
	// FailStatic, when set, keeps a replica serving images it saw
	// approved within this window while PostgreSQL is unreachable, and
	// refuses everything else with 503. Off (0) by default: during the
	// window a revoke made through another replica that still reaches
	// the database is not honoured by this one.
	FailStatic time.Duration `yaml:"fail_static"`
}

func (s State) validate() error {
	switch s.Driver {
	case StateBolt:
		if s.DSN != "" {
			return errors.New("dsn: only used with driver postgres")
		}
	case StatePostgres:
		if strings.TrimSpace(s.DSN) == "" {
			return errors.New("dsn: required with driver postgres (set state.dsn or AIRLOCK_STATE_DSN)")
		}
	default:
		return fmt.Errorf("driver: %q is not bbolt or postgres", s.Driver)
	}
	if s.FailStatic < 0 {
		return errors.New("fail_static: must not be negative")
	}
	if s.FailStatic > 0 && s.Driver != StatePostgres {
		return errors.New("fail_static: only used with driver postgres")
	}
	return nil
}

// s3CredentialKeys are the s3 parameters refused in the config file: a
// config is copied, printed and committed, so secrets stay in the
// environment (or a role). storage/content refuses them too.
var s3CredentialKeys = []string{"accesskey", "secretkey", "sessiontoken"}

func (s Storage) validate() error {
	switch s.Driver {
	case "":
		return errors.New("driver: must not be empty")
	case "s3":
		if s.Redirect && (s.RedirectTTL < time.Second || s.RedirectTTL > time.Hour) {
			return fmt.Errorf("redirect_ttl: %s is outside 1s..1h", s.RedirectTTL)
		}
		for _, k := range s3CredentialKeys {
			// The value is never echoed: it is a secret.
			if v, ok := s.Parameters[k]; ok && v != nil && fmt.Sprint(v) != "" {
				return fmt.Errorf("parameters.%s: S3 credentials are not read from the config file; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the environment, or use an instance/pod role", k)
			}
		}
		if b, _ := s.Parameters["bucket"].(string); strings.TrimSpace(b) == "" {
			return errors.New("parameters.bucket: required for the s3 driver")
		}
		region, _ := s.Parameters["region"].(string)
		endpoint, _ := s.Parameters["regionendpoint"].(string)
		if region == "" && endpoint == "" {
			return errors.New("parameters.region: required for the s3 driver (or set regionendpoint for an S3-compatible server)")
		}
		if endpoint != "" {
			u, err := url.Parse(endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("parameters.regionendpoint: must be an http:// or https:// URL")
			}
		}
		for _, k := range []string{"secure", "v4auth", "forcepathstyle", "encrypt", "skipverify"} {
			switch v := s.Parameters[k].(type) {
			case nil, bool:
			case string:
				if v != "true" && v != "false" {
					return fmt.Errorf("parameters.%s: must be true or false", k)
				}
			default:
				return fmt.Errorf("parameters.%s: must be true or false", k)
			}
		}
		if rd, ok := s.Parameters["rootdirectory"]; ok && rd != nil {
			if _, ok := rd.(string); !ok {
				return errors.New("parameters.rootdirectory: must be a key prefix such as /airlock")
			}
		}
	default:
		if s.Redirect {
			return errors.New("redirect: only the s3 driver can redirect blob downloads")
		}
	}
	return nil
}

// Admin configures the admin API listener.
type Admin struct {
	// Listen is the admin API listen address; keep it private.
	Listen string `yaml:"listen"`
	// Token is the bearer token the admin API requires. The environment
	// variable AIRLOCK_ADMIN_TOKEN overrides it.
	Token string `yaml:"token"`
	// TLS serves the admin API over TLS, optionally requiring client
	// certificates (see tls.go); empty is plain HTTP.
	TLS TLS `yaml:"tls"`
	// OIDC is single sign-on to the web console (see oidc.go).
	OIDC OIDC `yaml:"oidc"`
}

// Upstream is one registry Airlock pulls from.
type Upstream struct {
	// Name is the registry host clients know, e.g. "docker.io" or "ghcr.io".
	// containerd's ?ns= parameter is matched against it, and it also works
	// as a path prefix (/v2/ghcr.io/<repo>).
	Name string `yaml:"name"`
	// Alias is an optional short path prefix (/v2/<alias>/<repo>) for
	// clients that cannot send ?ns=.
	Alias string `yaml:"alias"`
	// URL is the registry's base URL, e.g. https://registry-1.docker.io.
	URL string `yaml:"url"`
	// Default marks the upstream that serves bare names (no ns, no prefix).
	Default bool `yaml:"default"`
	// Insecure allows plain HTTP and unverified TLS: for tests only.
	Insecure bool `yaml:"insecure"`
	// Username for basic/token auth against the upstream.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable that holds the password.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile names a file that holds the password.
	PasswordFile string `yaml:"password_file"`
	// Allow lists repository glob patterns ("library/*", "myorg/**");
	// anything else is refused. Empty allows every repository.
	Allow []string `yaml:"allow"`
	// RateLimit bounds the requests sent to this upstream (all of them).
	RateLimit RateLimit `yaml:"rate_limit"`
}

// Gate configures the quarantine pipeline and the serving rules.
type Gate struct {
	// Policy decides how an image is approved: "scan" (default: scanned
	// and judged by the vulnerability policy), "manual" (an admin
	// approves) or "auto" (approved after fetch; tests only).
	Policy string `yaml:"policy"`
	// Hold is how long a pull of a quarantined image waits for approval
	// before it is answered DENIED.
	Hold time.Duration `yaml:"hold"`
	// TagMode is "last-approved" (default) or "strict".
	TagMode string `yaml:"tag_mode"`
	// TagTTL is how long an upstream tag resolution is cached.
	TagTTL time.Duration `yaml:"tag_ttl"`
	// Workers is the number of pipeline workers.
	Workers int `yaml:"workers"`
	// Platforms limits which platform manifests of an index are fetched
	// ("linux/amd64"); empty fetches all of them.
	Platforms []string `yaml:"platforms"`
	// Retry controls the backoff of failed pipeline runs.
	Retry Retry `yaml:"retry"`
	// Lease is how long a replica holds a pipeline job or an upstream
	// fetch without renewing it (it renews every third of it): a replica
	// killed mid-job has its job taken over by another after at most
	// this long.
	Lease time.Duration `yaml:"lease"`
	// ApprovalsRequired is how many different identities of the admin API
	// must approve an image before an admin approval takes effect (1..5,
	// default 1). With 2 ("four eyes") the first approval is recorded as
	// pending and the second, by someone else, approves (see
	// gate.Engine.Approve).
	ApprovalsRequired int `yaml:"approvals_required"`
}

// MaxApprovalsRequired bounds gate.approvals_required: more approvers than
// this is a review board, not an approval gate.
const MaxApprovalsRequired = 5

// Retry controls the backoff of failed pipeline runs.
type Retry struct {
	// MaxAttempts is how often a failing job runs before it is left failed
	// until the next pull asks for it again.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the delay after the first failure; it doubles each time.
	Backoff time.Duration `yaml:"backoff"`
	// MaxBackoff caps the delay.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// Log configures logging.
type Log struct {
	// Format is "text" (default) or "json".
	Format string `yaml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
}

// Limits bounds what Airlock accepts.
type Limits struct {
	// MaxManifestBytes is the largest manifest or index accepted from an upstream.
	MaxManifestBytes int64 `yaml:"max_manifest_bytes"`
	// MaxConnections bounds the registry API's open client connections;
	// further clients wait in the accept queue. 0 means no bound.
	MaxConnections int `yaml:"max_connections"`
}

// Default returns the embedded defaults: registry on :5000, admin on
// 127.0.0.1:5001, data under ./data, Docker Hub as the default upstream and
// the scan policy.
func Default() *Config {
	return &Config{
		Listen:  ":5000",
		DataDir: "./data",
		Storage: Storage{Driver: "filesystem", RedirectTTL: time.Minute},
		State:   State{Driver: StateBolt},
		Admin:   Admin{Listen: "127.0.0.1:5001"},
		Upstreams: []Upstream{{
			Name:    DockerHubName,
			URL:     "https://registry-1.docker.io",
			Default: true,
		}},
		Gate: Gate{
			Policy:  PolicyScan,
			Hold:    3 * time.Second,
			TagMode: TagModeLastApproved,
			TagTTL:  time.Minute,
			Workers: 4,
			Lease:   30 * time.Second,
			// One approver decides, unless four eyes are asked for.
			ApprovalsRequired: 1,
			Retry: Retry{
				MaxAttempts: 8,
				Backoff:     5 * time.Second,
				MaxBackoff:  10 * time.Minute,
			},
		},
		Log:    Log{Format: "text", Level: "info"},
		Limits: Limits{MaxManifestBytes: 4 << 20, MaxConnections: 4096},
		Scan: Scan{
			MaxDBAge:       5 * 24 * time.Hour,
			UpdateInterval: 24 * time.Hour,
			RescanInterval: 24 * time.Hour,
			OnRescanFail:   RescanRevoke,
			DBMaxSize:      4 << 30,
		},
		Malware:    Malware{Action: MalwareReject, OnUnscanned: MalwareReject, MaxFileSize: 256 << 20, Timeout: time.Minute, DBCheckInterval: time.Minute},
		Policy:     Policy{Rules: Rules{FailOn: SeverityCritical}},
		Signatures: Signatures{Mode: VerifyNone},
		Signing:    Signing{Validity: 30 * 24 * time.Hour},
		Audit:      Audit{MaxAge: 90 * 24 * time.Hour, MaxEntries: 1_000_000, PruneInterval: time.Hour},
		Retention:  Retention{GCGrace: DefaultGCGrace},
		Events:     Events{Source: "/airlock", MaxPending: 100_000, MinBackoff: time.Second, MaxBackoff: 5 * time.Minute},
		Pulls:      defaultPulls(),
	}
}

// Load reads the YAML file at path over the defaults, applies the
// environment overrides and validates the result. An empty path means the
// embedded defaults alone.
func Load(file string) (*Config, error) {
	c := Default()
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := c.decode(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("config %s: %w", file, err)
		}
	}
	if tok := os.Getenv("AIRLOCK_ADMIN_TOKEN"); tok != "" {
		c.Admin.Token = tok
	}
	if dsn := os.Getenv("AIRLOCK_STATE_DSN"); dsn != "" {
		c.State.DSN = dsn
	}
	if err := c.Validate(); err != nil {
		if file == "" {
			file = "(defaults)"
		}
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	return c, nil
}

// decode overlays YAML onto c, rejecting unknown keys so typos surface.
func (c *Config) decode(r io.Reader) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	// A file that lists upstreams replaces the default list rather than
	// merging into its first element.
	c.Upstreams = nil
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if c.Upstreams == nil {
		c.Upstreams = Default().Upstreams
	}
	return nil
}

// Validate checks every field and names the first one that is wrong.
func (c *Config) Validate() error {
	if err := validAddr(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := validAddr(c.Admin.Listen); err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	if err := c.Admin.OIDC.validate(); err != nil {
		return fmt.Errorf("admin.oidc.%w", err)
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	if err := c.Storage.validate(); err != nil {
		return fmt.Errorf("storage.%w", err)
	}
	if err := c.State.validate(); err != nil {
		return fmt.Errorf("state.%w", err)
	}
	if len(c.Upstreams) == 0 {
		return errors.New("upstreams: at least one upstream is required")
	}
	seen := map[string]int{}
	defaults := 0
	for i, u := range c.Upstreams {
		field := fmt.Sprintf("upstreams[%d]", i)
		if err := u.validate(); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		for _, key := range []string{u.Name, u.Alias} {
			if key == "" {
				continue
			}
			if j, dup := seen[key]; dup {
				return fmt.Errorf("%s: name or alias %q is already used by upstreams[%d]", field, key, j)
			}
			seen[key] = i
		}
		if u.Default {
			defaults++
		}
	}
	if defaults > 1 {
		return errors.New("upstreams: only one upstream may be the default")
	}
	switch c.Gate.Policy {
	case PolicyScan, PolicyManual, PolicyAuto:
	default:
		return fmt.Errorf("gate.policy: %q is not one of %q, %q, %q", c.Gate.Policy, PolicyScan, PolicyManual, PolicyAuto)
	}
	switch c.Gate.TagMode {
	case TagModeLastApproved, TagModeStrict:
	default:
		return fmt.Errorf("gate.tag_mode: %q is not one of %q, %q", c.Gate.TagMode, TagModeLastApproved, TagModeStrict)
	}
	if c.Gate.Hold < 0 || c.Gate.Hold > 5*time.Minute {
		return fmt.Errorf("gate.hold: %s is outside 0s..5m (clients time out on longer holds)", c.Gate.Hold)
	}
	if c.Gate.TagTTL < 0 {
		return errors.New("gate.tag_ttl: must not be negative")
	}
	if c.Gate.Lease < 3*time.Second || c.Gate.Lease > 10*time.Minute {
		// Renewed every third of it: shorter is a database write a
		// second per job; longer leaves a killed replica's job waiting.
		return fmt.Errorf("gate.lease: %s is outside 3s..10m", c.Gate.Lease)
	}
	if c.Gate.Workers < 1 || c.Gate.Workers > 256 {
		return fmt.Errorf("gate.workers: %d is outside 1..256", c.Gate.Workers)
	}
	if c.Gate.ApprovalsRequired < 1 || c.Gate.ApprovalsRequired > MaxApprovalsRequired {
		return fmt.Errorf("gate.approvals_required: %d is outside 1..%d (the number of different approvers an admin approval needs)", c.Gate.ApprovalsRequired, MaxApprovalsRequired)
	}
	for i, p := range c.Gate.Platforms {
		if parts := strings.Split(p, "/"); len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return fmt.Errorf("gate.platforms[%d]: %q is not os/arch[/variant]", i, p)
		}
	}
	if c.Gate.Retry.MaxAttempts < 1 {
		return errors.New("gate.retry.max_attempts: must be at least 1")
	}
	if c.Gate.Retry.Backoff <= 0 || c.Gate.Retry.MaxBackoff < c.Gate.Retry.Backoff {
		return errors.New("gate.retry: backoff must be positive and max_backoff at least backoff")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Limits.MaxManifestBytes < 1024 {
		return errors.New("limits.max_manifest_bytes: must be at least 1024")
	}
	if c.Limits.MaxConnections < 0 {
		return errors.New("limits.max_connections: must not be negative (0 means no bound)")
	}
	if c.Scan.MaxDBAge < 0 || c.Scan.RescanInterval < 0 {
		return errors.New("scan: max_db_age and rescan_interval must not be negative")
	}
	if c.Scan.UpdateURL != "" {
		if u, err := url.Parse(c.Scan.UpdateURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("scan.update_url: %q is not an http(s) URL", c.Scan.UpdateURL)
		}
		if c.Scan.UpdateInterval < time.Minute {
			return errors.New("scan.update_interval: must be at least 1m")
		}
	}
	switch c.Scan.OnRescanFail {
	case RescanRevoke, RescanFlag:
	default:
		return fmt.Errorf("scan.on_rescan_fail: %q is not %q or %q", c.Scan.OnRescanFail, RescanRevoke, RescanFlag)
	}
	if c.Scan.DBMaxSize < minDBMaxSize {
		return fmt.Errorf("scan.db_max_size: %s is less than %s; no vulnerability database fits (did you mean GiB?)", c.Scan.DBMaxSize, Size(minDBMaxSize))
	}
	if err := c.Malware.validate(); err != nil {
		return err
	}
	if err := c.Signatures.validate(); err != nil {
		return err
	}
	if err := c.Signing.validate(); err != nil {
		return err
	}
	if err := c.Audit.validate(); err != nil {
		return err
	}
	if err := c.Retention.validate(); err != nil {
		return err
	}
	c.Events.applyDefaults()
	if err := c.Events.validate(); err != nil {
		return err
	}
	if err := c.validateWatches(); err != nil {
		return err
	}
	if err := c.Pulls.validate(); err != nil {
		return err
	}
	if err := c.Registry.validate(); err != nil {
		return err
	}
	return c.Policy.validate()
}

// ScanDBDir returns scan.db_dir, defaulting to <data_dir>/vulndb.
func (c *Config) ScanDBDir() string {
	if c.Scan.DBDir != "" {
		return c.Scan.DBDir
	}
	return filepath.Join(c.DataDir, "vulndb")
}

func (u Upstream) validate() error {
	if u.Name == "" {
		return errors.New("name: must not be empty")
	}
	if !validHostName(u.Name) {
		return fmt.Errorf("name: %q is not a registry host name", u.Name)
	}
	if u.Alias != "" && !validPathComponent(u.Alias) {
		return fmt.Errorf("alias: %q must be one lowercase path component", u.Alias)
	}
	p, err := url.Parse(u.URL)
	if err != nil || p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
		return fmt.Errorf("url: %q is not an http(s) URL", u.URL)
	}
	if p.Scheme == "http" && !u.Insecure {
		return fmt.Errorf("url: %q is plain HTTP; set insecure: true to allow it", u.URL)
	}
	if u.PasswordEnv != "" && u.PasswordFile != "" {
		return errors.New("password_env: set password_env or password_file, not both")
	}
	for i, pat := range u.Allow {
		if _, err := path.Match(strings.ReplaceAll(pat, "**", "*"), ""); err != nil || pat == "" {
			return fmt.Errorf("allow[%d]: %q is not a valid glob", i, pat)
		}
	}
	return nil
}

// Password returns the upstream password from its env variable or file.
// It is read on demand so that it never sits in the config dump or logs.
func (u Upstream) Password() (string, error) {
	switch {
	case u.PasswordEnv != "":
		return os.Getenv(u.PasswordEnv), nil
	case u.PasswordFile != "":
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("upstream %s: password_file: %w", u.Name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

// Allows reports whether repo matches the upstream's allow list. "*" matches
// within one path component, "**" matches any number of components.
func (u Upstream) Allows(repo string) bool {
	if len(u.Allow) == 0 {
		return true
	}
	for _, pat := range u.Allow {
		if globMatch(strings.Split(pat, "/"), strings.Split(repo, "/")) {
			return true
		}
	}
	return false
}

func globMatch(pat, parts []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(parts); i++ {
				if globMatch(pat[1:], parts[i:]) {
					return true
				}
			}
			return false
		}
		if len(parts) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], parts[0]); !ok {
			return false
		}
		pat, parts = pat[1:], parts[1:]
	}
	return len(parts) == 0
}

// validAddr checks a listen address of the form host:port or :port.
func validAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", a, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be a number 0..65535", a)
	}
	return nil
}

// validHostName accepts host[:port] made of letters, digits, dots and dashes.
func validHostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	host, port, hasPort := strings.Cut(s, ":")
	if host == "" || (hasPort && port == "") {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return false
		}
	}
	for _, r := range port {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func validPathComponent(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return s != "" && s[0] != '.' && s[0] != '-' && s[0] != '_'
}
