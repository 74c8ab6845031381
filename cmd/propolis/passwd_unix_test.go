//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestPasswdLinkAndOwner: a users file reached through a symbolic link is
// changed where it is (the link stays a link), and, run as root, the file
// keeps its owner and group.
func TestPasswdLinkAndOwner(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real", "passwd")
	if err := os.Mkdir(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := runPasswd(t, "", "-c", "-b", target, "alice", "pw-a"); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "passwd")
	if err := os.Symlink(filepath.Join("real", "passwd"), link); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := os.Chown(target, 4321, 4322); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runPasswd(t, "", "-b", link, "bob", "pw-b"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if _, u := users(t, target); len(u) != 2 {
		t.Fatalf("the linked file holds %d users, want 2", len(u))
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); root && ok && (st.Uid != 4321 || st.Gid != 4322) {
		t.Errorf("owner %d:%d, want 4321:4322 kept", st.Uid, st.Gid)
	}
	if !root {
		t.Log("not root: the owner is not checked")
	}
}
