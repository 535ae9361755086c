// Package pgtest starts real, throwaway PostgreSQL servers for tests.
//
// It uses the server binaries of Debian's postgresql package
// (/usr/lib/postgresql/<major>/bin, which is not on PATH), falling back to
// initdb/postgres found on PATH. Each [Start] runs its own initdb into a
// fresh temp dir and its own postmaster on a free 127.0.0.1 port, so test
// binaries running in parallel (go test ./...) never share a server. Tests
// isolate themselves from each other with [Server.NewDatabase]; one server
// per package is enough.
//
// When the binaries are missing the test is skipped, unless the environment
// variable AIRLOCK_REQUIRE_POSTGRES is "1" (CI), in which case it fails.
//
// The package is Linux-only: it relies on the parent-death signal, System V
// shared memory and /proc to manage the postmaster and its children.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv is the environment variable that turns "PostgreSQL binaries
// missing" from a skip into a failure. CI sets it to "1" so that a broken
// install cannot silently skip every database test.
const RequireEnv = "AIRLOCK_REQUIRE_POSTGRES"

const (
	// superuser is the role initdb creates (-U); all DSNs use it.
	superuser = "airlock"
	// defaultDB is the database Start creates and DSN points at.
	defaultDB = "airlock"
	// readyTimeout bounds how long a (re)start may take until a connection
	// succeeds. Crash recovery after Kill is included in it.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a fast shutdown before escalating to an immediate
	// shutdown (SIGQUIT) and finally SIGKILL.
	stopTimeout = 30 * time.Second
	// orphanTimeout bounds how long Kill waits for the backends of a killed
	// postmaster to notice its death and exit on their own.
	orphanTimeout = 10 * time.Second
	// portAttempts is how many free ports Start tries: the port is only
	// reserved between our probe listener's Close and postgres' bind, so a
	// parallel test binary can steal it.
	portAttempts = 5
	// logTailBytes is how much of the server log failure messages include.
	logTailBytes = 4096
)

// Server is a PostgreSQL server started by a test.
//
// Its methods are safe for concurrent use. The data directory lives in a
// temp dir that is removed when the test that called [Start] ends.
type Server struct {
	binDir  string // dir holding initdb and postgres
	root    string // temp dir holding everything below; removed in cleanup
	dataDir string
	sockDir string
	logPath string
	// port is chosen by Start before the Server is handed out and never
	// changes afterwards (Restart reuses it), so it is read without s.mu.
	port int

	// cred is the postgres system user's identity when we run as root
	// (postgres refuses to run as root); nil otherwise.
	cred *syscall.Credential

	dbSeq atomic.Int64 // makes NewDatabase names unique

	mu   sync.Mutex
	proc *postmaster // the running postmaster; nil when stopped
}

// postmaster is one run of the postgres server process.
type postmaster struct {
	cmd     *exec.Cmd
	pid     int
	done    chan struct{} // closed once cmd.Wait returned
	waitErr error         // cmd.Wait's result; read only after done is closed
}

// exited reports whether the process has exited (and been reaped).
func (p *postmaster) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the process to exit and reports whether it did.
func (p *postmaster) waitExit(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}

