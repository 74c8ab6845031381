package main

import (
	"os"
	"syscall"
)

// fileID returns the file's inode and change time, from WASI's filestat.
func fileID(fi os.FileInfo) (ino, ctime uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino, st.Ctime
	}
	return 0, 0
}
