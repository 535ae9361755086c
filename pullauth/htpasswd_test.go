package pullauth

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hashOf is a bcrypt hash of pw at cost (the cheapest by default, so
// tests stay fast), with version prefix ver ("2a", "2b" or "2y").
func hashOf(t testing.TB, pw string, cost int, ver string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return "$" + ver + string(h[3:])
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestParseHtpasswd(t *testing.T) {
	alice := hashOf(t, "alice-pw", bcrypt.MinCost, "2y")
	bob := hashOf(t, "bob-pw", 6, "2a")
	carol := hashOf(t, "carol-pw", bcrypt.MinCost, "2b")
	good := "# users\n\nalice:" + alice + "\r\nbob:" + bob + "\n   \ncarol:" + carol
	users, cost, err := parseHtpasswd(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 3 || users["alice"] != alice || users["bob"] != bob || users["carol"] != carol || cost != 6 {
		t.Fatalf("parsed %v, cost %d", users, cost)
	}
	if users, cost, err := parseHtpasswd(""); err != nil || len(users) != 0 || cost != bcrypt.DefaultCost {
		t.Errorf("empty file: %v %d %v", users, cost, err)
	}

	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ name, line, want string }{
		{"no colon", "alice" + alice, "line 2: want user:hash"},
		{"empty user", ":" + alice, "line 2: empty user name"},
		{"long user", long + ":" + alice, "longer than 255"},
		{"control char", "al\x1bice:" + alice, "control character"},
		{"NUL", "al\x00ice:" + alice, "control character"},
		{"not UTF-8", "al\xffice:" + alice, "not UTF-8"},
		{"twice", "bob:" + bob, `user "bob" is listed twice`},
		{"apr1", "dave:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "MD5 (apr1)"},
		{"sha1", "dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"},
		{"sha512 crypt", "dave:$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g.", "SHA-crypt"},
		{"plain", "dave:secret", "not a bcrypt hash"},
		{"crypt", "dave:rl0uE1wIKFJ/.", "not a bcrypt hash"},
		{"short bcrypt", "dave:" + alice[:40], "malformed bcrypt"},
		{"bcrypt with a quote", "dave:" + alice[:30] + `"` + alice[31:], "malformed bcrypt"},
		{"extra field", "dave:" + alice + ":comment", "malformed bcrypt"},
		{"trailing space", "dave:" + alice + " ", "malformed bcrypt"},
		{"2x", "dave:$2x" + alice[3:], "malformed bcrypt"},
		{"cost 3", "dave:" + alice[:4] + "03" + alice[6:], "cost 3 is outside 4..14"},
		{"cost 31", "dave:" + alice[:4] + "31" + alice[6:], "cost 31 is outside 4..14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseHtpasswd("bob:" + bob + "\n" + tc.line + "\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			// The error names the line, never a hash.
			if !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "$2") || strings.Contains(err.Error(), "{SHA}") {
				t.Errorf("error %q: want the line number and no hash", err)
			}
		})
	}
}

// TestHtpasswdFromTheTool reads a file made by Apache's htpasswd -B
// (Debian's apache2-utils), the tool the README tells operators to use.
func TestHtpasswdFromTheTool(t *testing.T) {
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("htpasswd (apache2-utils) is missing; run scripts/install-e2e-tools.sh")
		}
		t.Skip("htpasswd (apache2-utils) is not installed")
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if out, err := exec.Command(bin, "-cbB", "-C", "5", p, "node1", "n0de-secret").CombinedOutput(); err != nil {
		t.Fatalf("htpasswd: %v %s", err, out)
	}
	if out, err := exec.Command(bin, "-bB", p, "node2", "an0ther:one").CombinedOutput(); err != nil {
		t.Fatalf("htpasswd: %v %s", err, out)
	}
	h, err := openHtpasswd(p, quietLog(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{"node1": "n0de-secret", "node2": "an0ther:one"} {
		hash, ok := h.user(user)
		if !ok || bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil {
			t.Errorf("%s: the tool's entry does not check", user)
		}
	}
	// Other hash types of the same tool are refused at load.
	if out, err := exec.Command(bin, "-bm", p, "node3", "md5").CombinedOutput(); err != nil {
		t.Fatalf("htpasswd -m: %v %s", err, out)
	}
	if _, err := openHtpasswd(p, quietLog(), time.Now); err == nil || !strings.Contains(err.Error(), "MD5 (apr1)") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("an MD5 entry: %v", err)
	}
}

func TestDummyHashCostsTheFilesHighestCost(t *testing.T) {
	for _, cost := range []int{4, 10, 14} {
		d, err := dummyHash(cost)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := bcrypt.Cost(d); err != nil || got != cost || !bcryptHash.Match(d) {
			t.Errorf("dummy %s: cost %d, %v; want %d", d, got, err, cost)
		}
	}
	d, _ := dummyHash(4)
	for _, pw := range []string{"", "x", "password"} {
		if bcrypt.CompareHashAndPassword(d, []byte(pw)) == nil {
			t.Errorf("the dummy hash matches %q", pw)
		}
	}
}

// TestHtpasswdReload: a changed file is read again (at most once a second);
// a file that breaks or disappears keeps the users read before.
func TestHtpasswdReload(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := filepath.Join(t.TempDir(), "htpasswd")
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	alice := "alice:" + hashOf(t, "a", 4, "2y") + "\n"
	write(alice, base)
	h, err := openHtpasswd(p, quietLog(), clk.now)
	if err != nil {
		t.Fatal(err)
	}
	has := func(u string) bool { _, ok := h.user(u); return ok }
	if !has("alice") || has("bob") {
		t.Fatal("first read")
	}
	write(alice+"bob:"+hashOf(t, "b", 4, "2y")+"\n", base.Add(time.Second))
	if has("bob") {
		t.Error("read again within a second")
	}
	clk.advance(time.Second)
	if !has("bob") || !has("alice") {
		t.Error("a new user was not picked up")
	}
	write("garbage\n", base.Add(2*time.Second))
	clk.advance(time.Second)
	if !has("bob") || !has("alice") {
		t.Error("an invalid file dropped the users")
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second)
	if !has("bob") {
		t.Error("a removed file dropped the users")
	}
	write("bob:"+hashOf(t, "b", 4, "2y")+"\n", base.Add(3*time.Second))
	clk.advance(time.Second)
	if has("alice") || !has("bob") {
		t.Error("a removed user is still there")
	}
}