// Start runs initdb into a temp dir and starts postgres listening only on
// 127.0.0.1:<free port> and a unix socket in a temp dir; it registers
// t.Cleanup to stop it (fast shutdown of the postmaster by PID, then wait;
// no other process is ever signalled) and remove the temp dir. Start skips
// the test with a clear message when the binaries are missing, unless the
// environment variable AIRLOCK_REQUIRE_POSTGRES is "1", in which case it
// fails the test instead.
func Start(t testing.TB) *Server {
	t.Helper()
	begin := time.Now()

	binDir, err := findBinDir()
	if err != nil {
		unavailable(t, err)
	}
	s := &Server{binDir: binDir}

	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		// postgres and initdb refuse to run as root ("root execution of the
		// PostgreSQL server is not permitted"), so run them as the system
		// user the Debian package creates.
		u, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, fmt.Errorf("running as root, but cannot find the postgres system user to run the server as: %w", err))
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			t.Fatalf("pgtest: postgres user uid %q: %v", u.Uid, err)
		}
		if gid, err = strconv.Atoi(u.Gid); err != nil {
			t.Fatalf("pgtest: postgres user gid %q: %v", u.Gid, err)
		}
		// No Groups: the supplementary groups are cleared, so root's do not
		// leak into the server (it needs none of the postgres user's).
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}

	// Not t.TempDir: its parents are 0700 and root-owned on some setups, so
	// the postgres user could not reach a data dir below it.
	root, err := os.MkdirTemp(os.TempDir(), "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: create temp dir: %v", err)
	}
	s.root = root
	// Registered before the stop cleanup so that it runs after it (cleanups
	// run last-in first-out): the server must be down before its files go.
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("pgtest: remove %s: %v", root, err)
		}
	})
	s.dataDir = filepath.Join(root, "data")
	s.sockDir = filepath.Join(root, "sock")
	s.logPath = filepath.Join(root, "postgres.log")
	if err := s.prepareDirs(uid, gid); err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	if err := s.initdb(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%v\n%s", err, s.logTail())
		}
		if err := s.removeStaleShm(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})

	var lastErr error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		logOffset := fileSize(s.logPath)
		s.port = port
		s.mu.Lock()
		lastErr = s.startLocked()
		s.mu.Unlock()
		if lastErr == nil {
			break
		}
		if !bindFailed(s.logPath, logOffset) {
			break
		}
		t.Logf("pgtest: port %d was taken before postgres could bind it (attempt %d/%d), retrying with another", port, attempt, portAttempts)
	}
	if lastErr != nil {
		t.Fatalf("pgtest: %v\n%s", lastErr, s.logTail())
	}

	if err := s.exec(s.dsnFor("postgres"), "CREATE DATABASE "+pgx.Identifier{defaultDB}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v\n%s", defaultDB, err, s.logTail())
	}
	t.Logf("pgtest: PostgreSQL (%s) ready on 127.0.0.1:%d in %v; data in %s", binDir, s.port, time.Since(begin).Round(time.Millisecond), s.dataDir)
	return s
}

// unavailable skips the test because PostgreSQL cannot be run here, or fails
// it when AIRLOCK_REQUIRE_POSTGRES=1 says PostgreSQL must be available.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("pgtest: PostgreSQL is required (%s=1) but unavailable: %v", RequireEnv, err)
	}
	t.Skipf("pgtest: skipping, PostgreSQL is unavailable: %v (install Debian's postgresql package, e.g. scripts/install-e2e-tools.sh; set %s=1 to fail instead of skipping)", err, RequireEnv)
}

// findBinDir returns the bin dir of the newest PostgreSQL major installed
// under /usr/lib/postgresql (Debian's layout, which keeps several majors side
// by side and does not put the server binaries on PATH), or else the dir of
// an initdb found on PATH (other distributions).
func findBinDir() (string, error) {
	const debianRoot = "/usr/lib/postgresql"
	entries, _ := os.ReadDir(debianRoot)
	best, bestVer := "", []int(nil)
	for _, e := range entries {
		ver, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		dir := filepath.Join(debianRoot, e.Name(), "bin")
		if !isExecutable(filepath.Join(dir, "initdb")) || !isExecutable(filepath.Join(dir, "postgres")) {
			continue
		}
		if best == "" || versionLess(bestVer, ver) {
			best, bestVer = dir, ver
		}
	}
	if best != "" {
		return best, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("no initdb and postgres binaries in %s/<major>/bin or on PATH", debianRoot)
}

// parseVersion parses a Debian major dir name such as "15" or "9.6".
func parseVersion(name string) ([]int, bool) {
	var ver []int
	for _, part := range strings.Split(name, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, false
		}
		ver = append(ver, n)
	}
	return ver, true
}

