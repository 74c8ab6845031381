package access_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/passwd"
)

// parse parses an admin section as propolis.yaml in dir.
func parse(t *testing.T, dir, yaml string) (config.Admin, string) {
	t.Helper()
	file := filepath.Join(dir, "propolis.yaml")
	c, err := config.Parse(file, []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c.Admin, file
}

// TestBuild: users with hashes inline or in a users file (relative to the
// configuration's folder), roles and tokens; every problem reported at
// once, naming its key or FILE:LINE.
func TestBuild(t *testing.T) {
	hash, err := passwd.New([]byte("pw"), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admins"), []byte("# admins\nbob:"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	digest := access.TokenDigest("t")
	for _, tc := range []struct {
		name, yaml string
		want       string // error, or "" for none
		users      string
	}{
		{name: "inline and file", yaml: "admin:\n  users_file: admins\n  users:\n    - name: alice\n      roles: [admin]\n      password_hash: \"" + hash +
			"\"\n    - name: bob\n      roles: [ops]\n  roles:\n    ops: [clients.view, clients.disconnect]\n  tokens:\n    - name: ci\n      sha256: " + digest + "\n      roles: [viewer]\n",
			users: "alice,bob"},
		{name: "unknown role and permission, built-in redefined", yaml: "admin:\n  users:\n    - name: alice\n      roles: [admin, wizard]\n      password_hash: \"" + hash +
			"\"\n  roles:\n    viewer: [clients.view]\n    ops: [clients.view, clients.fly]\n  tokens:\n    - name: ci\n      sha256: " + digest + "\n      roles: [nope]\n",
			want: `admin.roles.ops[1]: unknown permission "clients.fly" (known: broker.view, clients.view, clients.disconnect, sessions.invalidate, retained.view, retained.payload, retained.delete, userproperties.view, extensions.view, extensions.manage, trace.manage, config.view)
admin.roles.viewer: "viewer" is a built-in role and cannot be redefined (pick another name)
admin.tokens[0].roles[0]: unknown role "nope" (known: admin, operator, ops, viewer)
admin.users[0].roles[1]: unknown role "wizard" (known: admin, operator, ops, viewer)`},
		{name: "user missing from the file", yaml: "admin:\n  users_file: admins\n  users:\n    - name: carol\n      roles: [viewer]\n    - name: bob\n      roles: [viewer]\n",
			want: `admin.users[0]: user "carol" has no password_hash and no line in ` + filepath.Join(dir, "admins")},
		{name: "file user without roles", yaml: "admin:\n  users_file: admins\n  users: []\n",
			want: `admin.users: user "bob" of ` + filepath.Join(dir, "admins") + `:2 has no entry here, so no roles (add - name: bob with its roles)`},
		{name: "hash in both", yaml: "admin:\n  users_file: admins\n  users:\n    - name: bob\n      roles: [viewer]\n      password_hash: \"" + hash + "\"\n",
			want: `admin.users[0].password_hash: user "bob" also has a hash in ` + filepath.Join(dir, "admins") + `:2; keep one`},
		{name: "missing file", yaml: "admin:\n  users_file: nothere\n  users:\n    - name: bob\n      roles: [viewer]\n",
			want: `admin.users_file: "nothere", relative to the configuration file's folder ` + dir + `, is ` + filepath.Join(dir, "nothere") + `: no such file or directory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, file := parse(t, dir, tc.yaml)
			p, err := access.Build(a, file)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(p.Users(), ","); got != tc.users || p.Local() {
				t.Fatalf("users %q local %v", got, p.Local())
			}
		})
	}
}

// TestBuildBadUsersFile: a users file's problems come with FILE:LINE.
func TestBuildBadUsersFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admins"), []byte("bob:nothash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, file := parse(t, dir, "admin:\n  users_file: admins\n  users:\n    - name: bob\n      roles: [viewer]\n")
	_, err := access.Build(a, file)
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "admins")+`:1: user "bob": bad password hash`) {
		t.Fatalf("error: %v", err)
	}
}

// TestConfigErrors: the admin section's syntax errors come from
// config.Parse with file, line and key.
func TestConfigErrors(t *testing.T) {
	_, err := config.Parse("propolis.yaml", []byte("admin:\n  users:\n    - name: a:b\n      roles: []\n  tokens:\n    - name: ci\n      sha256: abc\n      roles: [viewer]\n  roles:\n    ops: [1]\n  session_ttl: 1s\n"))
	want := `propolis.yaml:3:7: admin.users[0].password_hash: required (or admin.users_file with a line for "a:b")
propolis.yaml:3:13: admin.users[0].name: user name "a:b" contains ":"
propolis.yaml:4:14: admin.users[0].roles: at least one role is required
propolis.yaml:7:15: admin.tokens[0].sha256: want 64 hex digits (the SHA-256 of the token, from ` + "`propolis admin token ci`" + `)
propolis.yaml:10:5: admin.roles.ops[0]: want a permission name, got 1
propolis.yaml:11:16: admin.session_ttl: 1s out of range 1m-720h`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
}
