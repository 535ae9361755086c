// Package clamdtest runs a real clamd (Debian's clamav-daemon) for tests,
// with a signature database written at run time: no signatures can be
// downloaded here, and nothing on disk should trip an antivirus. The
// database detects the EICAR test file (an MD5 signature, .hdb) and a
// marker string anywhere in a file (a body signature, .ndb).
package clamdtest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Signature names as clamd reports them (custom databases are "UNOFFICIAL").
const (
	EICARSignature  = "Airlock.Test.EICAR.UNOFFICIAL"
	MarkerSignature = "Airlock.Test.Marker.UNOFFICIAL"
)

// EICAR returns the EICAR anti-virus test file, assembled at run time.
func EICAR() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-FILE!$H+H*")
}

// Marker returns the bytes the body signature matches anywhere in a file.
func Marker() []byte { return []byte("AIRLOCK-MALWARE-" + "TEST-MARKER-7f3a") }

// Option configures Start.
type Option func(*options)

type options struct{ streamMax string }

// WithStreamMaxLength sets clamd's StreamMaxLength (e.g. "1M"), the most
// it reads of one INSTREAM before it refuses.
func WithStreamMaxLength(v string) Option { return func(o *options) { o.streamMax = v } }

// Server is a clamd started by a test.
type Server struct {
	// Address is the clamd address for malware.clamd: unix:///….
	Address string
	dir     string
	socket  string
	conf    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start writes the database and a config under a temp dir, starts clamd
// and waits until it answers. It is stopped at the end of the test. A
// missing clamd skips the test, unless CI or AIRLOCK_REQUIRE_CLAMD is set.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{streamMax: "256M"}
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := exec.LookPath("clamd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/clamd", "/usr/local/sbin/clamd"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("AIRLOCK_REQUIRE_CLAMD") == "1" {
			t.Fatalf("clamdtest: clamd is required but not installed (Debian package clamav-daemon): %v", err)
		}
		t.Skip("clamdtest: clamd not installed (Debian package clamav-daemon; scripts/install-e2e-tools.sh)")
	}
	// Not t.TempDir: unix socket paths are limited to ~107 bytes.
	dir, err := os.MkdirTemp("", "clamd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{dir: dir, socket: filepath.Join(dir, "clamd.sock"), conf: filepath.Join(dir, "clamd.conf")}
	s.Address = "unix://" + s.socket
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	e := EICAR()
	sum := md5.Sum(e)
	files := map[string]string{
		"airlock-test.hdb": fmt.Sprintf("%s:%d:Airlock.Test.EICAR\n", hex.EncodeToString(sum[:]), len(e)),
		"airlock-test.ndb": fmt.Sprintf("Airlock.Test.Marker:0:*:%s\n", hex.EncodeToString(Marker())),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(db, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := strings.Join([]string{
		"Foreground yes",
		"LocalSocket " + s.socket,
		"DatabaseDirectory " + db,
		"LogFile " + filepath.Join(dir, "clamd.log"),
		"StreamMaxLength " + o.streamMax,
		"MaxFileSize 256M",
		"MaxScanSize 512M",
		"MaxThreads 4",
		"SelfCheck 3600",
	}, "\n") + "\n"
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start(t, bin)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(t testing.TB, bin string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out, err := os.Create(filepath.Join(s.dir, "clamd.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "-c", s.conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("clamdtest: start clamd: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("unix", s.socket, time.Second); err == nil {
			_, _ = c.Write([]byte("zPING\x00"))
			b := make([]byte, 16)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _ := c.Read(b)
			c.Close()
			if strings.HasPrefix(string(b[:n]), "PONG") {
				return
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "clamd.out"))
			t.Fatalf("clamdtest: clamd exited at start:\n%s", log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("clamdtest: clamd did not answer PING within 60s")
}

// Config is the path of clamd's config file (clamdscan --config-file).
func (s *Server) Config() string { return s.conf }

// DBDir is clamd's DatabaseDirectory.
func (s *Server) DBDir() string { return filepath.Join(s.dir, "db") }

// AddBodySignature writes a new body signature (.ndb) named name that
// matches body anywhere in a file, as freshclam or an operator would add
// signatures: clamd sees it only after a reload.
func (s *Server) AddBodySignature(t testing.TB, name string, body []byte) {
	t.Helper()
	line := fmt.Sprintf("%s:0:*:%s\n", name, hex.EncodeToString(body))
	if err := os.WriteFile(filepath.Join(s.DBDir(), strings.ToLower(name)+".ndb"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Stop stops clamd (by its PID) and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	os.Remove(s.socket)
}

// Restart starts clamd again after Stop.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	bin, _ := exec.LookPath("clamd")
	if bin == "" {
		bin = "/usr/sbin/clamd"
	}
	s.start(t, bin)
}