// versionLess reports whether version a sorts before version b.
func versionLess(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// prepareDirs creates the socket dir and log file and, when the server runs
// as another user (uid >= 0), hands the temp dir over to it and makes sure
// that user can reach it.
func (s *Server) prepareDirs(uid, gid int) error {
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	if uid < 0 {
		return nil
	}
	for _, p := range []string{s.root, s.sockDir, s.logPath} {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("hand %s to the postgres user: %w", p, err)
		}
	}
	// The postgres user must be able to traverse every parent of the temp
	// dir. /tmp is 1777, but TMPDIR may point into a root-only directory:
	// add the search bits where they are missing (we are root here).
	for dir := filepath.Dir(s.root); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("stat %s: %w", dir, err)
		}
		if mode := fi.Mode().Perm(); mode&0o001 == 0 {
			if err := os.Chmod(dir, mode|0o755); err != nil {
				return fmt.Errorf("make %s reachable by the postgres user: %w", dir, err)
			}
		}
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	return nil
}

// command builds a command running one of the server binaries as the server
// user, with an environment that cannot redirect it elsewhere.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	// Our working directory (the package dir) may not be readable by the
	// postgres user, and initdb/postgres resolve the current directory.
	cmd.Dir = s.root
	cmd.Env = serverEnv()
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// serverEnv is the environment for initdb and postgres: ours without PG*
// variables (PGDATA, PGPORT, ... would override our flags or leak a
// developer's settings) and with the C locale, so that initdb works whatever
// locales are installed and log messages are English (bindFailed greps them).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// initdb creates the cluster. Trust authentication is fine for a throwaway
// server bound to 127.0.0.1 and a private socket dir; --no-sync because the
// data is worthless after the test.
func (s *Server) initdb() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := s.command(ctx, "initdb",
		"-D", s.dataDir,
		"-A", "trust",
		"-U", superuser,
		"--no-sync",
		"-E", "UTF8",
		// No locale: independent of the locales installed on the host.
		"--no-locale",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", s.dataDir, err, out)
	}
	return nil
}

