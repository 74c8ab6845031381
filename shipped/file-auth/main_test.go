package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/passwd"
	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// setup points the extension at a temporary folder holding the given
// files and returns the folder; the state is reset afterwards.
func setup(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	old := folder
	folder = dir
	t.Cleanup(func() { folder, state, passNext, clock = old, nil, false, time.Now })
	for name, data := range files {
		write(t, dir, name, data)
	}
	return dir
}

// write writes a file of the folder, dated a minute ago (an edit long
// settled) plus its length in milliseconds, so that a change is seen
// even within the file system's time resolution.
func write(t *testing.T, dir, name, data string) {
	t.Helper()
	writeAt(t, dir, name, data, time.Now().Add(-time.Minute+time.Duration(len(data))*time.Millisecond))
}

// writeAt writes a file of the folder with modification time at.
func writeAt(t *testing.T, dir, name, data string, at time.Time) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

// user returns a users file line for name with password pw.
func user(t *testing.T, name, pw string) string {
	t.Helper()
	h, err := passwd.New([]byte(pw), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	return name + ":" + h + "\n"
}

func connect(user, pw string) *propolis.Connect {
	return &propolis.Connect{ClientID: "c-" + user, Username: user, HasUsername: user != "", Password: []byte(pw), HasPassword: true}
}

func TestAuthenticate(t *testing.T) {
	setup(t, map[string]string{
		"passwd": "# test users\n" + user(t, "alice", "pw-a") + user(t, "s-1", "pw-s"),
		"acl":    sampleACL,
	})
	if err := start(propolis.StartInfo{ID: "file-auth", Config: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, pw string
		verdict        propolis.Verdict
		perms          int
	}{
		{"right password", "alice", "pw-a", propolis.Allow(), 5},
		{"right password again (cached)", "alice", "pw-a", propolis.Allow(), 5},
		{"group member", "s-1", "pw-s", propolis.Allow(), 5},
		{"wrong password", "alice", "pw-s", deny().Verdict, 0},
		{"wrong password again (cached)", "alice", "pw-s", deny().Verdict, 0},
		{"unknown user", "mallory", "pw-a", deny().Verdict, 0},
		{"no user name", "", "pw-a", deny().Verdict, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := authenticate(connect(tt.user, tt.pw))
			if res.Verdict != tt.verdict || len(res.Permissions) != tt.perms {
				t.Fatalf("got %+v, want %+v with %d permissions", res, tt.verdict, tt.perms)
			}
		})
	}
	// Five distinct checks made (an unknown user's is keyed with its
	// name, like a known one's, so mallory's and the nameless client's
	// are two), the repeated ones answered from memory; a changed users
	// file empties it.
	if n := len(state.cache.seen); n != 5 {
		t.Errorf("%d outcomes remembered, want 5", n)
	}
	write(t, folder, "passwd", user(t, "alice", "pw-a"))
	if res := authenticate(connect("alice", "pw-a")); res.Verdict != propolis.Allow() || len(state.cache.seen) != 1 {
		t.Errorf("after an edit: %+v, %d outcomes remembered, want 1", res, len(state.cache.seen))
	}
}

func TestUnknownUserNext(t *testing.T) {
	setup(t, map[string]string{"passwd": user(t, "alice", "pw-a")})
	if err := start(propolis.StartInfo{Config: []byte(`{"acl": "", "unknown_user": "next"}`)}); err != nil {
		t.Fatal(err)
	}
	if res := authenticate(connect("bob", "x")); res.Verdict != propolis.Next() {
		t.Fatalf("unknown user: %+v", res)
	}
	if res := authenticate(connect("alice", "x")); res.Verdict != deny().Verdict {
		t.Fatalf("known user, wrong password: %+v", res)
	}
	// Without rules an allowed client gets no permission: everything.
	if res := authenticate(connect("alice", "pw-a")); res.Verdict != propolis.Allow() || res.Permissions != nil {
		t.Fatalf("known user: %+v", res)
	}
}

// TestEdits: a changed file is loaded, a bad one refused while the last
// good one stays in use, and a fixed one loaded again.
func TestEdits(t *testing.T) {
	alice := user(t, "alice", "pw-a")
	dir := setup(t, map[string]string{"passwd": alice, "acl": "[all]\nallow all a/#\n"})
	if err := start(propolis.StartInfo{}); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "passwd", alice+user(t, "bob", "pw-b"))
	if res := authenticate(connect("bob", "pw-b")); res.Verdict != propolis.Allow() {
		t.Fatalf("bob after the edit: %+v", res)
	}

	write(t, dir, "passwd", alice+"bob:not-a-hash\ncarol:"+strings.TrimPrefix(user(t, "x", "pw-c"), "x:"))
	write(t, dir, "acl", "[all]\nallow all a/#\nallow nothing b\n")
	tick()
	if err := state.users.problem; err == nil || err.Error() != `passwd:2: user "bob": bad password hash: want $pbkdf2-sha512$i=N$SALT$HASH, got no leading $` {
		t.Fatalf("problem %v", err)
	}
	if err := state.rules.problem; err == nil || err.Error() != `acl:3: activity "nothing": want publish, subscribe or all` {
		t.Fatalf("problem %v", err)
	}
	if res := authenticate(connect("bob", "pw-b")); res.Verdict != propolis.Allow() || fmt.Sprint(res.Permissions) != fmt.Sprint([]propolis.Permission{propolis.AllowTopic("a/#"), propolis.DenyTopic("#")}) {
		t.Fatalf("bob after a bad edit: %+v", res)
	}
	if res := authenticate(connect("carol", "pw-c")); res.Verdict != deny().Verdict {
		t.Fatalf("carol from the refused version: %+v", res)
	}

	write(t, dir, "passwd", alice)
	write(t, dir, "acl", "[all]\nallow publish b/#\n")
	tick()
	if state.users.problem != nil || state.rules.problem != nil {
		t.Fatalf("fixed file still refused: %v", state.users.problem)
	}
	if res := authenticate(connect("bob", "pw-b")); res.Verdict != deny().Verdict {
		t.Fatalf("bob after his removal: %+v", res)
	}
	if res := authenticate(connect("alice", "pw-a")); res.Verdict != propolis.Allow() || fmt.Sprint(res.Permissions) != fmt.Sprint([]propolis.Permission{propolis.AllowPublish("b/#"), propolis.DenyTopic("#")}) {
		t.Fatalf("alice after the rules changed: %+v", res)
	}

	// A removed file is a bad version too.
	if err := os.Remove(filepath.Join(dir, "acl")); err != nil {
		t.Fatal(err)
	}
	tick()
	if err := state.rules.problem; err == nil || err.Error() != "acl: no such file or directory" {
		t.Fatalf("problem %v", err)
	}
	if res := authenticate(connect("alice", "pw-a")); res.Verdict != propolis.Allow() || len(res.Permissions) != 2 {
		t.Fatalf("alice after the rule file was removed: %+v", res)
	}
}

