// Package scan builds SBOMs of container images with syft and matches them
// against an offline grype vulnerability database.
//
// The database lives in a directory laid out as grype lays out its own
// (<dbRoot>/6/vulnerability.db plus import.json). It is installed from an
// archive with Scanner.Import (what `grype db import` does) and is never
// downloaded or updated over the network.
package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/anchore/grype/grype"
	"github.com/anchore/grype/grype/distro"
	"github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/matcher"
	"github.com/anchore/grype/grype/matcher/dotnet"
	"github.com/anchore/grype/grype/matcher/dpkg"
	"github.com/anchore/grype/grype/matcher/golang"
	"github.com/anchore/grype/grype/matcher/hex"
	"github.com/anchore/grype/grype/matcher/java"
	"github.com/anchore/grype/grype/matcher/javascript"
	"github.com/anchore/grype/grype/matcher/python"
	"github.com/anchore/grype/grype/matcher/rpm"
	"github.com/anchore/grype/grype/matcher/ruby"
	"github.com/anchore/grype/grype/matcher/rust"
	"github.com/anchore/grype/grype/matcher/stock"
	grypepkg "github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/version"
	stfile "github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/cataloging"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/format/syftjson"
	"github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Scanner builds SBOMs with syft and matches them with grype against an
// offline v6 DB. Safe for concurrent Scan calls.
//
// Import and Reload swap the database atomically: a scan uses the
// database that was current when it started until it finishes, and the
// replaced database is closed once its last scan is done.
type Scanner struct {
	root      string
	maxAge    time.Duration
	tempDir   string
	maxDBSize int64 // bound on imported databases; see WithMaxDBSize

	// licenseCtx carries syft's license scanner; see licenseContext.
	licenseCtx context.Context

	swapMu sync.Mutex // serializes Import and Reload

	mu      sync.RWMutex
	cur     *loadedDB // nil when no database is loaded
	loadErr error     // why cur is nil, when it is not ErrNoDB
	closed  bool
}

// Option configures a Scanner.
type Option func(*Scanner)

// license holds the context carrying syft's license scanner, built by the
// first successful New and shared by all Scanners: building it is costly,
// and scanning with it is safe for concurrent use.
var license struct {
	sync.Mutex
	ctx context.Context
}

// licenseContext returns the shared context carrying syft's license
// scanner, building it on first use.
func licenseContext() (context.Context, error) {
	license.Lock()
	defer license.Unlock()
	if license.ctx == nil {
		ctx, err := syft.SetContextLicenseScanner(context.Background(), syft.DefaultCreateSBOMConfig().Licenses)
		if err != nil {
			return nil, fmt.Errorf("scan: create license scanner: %w", err)
		}
		license.ctx = ctx
	}
	return license.ctx, nil
}

// WithMaxAge makes Scan fail with an error wrapping ErrDBStale when the
// database was built more than d ago. 0 (the default) disables the check.
func WithMaxAge(d time.Duration) Option {
	return func(s *Scanner) { s.maxAge = d }
}

// WithTempDir sets the directory under which each scan unpacks image
// layers (in a private subdirectory removed when the scan ends). The
// default is os.TempDir().
func WithTempDir(dir string) Option {
	return func(s *Scanner) { s.tempDir = dir }
}

// New returns a Scanner using the database installed under dbRoot
// (<dbRoot>/6/vulnerability.db, grype's layout). The first New in a process
// builds syft's license scanner (about 1.5 s); every scan of every Scanner
// then reuses it.
//
// New does not fail when no database is installed yet, or when the
// installed one cannot be opened: Scan and Status then report why (ErrNoDB
// or the load error) until Import or Reload installs a usable one.
func New(dbRoot string, opts ...Option) (*Scanner, error) {
	if dbRoot == "" {
		return nil, errors.New("scan: empty database root")
	}
	s := &Scanner{root: dbRoot}
	for _, o := range opts {
		o(s)
	}
	if s.maxAge < 0 {
		return nil, fmt.Errorf("scan: negative max DB age %s", s.maxAge)
	}

	lctx, err := licenseContext()
	if err != nil {
		return nil, err
	}
	s.licenseCtx = lctx

	removeStaleViews(dbRoot)
	d, err := openDB(dbRoot)
	switch {
	case err == nil:
		s.cur = d
	case errors.Is(err, ErrNoDB):
	default:
		s.loadErr = err
	}
	return s, nil
}