// startLocked starts the postmaster on s.port and waits until it accepts
// connections. s.mu must be held and no postmaster may be running.
func (s *Server) startLocked() error {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open server log: %w", err)
	}
	// Not CommandContext: the server outlives this call.
	cmd := s.command(context.Background(), "postgres",
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-k", s.sockDir,
		"-c", "listen_addresses=127.0.0.1",
		// Surviving an OS crash is pointless for a throwaway server, and
		// not fsyncing makes commits and CREATE DATABASE much faster.
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		// But synchronous_commit stays on (the default): with fsync=off it
		// costs only a write(2) per commit (no measurable difference in
		// 3000-commit runs), and it is what makes Kill realistic. With it
		// off, a commit acknowledged just before Kill may still sit in WAL
		// buffers in shared memory and be lost by crash recovery, which a
		// real server (synchronous_commit=on) never does; tests asserting
		// that committed data survives a crash would then flake.
		// Room for many tests' connection pools on one server.
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Own process group, so that a Ctrl-C on the terminal reaches only the
	// test binary, whose cleanups then stop the server in order.
	cmd.SysProcAttr.Setpgid = true
	// If the test binary dies without running cleanups (test timeout panic,
	// os.Exit, SIGKILL), the kernel sends the postmaster SIGQUIT (immediate
	// shutdown) instead of leaving it running forever. The Go runtime sets
	// it after switching credentials, which would otherwise clear it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	err = cmd.Start()
	// The child has its own copy of the descriptor.
	_ = logFile.Close()
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p := &postmaster{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	if err := s.waitReady(p); err != nil {
		// Do not leave a half-started server behind. A postmaster that
		// already exited (say, it could not bind the port) needs no stop.
		if p.exited() {
			s.proc = nil
		} else if stopErr := s.stopLocked(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return err
	}
	return nil
}

// waitReady polls with real connections, not sleeps, until the server
// accepts them (which after a crash includes finishing recovery), the
// postmaster exits, or readyTimeout passes.
func (s *Server) waitReady(p *postmaster) error {
	deadline := time.Now().Add(readyTimeout)
	cfg, err := pgx.ParseConfig(s.dsnFor("postgres"))
	if err != nil {
		return fmt.Errorf("parse DSN: %w", err)
	}
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("postgres (pid %d) exited during startup: %v", p.pid, p.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres (pid %d) not accepting connections on 127.0.0.1:%d after %v: %w", p.pid, s.port, readyTimeout, lastErr)
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// bindFailed reports whether the server log written after offset says the
// TCP port could not be bound (another process took it).
func bindFailed(logPath string, offset int64) bool {
	b, err := os.ReadFile(logPath)
	if err != nil || int64(len(b)) < offset {
		return false
	}
	b = b[offset:]
	return bytes.Contains(b, []byte("could not bind")) || bytes.Contains(b, []byte("could not create any TCP/IP sockets"))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the end of the server log, for failure messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(server log %s unreadable: %v)", s.logPath, err)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return fmt.Sprintf("--- tail of server log %s ---\n%s--- end of server log ---", s.logPath, b)
}

// DSN returns the URL of the database Start created, for example
// postgres://airlock@127.0.0.1:5432/airlock?sslmode=disable. It stays valid
// across Restart.
func (s *Server) DSN() string {
	return s.dsnFor(defaultDB)
}

func (s *Server) dsnFor(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, s.port, db)
}

// exec runs one statement on a short-lived connection to dsn.
func (s *Server) exec(dsn, sql string) error {
	return withConn(dsn, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	})
}

// NewDatabase creates a database with a unique name and returns its DSN.
// Tests isolate themselves this way, so one server per package is enough.
// The database is dropped when t ends (forcibly, closing leftover
// connections) if the server is still running then.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := s.dbName(t.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := s.exec(s.DSN(), "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: create database %s: %v\n%s", name, err, s.logTail())
	}
	t.Cleanup(func() {
		if !s.running() {
			return // stopped or killed by the test; the temp dir goes anyway
		}
		if err := s.exec(s.DSN(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.dsnFor(name)
}

// dbName derives a unique, readable database name from a test name: t<seq>_
// followed by the lowercased test name with anything but [a-z0-9_] replaced,
// cut to PostgreSQL's 63-byte identifier limit.
func (s *Server) dbName(testName string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t%d_", s.dbSeq.Add(1))
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 63 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// running reports whether a postmaster is running.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Stop stops the server with a fast shutdown (clients are disconnected,
// committed data is kept) and waits for it to exit. The data dir is kept,
// so Restart can bring the server back. Stopping a stopped server is a
// no-op; it is an error if the server had exited on its own.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// stopLocked implements Stop; s.mu must be held.
//
// It sends SIGINT, which is postgres' fast shutdown: SIGTERM would be a
// smart shutdown, which waits for every client to disconnect and so hangs
// on any connection pool a test forgot to close. Only the postmaster's PID
// is signalled (through os.Process, which cannot hit a reused PID once the
// process is reaped); the postmaster stops its own children.
func (s *Server) stopLocked() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if p.exited() {
		return fmt.Errorf("postgres (pid %d) had already exited: %v", p.pid, p.waitErr)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil && !p.exited() {
		return fmt.Errorf("stop postgres (pid %d): %w", p.pid, err)
	}
	if p.waitExit(stopTimeout) {
		if p.waitErr != nil {
			return fmt.Errorf("stop postgres (pid %d): fast shutdown: %w", p.pid, p.waitErr)
		}
		return nil
	}
	// Escalate: immediate shutdown (the postmaster still takes its children
	// down), then SIGKILL of the postmaster alone.
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	if !p.waitExit(10 * time.Second) {
		shm, haveShm := s.shmOf()
		_ = p.cmd.Process.Kill()
		<-p.done
		if haveShm {
			_ = waitDetached(shm)
		}
	}
	return fmt.Errorf("stop postgres (pid %d): no fast shutdown within %v, forced", p.pid, stopTimeout)
}

// Restart stops the server (fast shutdown; nothing to do after Kill) and
// starts it again on the same port and data dir, waiting until it accepts
// connections. Tests use it to simulate a database restart: connections are
// dropped, committed data survives. After Kill, startup includes crash
// recovery.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		t.Fatalf("pgtest: restart: %v\n%s", err, s.logTail())
	}
	if err := s.startLocked(); err != nil {
		t.Fatalf("pgtest: restart on port %d: %v\n%s", s.port, err, s.logTail())
	}
}

// Kill simulates a crash: it sends SIGKILL to the postmaster only, as the
// kernel's OOM killer would, and keeps the data dir. It returns once the
// postmaster is gone and its orphaned backends have exited (they notice the
// postmaster's death on their own), because a new postmaster refuses to
// start while they are still attached to the old shared memory. Restart
// after Kill works and runs crash recovery.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return errors.New("pgtest: kill: postgres is not running")
	}
	s.proc = nil
	if p.exited() {
		return fmt.Errorf("pgtest: kill: postgres (pid %d) had already exited: %v", p.pid, p.waitErr)
	}
	shm, haveShm := s.shmOf()
	if err := p.cmd.Process.Kill(); err != nil && !p.exited() {
		return fmt.Errorf("pgtest: kill postgres (pid %d): %w", p.pid, err)
	}
	<-p.done
	if !haveShm {
		return fmt.Errorf("pgtest: kill postgres (pid %d): no shared memory segment in %s/postmaster.pid, cannot tell when its backends are gone", p.pid, s.dataDir)
	}
	if err := waitDetached(shm); err != nil {
		return fmt.Errorf("pgtest: kill postgres (pid %d): %w", p.pid, err)
	}
	return nil
}

// sysvShm identifies the small System V shared memory segment a postmaster
// creates next to its main (anonymous) shared memory. PostgreSQL uses its
// attach count to tell whether processes of an old postmaster are still
// around: a new postmaster refuses to start while it is non-zero.
type sysvShm struct{ key, id int }

// shmOf reads the segment's key and ID from line 7 of postmaster.pid, which
// a running (or crashed) postmaster leaves in the data dir and a clean
// shutdown removes.
func (s *Server) shmOf() (sysvShm, bool) {
	b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
	if err != nil {
		return sysvShm{}, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 {
		return sysvShm{}, false
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return sysvShm{}, false
	}
	key, err1 := strconv.Atoi(f[0])
	id, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return sysvShm{}, false
	}
	return sysvShm{key: key, id: id}, true
}

// attachments returns the segment's attach count from /proc/sysvipc/shm;
// found is false once the segment is gone.
func (m sysvShm) attachments() (n int, found bool, err error) {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// key shmid perms size cpid lpid nattch ...
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != strconv.Itoa(m.key) || f[1] != strconv.Itoa(m.id) {
			continue
		}
		n, err := strconv.Atoi(f[6])
		if err != nil {
			return 0, false, fmt.Errorf("parse /proc/sysvipc/shm line %q: %w", line, err)
		}
		return n, true, nil
	}
	return 0, false, nil
}

