package scan_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v6dist "github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/klauspost/compress/zstd"

	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/internal/vulndbtest"
	"github.com/airlockproxy/airlock/scan"
)

// tarEntry is one entry of a hand-made archive: size bytes of zeros unless
// body is set.
type tarEntry struct {
	name string
	size int64
	body []byte
	typ  byte
	link string
}

// writeArchive writes entries as a tar compressed with comp ("gz", "zst" or
// "" for none) to dir/name and returns its path. Zeros compress about
// 1000:1, so a small file expands to a lot.
func writeArchive(t testing.TB, dir, name, comp string, entries ...tarEntry) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.WriteCloser
	switch comp {
	case "gz":
		w = gzip.NewWriter(f)
	case "zst":
		if w, err = zstd.NewWriter(f); err != nil {
			t.Fatal(err)
		}
	default:
		w = nopCloser{f}
	}
	tw := tar.NewWriter(w)
	zeros := make([]byte, 1<<20)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := e.size
		if e.body != nil {
			size = int64(len(e.body))
		}
		if typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Size: size, Mode: 0o644, Typeflag: typ, Linkname: e.link, ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if e.body != nil {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for left := size; left > 0; {
			n := min(left, int64(len(zeros)))
			if _, err := tw.Write(zeros[:n]); err != nil {
				t.Fatal(err)
			}
			left -= n
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// treeSize returns the number of files under root and their total size.
func treeSize(t testing.TB, root string) (int, int64) {
	t.Helper()
	files, size := 0, int64(0)
	err := filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		size += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, size
}

// TestImportBounded: archives that expand past the import limit, escape
// the archive or hold absurdly many entries fail quickly, name the
// problem, write nothing that stays, and leave the installed database in
// use. It failed before the bound: a gzip of zeros was unpacked in full.
func TestImportBounded(t *testing.T) {
	const limit = 1 << 20 // 1 MiB: a real DB never fits, the test fixtures do
	dir := t.TempDir()
	db := tarEntry{name: "vulnerability.db", size: 64 << 20}
	many := make([]tarEntry, 1000)
	for i := range many {
		many[i] = tarEntry{name: fmt.Sprintf("f%04d", i), body: []byte{}}
	}
	raw := filepath.Join(dir, "big.db")
	if err := os.WriteFile(raw, make([]byte, limit+1), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(dir), "airlock-escaped.db")
	for _, tc := range []struct {
		name    string
		archive string
		want    []string
		tooBig  bool
	}{
		{"gzip bomb", writeArchive(t, dir, "bomb.tar.gz", "gz", db), []string{"1.0 MiB", "scan.db_max_size"}, true},
		{"zstd bomb", writeArchive(t, dir, "bomb.tar.zst", "zst", db), []string{"1.0 MiB", "scan.db_max_size"}, true},
		{"plain tar over the limit", writeArchive(t, dir, "big.tar", "", tarEntry{name: "vulnerability.db", size: 2 << 20}), []string{"scan.db_max_size"}, true},
		{"bomb in an entry that is not the DB", writeArchive(t, dir, "padded.tar.gz", "gz", tarEntry{name: "padding", size: 64 << 20}, tarEntry{name: "vulnerability.db", body: []byte("x")}), []string{"1.0 MiB"}, true},
		{"raw .db over the limit", raw, []string{"1.0 MiB", "scan.db_max_size"}, true},
		{"path traversal", writeArchive(t, dir, "escape.tar.gz", "gz", tarEntry{name: "../airlock-escaped.db", body: []byte("x")}, tarEntry{name: "vulnerability.db", body: []byte("x")}), []string{"outside the archive"}, false},
		{"absolute path", writeArchive(t, dir, "abs.tar.gz", "gz", tarEntry{name: outside, body: []byte("x")}), []string{"outside the archive"}, false},
		{"too many entries", writeArchive(t, dir, "many.tar.gz", "gz", many...), []string{"more than 64 entries"}, false},
		{"DB twice", writeArchive(t, dir, "twice.tar.gz", "gz", tarEntry{name: "vulnerability.db", body: []byte("x")}, tarEntry{name: "./vulnerability.db", body: []byte("y")}), []string{"twice"}, false},
		{"no DB", writeArchive(t, dir, "nodb.tar.gz", "gz", tarEntry{name: "readme", body: []byte("x")}), []string{"no vulnerability.db"}, false},
		{"DB as a symlink", writeArchive(t, dir, "link.tar.gz", "gz", tarEntry{name: "vulnerability.db", typ: tar.TypeSymlink, link: "/etc/passwd"}), []string{"no vulnerability.db"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newScanner(t, []scan.Option{scan.WithMaxDBSize(limit)}, alpineCritical)
			before, err := s.Status()
			if err != nil {
				t.Fatal(err)
			}
			files, size := treeSize(t, root)

			start := time.Now()
			_, err = s.Import(tc.archive)
			el := time.Since(start)
			if err == nil {
				t.Fatal("Import succeeded")
			}
			t.Logf("Import: %v (%s)", err, el.Round(time.Millisecond))
			if tc.tooBig != errors.Is(err, scan.ErrDBTooLarge) {
				t.Errorf("errors.Is(err, ErrDBTooLarge) = %v, want %v", !tc.tooBig, tc.tooBig)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
			if el > 10*time.Second {
				t.Errorf("Import took %s to fail", el)
			}

			// Nothing left behind, the old DB still installed and in use.
			if f, sz := treeSize(t, root); f != files || sz != size {
				t.Errorf("DB root: %d files, %d bytes after the import; %d, %d before", f, sz, files, size)
			}
			entries, _ := os.ReadDir(root)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "tmp-") {
					t.Errorf("import left %s behind", e.Name())
				}
			}
			if _, err := os.Stat(outside); !os.IsNotExist(err) {
				t.Errorf("an entry was written outside the archive: %s (%v)", outside, err)
				os.Remove(outside)
			}
			after, err := s.Status()
			if err != nil || after.Checksum != before.Checksum {
				t.Errorf("after the failed import: Status = %+v, %v; want checksum %s", after, err, before.Checksum)
			}
			if res := scanImage(t, s, "docker.io/library/alpine", registrytest.AlpineImage(t, "3.20.3", alpinePkgs...)); len(res.Matches) != 1 {
				t.Errorf("after the failed import: matches %q", brief(res.Matches))
			}
		})
	}
}

// TestImportAtLimit: a database exactly as large as the limit imports, one
// byte less of limit refuses it.
func TestImportAtLimit(t *testing.T) {
	arch := vulndbtest.Archive(t, alpineCritical)
	size := dbSizeInArchive(t, arch)
	s, _ := newScanner(t, []scan.Option{scan.WithMaxDBSize(size)})
	if _, err := s.Import(arch); err != nil {
		t.Fatalf("Import with the limit at the DB's size (%d): %v", size, err)
	}
	s2, _ := newScanner(t, []scan.Option{scan.WithMaxDBSize(size - 1)})
	if _, err := s2.Import(arch); !errors.Is(err, scan.ErrDBTooLarge) {
		t.Fatalf("Import with the limit one byte under the DB's size: %v, want ErrDBTooLarge", err)
	}
}

// dbSizeInArchive returns the size of vulnerability.db in a .tar.gz.
func dbSizeInArchive(t testing.TB, p string) int64 {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no vulnerability.db in %s: %v", p, err)
		}
		if filepath.Base(h.Name) == "vulnerability.db" {
			return h.Size
		}
	}
}