// Close releases the database. Scans in flight finish first (the database
// is closed when the last one ends); later calls to Scan fail.
func (s *Scanner) Close() error {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	s.mu.Lock()
	old := s.cur
	s.cur, s.closed = nil, true
	s.mu.Unlock()
	if old != nil {
		old.release()
	}
	return nil
}

// Status describes the database scans currently use: the one loaded by
// New, Import or Reload (an out-of-process import is not seen until
// Reload). It returns ErrNoDB when none is installed.
func (s *Scanner) Status() (DBStatus, error) {
	d, err := s.acquire()
	if err != nil {
		return DBStatus{}, err
	}
	defer d.release()
	return withAge(d.status), nil
}

// Import installs the database archive (.tar.gz, .tar.zst, .tar.xz as grype
// distributes them) or raw .db file at path into the DB root the way
// `grype db import` does, then switches subsequent scans to it and returns
// its status. Scans in flight keep the previous database. A file that is
// not a valid v6 database is rejected before anything on disk changes, and
// the previous database stays installed and in use; if the new one cannot
// be opened after installation, the error is returned and scans keep using
// the previous one.
func (s *Scanner) Import(path string) (DBStatus, error) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return DBStatus{}, err
	}
	if err := importDB(s.root, path, s.dbLimit()); err != nil {
		return DBStatus{}, fmt.Errorf("scan: %w", err)
	}
	d, err := openDB(s.root)
	if err != nil {
		return DBStatus{}, fmt.Errorf("scan: open imported database: %w", err)
	}
	s.swap(d)
	return withAge(d.status), nil
}

// Update checks the grype database listing at listingURL (a
// "latest.json" URL, or a base URL that grype completes with
// "/v6/latest.json") and, when it offers a database built after the one in
// use, downloads it, verifies its checksum against the listing and
// installs it as Import does, then switches subsequent scans to it. It
// reports whether a new database was installed. Update is the only Scanner
// method that uses the network; offline sites use Import instead.
func (s *Scanner) Update(ctx context.Context, listingURL string) (bool, error) {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return false, err
	}
	var current *DBStatus
	s.mu.RLock()
	if s.cur != nil {
		st := s.cur.status
		current = &st
	}
	s.mu.RUnlock()

	updated, err := updateDB(ctx, s.root, listingURL, current, s.dbLimit())
	if err != nil {
		return false, fmt.Errorf("scan: %w", err)
	}
	if !updated {
		return false, nil
	}
	d, err := openDB(s.root)
	if err != nil {
		return true, fmt.Errorf("scan: open updated database: %w", err)
	}
	s.swap(d)
	return true, nil
}

// Reload re-opens the database from disk, e.g. after `airlock db import`
// ran in another process. Scans in flight keep the previous database. If
// the database on disk cannot be opened the previous one stays in use and
// the error is returned (ErrNoDB when none is installed).
func (s *Scanner) Reload() error {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	if err := s.checkOpen(); err != nil {
		return err
	}
	d, err := openDB(s.root)
	if err != nil {
		if errors.Is(err, ErrNoDB) {
			return ErrNoDB
		}
		return fmt.Errorf("scan: reload database: %w", err)
	}
	s.swap(d)
	return nil
}

func (s *Scanner) checkOpen() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errors.New("scan: scanner is closed")
	}
	return nil
}

// swap makes d current and drops the Scanner's reference to the old one.
func (s *Scanner) swap(d *loadedDB) {
	s.mu.Lock()
	old := s.cur
	s.cur, s.loadErr = d, nil
	s.mu.Unlock()
	if old != nil {
		old.release()
	}
}