// waitDetached waits until every process of a dead postmaster has detached
// from its shared memory, that is until its orphaned backends and auxiliary
// processes have exited. They do so on their own once they notice the
// postmaster is gone, usually within milliseconds; they are not signalled
// because they cannot be found safely: each calls setsid(), so they share
// no process group with the postmaster, and after its death their parent is
// init. Zombies do not count (they have detached), so this does not depend
// on the container's init reaping them.
func waitDetached(m sysvShm) error {
	deadline := time.Now().Add(orphanTimeout)
	for {
		n, found, err := m.attachments()
		if err != nil {
			return fmt.Errorf("check shared memory of the dead server: %w", err)
		}
		if !found || n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes of the dead server still attached to its shared memory (key %d, id %d) after %v", n, m.key, m.id, orphanTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeStaleShm removes the shared memory segment a killed postmaster left
// behind (a clean shutdown or the next start removes it; a test ending right
// after Kill does neither). Only a segment that matches postmaster.pid's key
// and ID and has no attached process is removed.
func (s *Server) removeStaleShm() error {
	m, ok := s.shmOf()
	if !ok {
		return nil
	}
	if err := waitDetached(m); err != nil {
		return err
	}
	if _, found, err := m.attachments(); err != nil || !found {
		return err
	}
	const ipcRmid = 0
	if _, _, errno := syscall.Syscall(syscall.SYS_SHMCTL, uintptr(m.id), ipcRmid, 0); errno != 0 && errno != syscall.EINVAL && errno != syscall.EIDRM {
		return fmt.Errorf("remove shared memory segment %d of the killed server: %w", m.id, errno)
	}
	return nil
}
