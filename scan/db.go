package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/anchore/grype/grype"
	v6 "github.com/anchore/grype/grype/db/v6"
	v6dist "github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/mholt/archives"
	"github.com/spf13/afero"
)

// ErrNoDB is returned by Scan and Status when no vulnerability database is
// installed in the Scanner's DB root.
var ErrNoDB = errors.New("no vulnerability database installed: run `airlock db import <archive>` to install one")

// ErrDBStale is returned (wrapped) by Scan when the installed database was
// built longer ago than the Scanner's maximum age.
var ErrDBStale = errors.New("vulnerability database is stale: import a newer one with `airlock db import <archive>`")

// ErrDBTooLarge is returned (wrapped) by Import and Update when a database,
// or what its archive expands to, is larger than the import limit (see
// WithMaxDBSize).
var ErrDBTooLarge = errors.New("vulnerability database exceeds the import size limit")

// DefaultMaxDBSize bounds an imported database when WithMaxDBSize is not
// given: 4 GiB, well above the size of a current grype v6 database, so
// real databases fit with room to grow while a decompression bomb stops.
const DefaultMaxDBSize int64 = 4 << 30

// maxArchiveEntries bounds the entries of an imported archive. grype's
// archives hold two files (vulnerability.db and import.json); the bound
// only has to stop an archive of millions of empty entries.
const maxArchiveEntries = 64

// archiveSlack is what an archive may hold beyond the database file itself
// (tar headers, padding, import.json) before the import limit applies to
// the decompressed stream as a whole.
const archiveSlack = 1 << 20

// listingMaxBytes bounds a database listing (latest.json, a few hundred bytes).
const listingMaxBytes = 1 << 20

// extractPrefix names the directory under the DB root an archive is
// unpacked into before the curator installs the database from it.
const extractPrefix = "tmp-airlock-extract-"

// WithMaxDBSize bounds what Import and Update accept: the database file,
// what an archive decompresses to, and a downloaded archive. An import over
// the bound stops as soon as it is reached, fails with an error wrapping
// ErrDBTooLarge that names the bound, and leaves nothing behind. 0 means
// DefaultMaxDBSize.
func WithMaxDBSize(n int64) Option {
	return func(s *Scanner) { s.maxDBSize = n }
}

// dbLimit is the import bound in force.
func (s *Scanner) dbLimit() int64 {
	if s.maxDBSize > 0 {
		return s.maxDBSize
	}
	return DefaultMaxDBSize
}

// DBStatus describes an installed vulnerability database.
type DBStatus struct {
	// Built is when the database was built (UTC).
	Built time.Time `json:"built"`
	// SchemaVersion is the database schema version, e.g. "v6.1.10".
	SchemaVersion string `json:"schema_version"`
	// Path is the database file, <dbRoot>/6/vulnerability.db.
	Path string `json:"path"`
	// Checksum is the database file digest recorded at import, e.g.
	// "xxh64:0123456789abcdef".
	Checksum string `json:"checksum,omitempty"`
	// Source is where the database was imported from, as recorded at
	// import ("manual import" for `grype db import` and Scanner.Import).
	Source string `json:"source,omitempty"`
	// Age is how long ago the database was built, as of the call that
	// returned this status.
	Age time.Duration `json:"age_ns"`
}

// openDirName is the directory under the DB root holding one hard-linked
// view of the installed database per open generation; see openDB.
const openDirName = ".airlock-open"

// loadedDB is one opened generation of the database. Scans hold a
// reference while they use it; the Scanner holds one while it is current.
// The provider is closed, and its private view removed, when the last
// reference goes.
type loadedDB struct {
	provider vulnerability.Provider
	status   DBStatus
	viewDir  string
	viewLock io.Closer // held while the view is in use; see removeStaleViews

	refs atomic.Int64
}

func (d *loadedDB) acquire() { d.refs.Add(1) }

