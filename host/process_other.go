//go:build !unix

package host

import (
	"errors"
	"io/fs"
	"os"
)

// processAlive reports whether a process with this id exists. Outside Unix
// os.FindProcess opens the process (Windows: OpenProcess), which fails when
// there is none. A process that has exited while something still holds a
// handle to it counts as running (telling needs GetExitCodeProcess).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if errors.Is(err, fs.ErrPermission) {
		return true // it exists; we may not open it
	}
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