// TestStartRefused: with no good version (natively there is no storage
// to fall back to), the start is refused naming the file and line.
func TestStartRefused(t *testing.T) {
	setup(t, map[string]string{"passwd": "alice\n", "acl": "[all]\n"})
	err := start(propolis.StartInfo{})
	if err == nil || err.Error() != `file-auth: passwd:1: want USER:HASH, found no ":"` {
		t.Fatalf("got %v", err)
	}
	setup(t, nil)
	err = start(propolis.StartInfo{Config: []byte(`{"users": "users.txt"}`)})
	if err == nil || err.Error() != "file-auth: users.txt: no such file or directory\nacl: no such file or directory" {
		t.Fatalf("got %v", err)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"users": "../etc/passwd"}`, `file-auth: config: users: "../etc/passwd" must name a file inside the extension folder`},
		{`{"users": "/etc/passwd"}`, `file-auth: config: users: "/etc/passwd" must name a file inside the extension folder`},
		{`{"users": ""}`, `file-auth: config: users: empty file name`},
		{`{"acl": "a/../b"}`, `file-auth: config: acl: "a/../b" must name a file inside the extension folder`},
		{`{"unknown_user": "allow"}`, `file-auth: config: unknown_user: want "deny" or "next", got "allow"`},
		{`{"password_file": "x"}`, `file-auth: config: unknown key "password_file" (known: users, acl, unknown_user)`},
		{`{"users": "acl"}`, `file-auth: config: users and acl name the same file "acl"`},
	}
	for _, tt := range tests {
		setup(t, nil)
		err := start(propolis.StartInfo{Config: []byte(tt.in)})
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: got %v, want %s", tt.in, err, tt.want)
		}
	}
}

// TestShippedFiles: the passwd and acl files that ship with the extension
// (copied by make shipped) load: no user, no rule.
func TestShippedFiles(t *testing.T) {
	files := map[string]string{}
	for _, name := range []string{"passwd", "acl"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	setup(t, files)
	if err := start(propolis.StartInfo{}); err != nil {
		t.Fatal(err)
	}
	if len(state.userTable()) != 0 || !state.ruleTable().empty() {
		t.Fatalf("users %v, rules %+v", state.userTable(), state.ruleTable())
	}
	if res := authenticate(connect("alice", "x")); res.Verdict != deny().Verdict {
		t.Fatalf("got %+v", res)
	}
}

// TestUnknownUserCost: an unknown user name costs what a known one does:
// its check runs the largest iteration count of the users file, and one
// unknown name's cached outcome does not answer another's (which would
// make every unknown name but the first fast).
func TestUnknownUserCost(t *testing.T) {
	h, err := passwd.New([]byte("pw-b"), 3*passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	setup(t, map[string]string{"passwd": user(t, "alice", "pw-a") + "bob:" + h + "\n", "acl": sampleACL})
	if err := start(propolis.StartInfo{ID: "file-auth", Config: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if got := state.dummy.Iterations; got != 3*passwd.MinIterations {
		t.Errorf("unknown users checked with %d iterations, want the file's largest %d", got, 3*passwd.MinIterations)
	}
	for i, name := range []string{"mallory", "trent", "mallory"} {
		if res := authenticate(connect(name, "guess")); res.Verdict != deny().Verdict {
			t.Fatalf("%s: %+v, want denied", name, res)
		}
		if want := min(i+1, 2); len(state.cache.seen) != want {
			t.Errorf("after %d unknown checks the cache holds %d outcomes, want %d (one per name)", i+1, len(state.cache.seen), want)
		}
	}
}

// TestSettle: a changed file replaces the version in use only once it
// has stayed as it is for settle (a file caught half-written changes
// again before), and an empty users file never replaces one with users.
func TestSettle(t *testing.T) {
	dir := setup(t, map[string]string{"passwd": user(t, "alice", "pw-a"), "acl": sampleACL})
	if err := start(propolis.StartInfo{ID: "file-auth", Config: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	at := base
	clock = func() time.Time { return at }
	login := func(who, pw string) bool {
		t.Helper()
		return authenticate(connect(who, pw)).Verdict == propolis.Allow()
	}

	// Just written: alice's version stays for now, bob's comes after
	// settle.
	writeAt(t, dir, "passwd", user(t, "bob", "pw-b"), base)
	if !login("alice", "pw-a") || login("bob", "pw-b") {
		t.Fatal("a file written just now replaced the version in use")
	}
	at = base.Add(settle)
	if login("alice", "pw-a") || !login("bob", "pw-b") {
		t.Fatal("a settled file did not replace the version in use")
	}

	// Dated in the future (a skewed clock): settles once seen unchanged
	// for settle.
	writeAt(t, dir, "passwd", user(t, "carol", "pw-c"), base.Add(time.Hour))
	tick()
	if login("carol", "pw-c") {
		t.Fatal("a file just seen replaced the version in use")
	}
	at = at.Add(settle)
	tick()
	if !login("carol", "pw-c") {
		t.Fatal("a file seen unchanged for settle did not replace the version in use")
	}

	// Emptied: refused, however long it stays so; a comment line
	// removes every user.
	writeAt(t, dir, "passwd", "", base)
	at = at.Add(time.Hour)
	tick()
	if !login("carol", "pw-c") {
		t.Fatal("an empty users file replaced one with users")
	}
	if p := state.users.problem; p == nil || !strings.Contains(p.Error(), "empty file refused while 1 users are in use") {
		t.Errorf("problem %v, want the empty file refused", p)
	}
	writeAt(t, dir, "passwd", "# no users\n", base)
	tick()
	if login("carol", "pw-c") || len(state.userTable()) != 0 {
		t.Fatal("a users file with no user but a comment did not replace the version in use")
	}
}