// release drops one reference and closes the DB when it was the last.
func (d *loadedDB) release() {
	if d.refs.Add(-1) != 0 {
		return
	}
	// Errors here cannot reach anyone who could act on them: the DB is
	// already out of use. Closing is best effort.
	_ = d.provider.Close()
	_ = os.RemoveAll(d.viewDir)
	_ = d.viewLock.Close()
}

// dbDir is <root>/6, where grype installs v6 databases.
func dbDir(root string) string {
	return filepath.Join(root, strconv.Itoa(v6.ModelVersion))
}

// openDB opens the database installed under root for reading.
//
// It does not open <root>/6/vulnerability.db itself. grype opens databases
// in SQLite shared-cache mode, where connections to the same path share one
// page cache: a reader opened on that path after an import, while a reader
// of the previous database is still open (an in-flight scan), would be
// served the old database's pages. So every generation is opened through
// its own directory of hard links (<root>/.airlock-open/<random>/6/...),
// which also keeps the old file alive for in-flight scans once an import
// has replaced it. Where hard links are not possible the files are copied.
func openDB(root string) (*loadedDB, error) {
	src := dbDir(root)
	dbFile := filepath.Join(src, v6.VulnerabilityDBFileName)
	if _, err := os.Stat(dbFile); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoDB
		}
		return nil, fmt.Errorf("stat vulnerability database: %w", err)
	}

	parent := filepath.Join(root, openDirName)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create database view directory: %w", err)
	}
	view, err := os.MkdirTemp(parent, "db-")
	if err != nil {
		return nil, fmt.Errorf("create database view: %w", err)
	}
	lock, err := lockView(view)
	if err != nil {
		_ = os.RemoveAll(view)
		return nil, fmt.Errorf("lock database view: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(view)
			_ = lock.Close()
		}
	}()
	viewDB := dbDir(view)
	if err := os.Mkdir(viewDB, 0o700); err != nil {
		return nil, fmt.Errorf("create database view: %w", err)
	}
	for _, name := range []string{v6.VulnerabilityDBFileName, v6.ImportMetadataFileName} {
		if err := linkOrCopy(filepath.Join(src, name), filepath.Join(viewDB, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				if name == v6.VulnerabilityDBFileName {
					return nil, ErrNoDB // removed since the Stat above
				}
				return nil, fmt.Errorf("vulnerability database at %s has no %s: it was not installed by an import", src, name)
			}
			return nil, fmt.Errorf("open vulnerability database: %w", err)
		}
	}

	meta, err := v6.ReadImportMetadata(afero.NewOsFs(), viewDB)
	if err != nil {
		return nil, fmt.Errorf("read import metadata of %s: %w", src, err)
	}

	// No update: LoadVulnerabilityDB never touches the network. The
	// checksum recorded at import is verified against the file; the age
	// check is ours (see Scanner.Scan), so grype's is off.
	provider, st, err := grype.LoadVulnerabilityDB(v6dist.Config{}, installation.Config{
		DBRootDir:        view,
		ValidateChecksum: true,
		ValidateAge:      false,
	}, false)
	if err != nil {
		return nil, fmt.Errorf("load vulnerability database %s: %w", dbFile, err)
	}

	d := &loadedDB{
		provider: provider,
		viewDir:  view,
		viewLock: lock,
		status: DBStatus{
			Built:         st.Built.UTC(),
			SchemaVersion: st.SchemaVersion,
			Path:          dbFile,
			Checksum:      meta.Digest,
			Source:        meta.Source,
		},
	}
	d.refs.Store(1) // the Scanner's reference
	ok = true
	return d, nil
}

// linkOrCopy hard-links src at dst, copying when linking is not possible
// (e.g. a read-only or cross-device layout).
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	} else if errors.Is(err, os.ErrNotExist) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", filepath.Base(src), err)
	}
	return out.Close()
}