// acquire returns the current database with a reference held for the
// caller, who must release it.
func (s *Scanner) acquire() (*loadedDB, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.closed:
		return nil, errors.New("scan: scanner is closed")
	case s.cur != nil:
		s.cur.acquire()
		return s.cur, nil
	case s.loadErr != nil:
		return nil, fmt.Errorf("scan: vulnerability database unusable (re-import it with `airlock db import`): %w", s.loadErr)
	default:
		return nil, ErrNoDB
	}
}

// withAge sets st.Age as of now. Build times are stored rounded to the
// second, so a DB built moments ago may seem to come from the future: its
// age is then 0.
func withAge(st DBStatus) DBStatus {
	st.Age = max(time.Since(st.Built), 0)
	return st
}

// Scan builds an SBOM of img and matches it against the current database.
// name is the image reference recorded as the SBOM's source, e.g.
// "docker.io/library/alpine@sha256:...".
//
// It fails with ErrNoDB when no database is installed and with an error
// wrapping ErrDBStale when the database is older than the maximum age.
func (s *Scanner) Scan(ctx context.Context, img v1.Image, name string) (*Result, error) {
	if img == nil {
		return nil, errors.New("scan: nil image")
	}
	d, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer d.release()
	st := withAge(d.status)
	if s.maxAge > 0 && st.Age > s.maxAge {
		return nil, fmt.Errorf("%w: built %s (%s ago), max age %s", ErrDBStale,
			st.Built.Format(time.RFC3339), st.Age.Round(time.Second), s.maxAge)
	}

	start := time.Now()
	bom, err := s.sbom(ctx, img, name)
	if err != nil {
		return nil, err
	}
	res := &Result{DB: st}
	if res.SyftJSON, err = format.Encode(*bom, syftjson.NewFormatEncoder()); err != nil {
		return nil, fmt.Errorf("scan: encode syft JSON SBOM: %w", err)
	}
	spdxEnc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.EncoderConfig{Version: "2.3", DefaultVersion: "2.3"})
	if err != nil {
		return nil, fmt.Errorf("scan: SPDX encoder: %w", err)
	}
	if res.SPDX, err = format.Encode(*bom, spdxEnc); err != nil {
		return nil, fmt.Errorf("scan: encode SPDX SBOM: %w", err)
	}
	res.Packages = packagesOf(bom)
	res.SBOMDuration = time.Since(start)

	start = time.Now()
	if err := s.match(ctx, d, res); err != nil {
		return nil, err
	}
	res.MatchDuration = time.Since(start)
	return res, nil
}