// TestUpdateBounded: a listing whose archive is larger than the import
// limit is refused while downloading, and nothing is left behind.
func TestUpdateBounded(t *testing.T) {
	const limit = 1 << 20
	dir := t.TempDir()
	file := filepath.Join(dir, "vulnerability-db_v6.1.10_1.tar.gz")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7919 >> 3) // incompressible enough, and deterministic
	}
	if err := os.WriteFile(file, big, 0o600); err != nil {
		t.Fatal(err)
	}
	built := time.Now().Add(time.Hour)
	a, err := v6dist.NewArchive(file, built, 6, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	var listing bytes.Buffer
	if err := v6dist.NewLatestDocument(*a).Write(&listing); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".json") {
			w.Write(listing.Bytes())
			return
		}
		_, _ = io.Copy(w, bytes.NewReader(big))
	}))
	defer srv.Close()

	s, root := newScanner(t, []scan.Option{scan.WithMaxDBSize(limit)}, alpineCritical)
	before, _ := s.Status()
	files, size := treeSize(t, root)
	ok, err := s.Update(context.Background(), srv.URL+"/v6/latest.json")
	if ok || !errors.Is(err, scan.ErrDBTooLarge) || !strings.Contains(err.Error(), "1.0 MiB") {
		t.Fatalf("Update = %v, %v; want ErrDBTooLarge naming the 1.0 MiB limit", ok, err)
	}
	t.Logf("Update: %v", err)
	if f, sz := treeSize(t, root); f != files || sz != size {
		t.Errorf("DB root: %d files, %d bytes after the update; %d, %d before", f, sz, files, size)
	}
	if after, err := s.Status(); err != nil || after.Checksum != before.Checksum {
		t.Errorf("after the refused update: %+v, %v", after, err)
	}
}
