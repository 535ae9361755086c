package pullauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// MaxCost is the highest bcrypt cost accepted in the htpasswd file. Every
// failed login does the work of the file's highest cost (so that it
// answers after the same work as a real user's), and cost 15 takes seconds
// of CPU: a file with such an entry would let each anonymous attempt
// cost that much.
const MaxCost = 14

// maxFileSize bounds the htpasswd file (a bcrypt line is ~70 bytes).
const maxFileSize = 16 << 20

// maxUserLen bounds user names; longer ones in a login are refused
// without work.
const maxUserLen = 255

// statEvery is how often, at most, the file's modification time is
// looked at on the login path.
const statEvery = time.Second

// bcryptHash is the shape of a bcrypt hash: version 2a, 2b or 2y, a
// two-digit cost, then 22 characters of salt and 31 of hash in bcrypt's
// base64 alphabet.
var bcryptHash = regexp.MustCompile(`^\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}$`)

// htpasswd is the user file: user name to bcrypt hash, read again when
// its modification time or size changes.
type htpasswd struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	checked time.Time // when the file was last looked at
	mtime   time.Time
	size    int64
	users   map[string]string
	// dummy has the file's highest cost and matches no password: unknown
	// users are checked against it, so they cost the same as known ones.
	dummy []byte
}

// openHtpasswd reads the file at path; any error in it fails (at start,
// the operator is there to fix it).
func openHtpasswd(path string, log *slog.Logger, now func() time.Time) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log, now: now}
	fi, users, dummy, err := readHtpasswd(path)
	if err != nil {
		return nil, err
	}
	h.mtime, h.size, h.users, h.dummy, h.checked = fi.ModTime(), fi.Size(), users, dummy, now()
	return h, nil
}

// user returns the hash of name, or (ok false) the dummy hash, after
// reading the file again if it changed. A file that no longer reads or
// parses keeps the users it had (a half-saved edit must not lock every
// node out); the error is logged once per change.
func (h *htpasswd) user(name string) (hash []byte, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := h.now(); now.Sub(h.checked) >= statEvery || now.Before(h.checked) {
		h.checked = now
		h.reload()
	}
	if s, ok := h.users[name]; ok {
		return []byte(s), true
	}
	return h.dummy, false
}

// reload reads the file again when its modification time or size changed.
func (h *htpasswd) reload() {
	fi, err := os.Stat(h.path)
	if err != nil {
		if !h.mtime.IsZero() {
			h.log.Error("registry.auth.htpasswd: cannot read the file; keeping the users read before", "file", h.path, "err", err)
			h.mtime, h.size = time.Time{}, -1
		}
		return
	}
	if fi.ModTime().Equal(h.mtime) && fi.Size() == h.size {
		return
	}
	h.mtime, h.size = fi.ModTime(), fi.Size()
	fi, users, dummy, err := readHtpasswd(h.path)
	if err != nil {
		h.log.Error("registry.auth.htpasswd: the file changed and is invalid; keeping the users read before", "file", h.path, "err", err)
		return
	}
	h.mtime, h.size, h.users, h.dummy = fi.ModTime(), fi.Size(), users, dummy
	h.log.Info("registry.auth.htpasswd: read again", "file", h.path, "users", len(users))
}

// fingerprint names a user's current hash in bearer tokens, so that a
// changed password or a removed user ends the tokens issued before.
func fingerprint(hash []byte) string {
	sum := sha256.Sum256(hash)
	return hex.EncodeToString(sum[:16])
}

// readHtpasswd reads and parses the file at path.
func readHtpasswd(path string) (os.FileInfo, map[string]string, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("registry.auth.htpasswd: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("registry.auth.htpasswd: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("registry.auth.htpasswd: read %s: %w", path, err)
	}
	if len(b) > maxFileSize {
		return nil, nil, nil, fmt.Errorf("registry.auth.htpasswd: %s is larger than %d bytes", path, maxFileSize)
	}
	users, maxCost, err := parseHtpasswd(string(b))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("registry.auth.htpasswd: %s: %w", path, err)
	}
	dummy, err := dummyHash(maxCost)
	if err != nil {
		return nil, nil, nil, err
	}
	return fi, users, dummy, nil
}

// parseHtpasswd reads "user:hash" lines; blank lines and lines starting
// with '#' are skipped. Every hash must be bcrypt (htpasswd -B) with a cost
// up to MaxCost: MD5 (apr1), SHA-1, crypt and plain-text entries are
// refused with the line that has them, never skipped (a user who silently
// cannot log in is a worse surprise). It returns the users and the
// highest cost (bcrypt.DefaultCost for an empty file).
func parseHtpasswd(s string) (map[string]string, int, error) {
	users := map[string]string{}
	maxCost := 0
	for i, line := range strings.Split(s, "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, 0, fmt.Errorf("line %d: want user:hash", n)
		}
		if err := checkUser(name); err != nil {
			return nil, 0, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := users[name]; dup {
			return nil, 0, fmt.Errorf("line %d: user %q is listed twice", n, name)
		}
		cost, err := checkHash(hash)
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: user %q: %w", n, name, err)
		}
		users[name] = hash
		maxCost = max(maxCost, cost)
	}
	if maxCost == 0 {
		maxCost = bcrypt.DefaultCost
	}
	return users, maxCost, nil
}

// checkUser refuses names no client could send as an HTTP Basic user.
func checkUser(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case len(name) > maxUserLen:
		return fmt.Errorf("user name longer than %d bytes", maxUserLen)
	case !utf8.ValidString(name):
		return errors.New("user name is not UTF-8")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("user %q: control character in the name", name)
		}
	}
	return nil
}

// checkHash accepts a bcrypt hash and returns its cost; other hash types
// are named in the error.
func checkHash(h string) (int, error) {
	m := bcryptHash.FindStringSubmatch(h)
	if m == nil {
		kind := "not a bcrypt hash"
		switch {
		case strings.HasPrefix(h, "$apr1$"):
			kind = "an MD5 (apr1) hash"
		case strings.HasPrefix(h, "{SHA}"):
			kind = "a SHA-1 hash"
		case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
			kind = "a SHA-crypt hash"
		case strings.HasPrefix(h, "$2"):
			kind = "a malformed bcrypt hash"
		}
		return 0, fmt.Errorf("%s; only bcrypt entries are accepted (create them with htpasswd -B)", kind)
	}
	cost, _ := strconv.Atoi(m[1])
	if cost < bcrypt.MinCost || cost > MaxCost {
		return 0, fmt.Errorf("bcrypt cost %d is outside %d..%d (htpasswd -B -C 10 is a good choice)", cost, bcrypt.MinCost, MaxCost)
	}
	return cost, nil
}

// dummyHash is a bcrypt hash of a random password with the given cost:
// made at the cheapest cost, then relabelled, so that comparing with it
// costs the full work while making it costs none.
func dummyHash(cost int) ([]byte, error) {
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	h, err := bcrypt.GenerateFromPassword(pw, bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	// "$2a$04$...": the cost is the two digits after the second '$'.
	return []byte(fmt.Sprintf("%s%02d%s", h[:4], cost, h[6:])), nil
}