// sbom catalogs img with syft.
func (s *Scanner) sbom(ctx context.Context, img v1.Image, ref string) (*sbom.SBOM, error) {
	tmp, err := os.MkdirTemp(s.tempDir, "airlock-scan-")
	if err != nil {
		return nil, fmt.Errorf("scan: create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	// Layers are unpacked under tmp; the generator's own directories (for
	// catalogers) are removed by Cleanup.
	gen := stfile.NewTempDirGenerator("airlock-scan")
	stImg := image.New(img, gen, tmp, refMetadata(ref)...)
	defer stImg.Cleanup() //nolint:errcheck // best effort; tmp is removed regardless
	if err := stImg.Read(ctx); err != nil {
		return nil, fmt.Errorf("scan: read image %s: %w", ref, err)
	}

	src := stereoscopesource.New(stImg, stereoscopesource.ImageConfig{Reference: ref})
	bom, err := syft.CreateSBOM(withValues(ctx, s.licenseCtx), src, sbomConfig())
	if err != nil {
		return nil, fmt.Errorf("scan: build SBOM of %s: %w", ref, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("scan: build SBOM of %s: %w", ref, err)
	}
	return bom, nil
}

// sbomConfig is syft's default configuration plus what grype adds when it
// catalogs an image itself: Go binaries' function symbols, which let grype
// drop Go advisories whose vulnerable symbols a binary does not use.
func sbomConfig() *syft.CreateSBOMConfig {
	cfg := syft.DefaultCreateSBOMConfig()
	cfg.Packages.Golang = cfg.Packages.Golang.WithCaptureSymbols(cataloging.SymbolScopeAll)
	return cfg
}

// refMetadata records ref in the stereoscope image as a repo digest or tag.
func refMetadata(ref string) []image.AdditionalMetadata {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil
	}
	switch r := r.(type) {
	case name.Digest:
		return []image.AdditionalMetadata{image.WithRepoDigests(r.String())}
	case name.Tag:
		return []image.AdditionalMetadata{image.WithTags(r.String())}
	}
	return nil
}

// match runs grype over the syft JSON SBOM in res, as `grype sbom:...`
// does: the SBOM provider detects the distro, attaches it to OS packages
// and removes packages owned by others (overlap removal) before the CLI's
// default matchers run.
func (s *Scanner) match(ctx context.Context, d *loadedDB, res *Result) error {
	pkgs, pkgCtx, _, err := grypepkg.ProvideFromReader(bytes.NewReader(res.SyftJSON), grypepkg.ProviderConfig{
		SynthesisConfig: grypepkg.SynthesisConfig{
			Distro: grypepkg.DistroConfig{FixChannels: distro.DefaultFixChannels()},
		},
	})
	if err != nil {
		return fmt.Errorf("scan: read packages from SBOM: %w", err)
	}
	if pkgCtx.Distro != nil {
		res.Distro = pkgCtx.Distro.String()
	}

	vm := grype.VulnerabilityMatcher{
		VulnerabilityProvider: d.provider,
		Matchers:              matcher.NewDefaultMatchers(defaultMatcherConfig()),
		IgnoreRules:           defaultIgnoreRules(),
	}
	matches, _, err := vm.FindMatchesContext(ctx, pkgs, pkgCtx)
	if err != nil {
		return fmt.Errorf("scan: match vulnerabilities: %w", err)
	}
	res.Matches = matchesOf(d, matches)
	return nil
}

// defaultMatcherConfig mirrors the grype CLI's default match settings, with
// every external (network) data source off.
func defaultMatcherConfig() matcher.Config {
	return matcher.Config{
		Java:       java.MatcherConfig{UseCPEs: false},
		Ruby:       ruby.MatcherConfig{UseCPEs: false},
		Python:     python.MatcherConfig{UseCPEs: false},
		Dotnet:     dotnet.MatcherConfig{UseCPEs: false},
		Javascript: javascript.MatcherConfig{UseCPEs: false},
		Golang:     golang.MatcherConfig{UseCPEs: false},
		Rust:       rust.MatcherConfig{UseCPEs: false},
		Hex:        hex.MatcherConfig{UseCPEs: false},
		Stock:      stock.MatcherConfig{UseCPEs: true},
		Dpkg:       dpkg.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyZero},
		Rpm:        rpm.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyAuto},
	}
}

// defaultIgnoreRules are the grype CLI's default ignores: kernel-header
// packages matched only through their upstream kernel.
func defaultIgnoreRules() []match.IgnoreRule {
	return []match.IgnoreRule{
		{Package: match.IgnoreRulePackage{Name: "kernel-headers", UpstreamName: "kernel", Type: "rpm"}, MatchType: match.ExactIndirectMatch},
		{Package: match.IgnoreRulePackage{Name: "linux(-.*)?-headers-.*", UpstreamName: "linux.*", Type: "deb"}, MatchType: match.ExactIndirectMatch},
		{Package: match.IgnoreRulePackage{Name: "linux-libc-dev", UpstreamName: "linux", Type: "deb"}, MatchType: match.ExactIndirectMatch},
		{Package: match.IgnoreRulePackage{Name: "linux-kbuild-.*", UpstreamName: "linux.*", Type: "deb"}, MatchType: match.ExactIndirectMatch},
	}
}
