//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockFolder takes an exclusive advisory lock (flock) on the folder
// holding file, waiting for another `propolis passwd` holding it, so that
// two changes at once cannot lose one (each reads, changes and renames
// the whole file). The lock is on the folder, not the file, because the
// file is replaced, and may not exist yet (-c).
func lockFolder(file string) (unlock func(), err error) {
	dir, err := os.Open(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		dir.Close()
		return nil, fmt.Errorf("lock %s: %w", filepath.Dir(file), err)
	}
	return func() {
		_ = unix.Flock(int(dir.Fd()), unix.LOCK_UN)
		dir.Close()
	}, nil
}

// keepOwner gives f the owner and group of old when run as root (who
// would otherwise make the file root's, unreadable by a broker running as
// another user); any other user can only own what it writes.
func keepOwner(f *os.File, old fs.FileInfo) error {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