// removeStaleViews deletes database views left behind by Scanners that
// were never closed (e.g. a process that exited). A view in use is locked
// by its Scanner and is kept: its database may still open new connections.
func removeStaleViews(root string) {
	parent := filepath.Join(root, openDirName)
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() || !viewIsStale(dir) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

var urlPattern = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*://`)

// importDB installs the archive or raw .db file at path into root the way
// `grype db import` does: the curator copies the database into a temp dir
// under root, hydrates it (recreating indexes, rejecting anything that is
// not a v6 database), writes the import metadata and only then swaps it
// into <root>/6. A failed import leaves the installed database untouched.
//
// An archive is not handed to the curator as it is: grype unpacks archives
// with no bound on their decompressed size (a 2 MB gzip wrote 2 GB before
// failing), so importDB unpacks the database file itself, stopping at
// limit bytes, and gives the curator the raw .db.
func importDB(root, path string, limit int64) error {
	if urlPattern.MatchString(path) {
		return fmt.Errorf("import %q: only local files can be imported (Airlock never downloads databases)", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("import %s: is a directory, want a database archive or .db file", path)
	}
	if fi.Size() > limit {
		return fmt.Errorf("import %s: %w", path, limitError(fmt.Sprintf("the file is %s, over the import limit of %s (scan.db_max_size)", exactSize(fi.Size()), humanSize(limit))))
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create database root: %w", err)
	}

	before := importTempDirs(root)
	defer func() {
		// The curator keeps the temp dir of a failed import "for
		// investigation"; don't let failed imports pile up.
		for name := range importTempDirs(root) {
			if !before[name] {
				_ = os.RemoveAll(filepath.Join(root, name))
			}
		}
	}()

	src := abs
	if !strings.HasSuffix(abs, ".db") {
		// Unpacked under root: the same file system as the installed
		// database, which the disk-space planning for the DB covers.
		tmp, err := os.MkdirTemp(root, extractPrefix)
		if err != nil {
			return fmt.Errorf("import %s: create unpack dir: %w", path, err)
		}
		defer os.RemoveAll(tmp)
		if src, err = extractDB(abs, tmp, limit); err != nil {
			return fmt.Errorf("import %s: %w", path, err)
		}
	}

	client, err := v6dist.NewClient(v6dist.Config{})
	if err != nil {
		return fmt.Errorf("create database client: %w", err)
	}
	curator, err := installation.NewCurator(installation.Config{DBRootDir: root}, client)
	if err != nil {
		return fmt.Errorf("create database curator: %w", err)
	}
	if err := curator.Import(src); err != nil {
		return fmt.Errorf("import vulnerability database from %s: %w", path, err)
	}
	return nil
}

// extractDB unpacks the database file (vulnerability.db at the archive's
// top level, where grype puts it) from the archive at file into dir and
// returns its path. Everything else in the archive is read past: the
// curator writes its own import metadata.
//
// What the archive may cost is bounded: the decompressed stream stops
// limit+archiveSlack bytes in, the database file at limit bytes (also when
// its header claims more, as a sparse entry can), and the archive at
// maxArchiveEntries entries. Entries that would land outside dir are an
// error, as they are for grype.
func extractDB(file, dir string, limit int64) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ctx := context.Background()
	format, stream, err := archives.Identify(ctx, filepath.Base(file), f)
	if err != nil {
		if errors.Is(err, archives.NoMatch) {
			return "", errors.New("not a database archive (.tar.gz, .tar.zst, .tar.xz as grype distributes them) or a .db file")
		}
		return "", fmt.Errorf("identify archive: %w", err)
	}

	tooLarge := func() error {
		return limitError(fmt.Sprintf("the archive expands past the import limit of %s (scan.db_max_size); unpacking stopped there", humanSize(limit)))
	}
	var ex archives.Extractor
	switch fm := format.(type) {
	case archives.CompressedArchive:
		if fm.Extraction == nil {
			return "", fmt.Errorf("unsupported archive format %s", fm.Extension())
		}
		rd := stream
		if fm.Compression != nil {
			rc, err := fm.Compression.OpenReader(stream)
			if err != nil {
				return "", fmt.Errorf("open %s stream: %w", fm.Extension(), err)
			}
			defer rc.Close()
			rd = rc
		}
		// Bound decompression itself, so that entries read past
		// (not written) cannot make the import run on either.
		stream = &cappedReader{r: rd, left: limit + archiveSlack, err: tooLarge}
		ex = fm.Extraction
	case archives.Tar:
		stream = &cappedReader{r: stream, left: limit + archiveSlack, err: tooLarge}
		ex = fm
	case archives.Extractor:
		// Formats with per-entry compression (zip) need the file itself
		// (io.ReaderAt); they decompress only the entry opened below,
		// which the per-file bound covers.
		ex = fm
	default:
		return "", errors.New("not a database archive (.tar.gz, .tar.zst, .tar.xz as grype distributes them) or a .db file")
	}

	out := filepath.Join(dir, v6.VulnerabilityDBFileName)
	found, entries := false, 0
	err = ex.Extract(ctx, stream, func(_ context.Context, fi archives.FileInfo) error {
		entries++
		if entries > maxArchiveEntries {
			return fmt.Errorf("the archive has more than %d entries; a grype database archive has two", maxArchiveEntries)
		}
		name := path.Clean(strings.ReplaceAll(fi.NameInArchive, `\`, "/"))
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q points outside the archive", fi.NameInArchive)
		}
		if name != v6.VulnerabilityDBFileName || !fi.Mode().IsRegular() || fi.LinkTarget != "" {
			return nil
		}
		if found {
			return fmt.Errorf("the archive holds %s twice", v6.VulnerabilityDBFileName)
		}
		found = true
		if fi.Size() > limit {
			return limitError(fmt.Sprintf("%s in the archive is %s, over the import limit of %s (scan.db_max_size)", v6.VulnerabilityDBFileName, exactSize(fi.Size()), humanSize(limit)))
		}
		return copyBounded(fi, out, limit, tooLarge)
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("the archive has no %s at its top level", v6.VulnerabilityDBFileName)
	}
	return out, nil
}

// copyBounded writes the archive entry fi to the new file out, failing
// with tooLarge() once more than limit bytes came out of it.
func copyBounded(fi archives.FileInfo, out string, limit int64, tooLarge func() error) error {
	rc, err := fi.Open()
	if err != nil {
		return fmt.Errorf("open %s in the archive: %w", fi.NameInArchive, err)
	}
	defer rc.Close()
	w, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", fi.NameInArchive, err)
	}
	n, err := io.Copy(w, io.LimitReader(rc, limit+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	switch {
	case n > limit:
		return tooLarge()
	case err != nil:
		return fmt.Errorf("unpack %s: %w", fi.NameInArchive, err)
	}
	return nil
}

// cappedReader reads from r until left bytes have been read, then fails
// with err() instead of reading further.
type cappedReader struct {
	r    io.Reader
	left int64
	err  func() error
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.err()
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// limitError is an import stopped by the size limit: its message says
// which limit and where, and it matches ErrDBTooLarge.
type limitError string

func (e limitError) Error() string        { return string(e) }
func (e limitError) Is(target error) bool { return target == ErrDBTooLarge }

// exactSize formats n in binary units and in bytes: "1.0 MiB (1048577
// bytes)" must not read as equal to a 1.0 MiB limit.
func exactSize(n int64) string {
	if n < 1<<10 {
		return humanSize(n)
	}
	return fmt.Sprintf("%s (%d bytes)", humanSize(n), n)
}

// humanSize formats n bytes in binary units, as config sizes are written.
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// listingTimeout bounds fetching a database listing.
const listingTimeout = 30 * time.Second

// updateDB does what `grype db update` does, with ctx honoured throughout:
// it fetches the listing at listingURL, and if it offers a v6 database
// built after current (nil: none installed) it downloads the archive,
// verifies its checksum against the listing and installs it with the
// curator's Import. It reports whether it installed one.
func updateDB(ctx context.Context, root, listingURL string, current *DBStatus, limit int64) (bool, error) {
	u, err := url.Parse(listingURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return false, fmt.Errorf("update: %q is not an http(s) URL", listingURL)
	}
	if !strings.HasSuffix(u.Path, ".json") {
		// grype's convention: a base URL means <base>/v6/latest.json.
		u.Path = strings.TrimRight(u.Path, "/") + fmt.Sprintf("/v%d/%s", v6.ModelVersion, v6dist.LatestFileName)
	}

	lctx, cancel := context.WithTimeout(ctx, listingTimeout)
	defer cancel()
	body, err := httpGet(lctx, u.String())
	if err != nil {
		return false, fmt.Errorf("update: fetch listing: %w", err)
	}
	doc, err := v6dist.NewLatestFromReader(io.LimitReader(body, listingMaxBytes))
	body.Close()
	if err != nil {
		return false, fmt.Errorf("update: listing %s: %w", u, err)
	}
	if doc == nil || doc.Path == "" || doc.Checksum == "" {
		return false, fmt.Errorf("update: listing %s names no database archive", u)
	}
	if doc.SchemaVersion.Model != v6.ModelVersion {
		return false, fmt.Errorf("update: listing %s offers a v%d database, want v%d", u, doc.SchemaVersion.Model, v6.ModelVersion)
	}
	if current != nil && !doc.Built.After(current.Built) {
		return false, nil
	}

	// The archive path is relative to the listing's location.
	au := *u
	au.Path = path.Join(path.Dir(u.Path), path.Clean("/"+doc.Path))
	au.RawQuery = ""

	if err := os.MkdirAll(root, 0o700); err != nil {
		return false, fmt.Errorf("create database root: %w", err)
	}
	tmp, err := os.MkdirTemp(root, "tmp-download-")
	if err != nil {
		return false, fmt.Errorf("update: create download dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	// Keep the archive's name: its extension tells the curator how to
	// unpack it.
	file := filepath.Join(tmp, path.Base(au.Path))
	if err := download(ctx, au.String(), file, doc.Checksum, limit); err != nil {
		return false, fmt.Errorf("update: %w", err)
	}
	if err := importDB(root, file, limit); err != nil {
		return false, err
	}
	return true, nil
}

func httpGet(ctx context.Context, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "airlock")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return resp.Body, nil
}

// download writes the body of u to file and checks it against checksum
// ("sha256:<hex>", as grype listings give it). A body over limit bytes is
// cut off there: the archive could not be imported anyway.
func download(ctx context.Context, u, file, checksum string, limit int64) error {
	algo, want, ok := strings.Cut(checksum, ":")
	if !ok || algo != "sha256" {
		return fmt.Errorf("archive checksum %q: want sha256:<hex>", checksum)
	}
	body, err := httpGet(ctx, u)
	if err != nil {
		return fmt.Errorf("download archive: %w", err)
	}
	defer body.Close()
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("create archive file: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, limit+1))
	if err != nil {
		f.Close()
		return fmt.Errorf("download archive %s: %w", u, err)
	}
	if n > limit {
		f.Close()
		return fmt.Errorf("download archive %s: %w", u, limitError(fmt.Sprintf("larger than the import limit of %s (scan.db_max_size); download stopped there", humanSize(limit))))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write archive file: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(want) {
		return fmt.Errorf("archive %s: checksum sha256:%s, listing says %s", u, got, checksum)
	}
	return nil
}

// importTempDirs lists the curator's import temp dirs under root.
func importTempDirs(root string) map[string]bool {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	prefix := fmt.Sprintf("tmp-v%d-import", v6.ModelVersion)
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			out[e.Name()] = true
		}
	}
	return out
}
