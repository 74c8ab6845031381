package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/passwd"
)

// runPasswd runs "propolis passwd args..." with stdin holding input (a
// regular file: not a terminal) and returns stdout and the error.
func runPasswd(t *testing.T, input string, args ...string) (string, error) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := passwdStdin
	passwdStdin = f
	defer func() { passwdStdin = old }()
	var stdout, stderr bytes.Buffer
	err = run(append([]string{"passwd", "--iterations", "1000"}, args...), &stdout, &stderr)
	return stdout.String(), err
}

// users parses the file and fails the test on a bad one.
func users(t *testing.T, file string) (string, map[string]passwd.Entry) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, u, err := passwd.ParseFile(file, data)
	if err != nil {
		t.Fatal(err)
	}
	return string(data), u
}

func TestPasswd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if _, err := runPasswd(t, "pw-a\n", file, "alice"); err == nil || err.Error() != "passwd: "+file+" does not exist (-c creates it)" {
		t.Fatalf("missing file: %v", err)
	}
	out, err := runPasswd(t, "pw-a\n", "-c", file, "alice")
	if err != nil || out != file+": user \"alice\" added\n" {
		t.Fatalf("create: %q %v", out, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file mode: %v %v", fi.Mode(), err)
	}
	if _, err := runPasswd(t, "pw\n", "-c", file, "bob"); err == nil || err.Error() != "passwd: "+file+" already exists (-c creates a new file; leave it out to change this one)" {
		t.Fatalf("create over a file: %v", err)
	}

	// Comments, blank lines and order are kept; the owner's permissions
	// too, those of group and others taken away.
	_, u := users(t, file)
	alice := u["alice"]
	if err := os.WriteFile(file, []byte("# site users\n\nalice:"+alice.Hash.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runPasswd(t, "pw-b\r\n", file, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := runPasswd(t, "", "-b", file, "carol", "pw c"); err != nil {
		t.Fatal(err)
	}
	out, err = runPasswd(t, "new-a", file, "alice") // no final line ending
	if err != nil || out != file+": user \"alice\" changed\n" {
		t.Fatalf("change: %q %v", out, err)
	}
	text, u := users(t, file)
	lines := strings.Split(text, "\n")
	if len(lines) != 6 || lines[0] != "# site users" || lines[1] != "" || !strings.HasPrefix(lines[2], "alice:$pbkdf2-sha512$i=1000$") ||
		!strings.HasPrefix(lines[3], "bob:") || !strings.HasPrefix(lines[4], "carol:") || lines[5] != "" {
		t.Fatalf("file:\n%s", text)
	}
	for user, pw := range map[string]string{"alice": "new-a", "bob": "pw-b", "carol": "pw c"} {
		if !u[user].Hash.Verify([]byte(pw)) {
			t.Errorf("%s: password %q does not verify", user, pw)
		}
	}
	if u["alice"].Hash.Verify([]byte("pw-a")) {
		t.Error("alice's old password still verifies")
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (0644 less group and others)", fi.Mode())
	}

	out, err = runPasswd(t, "", "-D", file, "bob")
	if err != nil || out != file+": user \"bob\" deleted\n" {
		t.Fatalf("delete: %q %v", out, err)
	}
	if _, err := runPasswd(t, "", "-D", file, "bob"); err == nil || err.Error() != "passwd: "+file+` has no user "bob"` {
		t.Fatalf("delete again: %v", err)
	}
	if _, u := users(t, file); len(u) != 2 || u["bob"].Line != 0 {
		t.Fatalf("users after delete: %v", u)
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

// TestPasswdBadFile: a file with a bad line is not changed, and the error
// names the file and line.
func TestPasswdBadFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	bad := "alice:$pbkdf2-sha512$i=1000$c2FsdHNhbHRzYWx0c2FsdA$short\n"
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runPasswd(t, "pw\n", file, "bob")
	want := "passwd: " + file + " not changed:\n" + file + `:1: user "alice": bad password hash: hash: not base64 without padding`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if data, _ := os.ReadFile(file); string(data) != bad {
		t.Fatalf("file changed:\n%s", data)
	}
}

func TestPasswdErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if _, err := runPasswd(t, "pw\n", "-c", file, "alice"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, input string
		args        []string
		want        string
	}{
		{"no user", "", []string{file}, "passwd: missing user; see 'propolis help passwd'"},
		{"password without -b", "", []string{file, "bob", "pw"}, `passwd: unexpected argument "pw" (a password argument needs -b); see 'propolis help passwd'`},
		{"-b without password", "", []string{"-b", file, "bob"}, "passwd: missing password (-b takes it as the third argument); see 'propolis help passwd'"},
		{"extra argument", "", []string{"-b", file, "bob", "pw", "x"}, `passwd: unexpected argument "x"; see 'propolis help passwd'`},
		{"-D with -b", "", []string{"-D", "-b", file, "bob", "pw"}, "passwd: -D takes neither -b nor -c; see 'propolis help passwd'"},
		{"empty password", "\n", []string{file, "bob"}, "passwd: empty password"},
		{"no input", "", []string{file, "bob"}, "passwd: no password on standard input"},
		{"colon", "pw\n", []string{file, "a:b"}, `passwd: user name "a:b" contains ":"`},
		{"iterations", "pw\n", []string{"--iterations", "10", file, "bob"}, "passwd: iterations 10 out of range 1000-10000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(file)
			_, err := runPasswd(t, tt.input, tt.args...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got %v\nwant %s", err, tt.want)
			}
			if after, _ := os.ReadFile(file); !bytes.Equal(before, after) {
				t.Fatal("file changed")
			}
		})
	}
}

// TestPasswdConcurrent: passwd commands run at once on one file take
// turns, and every change is kept.
func TestPasswdConcurrent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if _, err := runPasswd(t, "pw\n", "-c", file, "first"); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var out bytes.Buffer
			errs <- run([]string{"passwd", "-b", "--iterations", "1000", file, fmt.Sprintf("user-%d", i), "pw"}, &out, &out)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, u := users(t, file); len(u) != n+1 {
		t.Fatalf("%d users, want %d: a change was lost", len(u), n+1)
	}
}

// TestPasswdSlowHash: an iteration count whose check would overrun
// file-auth's default authenticate deadline is written, with a warning
// saying so; one inside it is written without.
func TestPasswdSlowHash(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	for _, tt := range []struct {
		iterations int
		warns      bool
	}{{deadlineIterations, false}, {deadlineIterations + 1, true}} {
		var stdout, stderr bytes.Buffer
		args := []string{"passwd", "--iterations", fmt.Sprint(tt.iterations), "-b", file, fmt.Sprintf("u%d", tt.iterations), "pw"}
		if tt.iterations == deadlineIterations {
			args = append(args[:4], append([]string{"-c"}, args[4:]...)...)
		}
		if err := run(args, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(stderr.String(), "past file-auth's default limits.authenticate_deadline (2 s)")
		if warned != tt.warns {
			t.Errorf("--iterations %d: warned %v, want %v (stderr %q)", tt.iterations, warned, tt.warns, stderr.String())
		}
	}
	if _, u := users(t, file); len(u) != 2 || u[fmt.Sprintf("u%d", deadlineIterations+1)].Hash.Iterations != deadlineIterations+1 {
		t.Errorf("users %v", u)
	}
}

// TestPasswdDeleteLast: deleting the last user leaves a comment line, not
// an empty file, which file-auth would refuse in place of one with users.
func TestPasswdDeleteLast(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	if _, err := runPasswd(t, "", "-c", "-b", file, "alice", "pw-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := runPasswd(t, "", "-D", file, "alice"); err != nil {
		t.Fatal(err)
	}
	text, u := users(t, file)
	if len(u) != 0 || !strings.HasPrefix(text, "# no users") {
		t.Fatalf("file after deleting the last user: %q", text)
	}
}
