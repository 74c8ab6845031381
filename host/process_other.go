//go:build !unix

package host

import "os"

// processAlive reports whether a process with this id exists. Outside Unix
// os.FindProcess opens the process (Windows: OpenProcess), which fails when
// there is none.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
