//go:build !linux

package host

// threadNice: no per-thread niceness outside Linux.
func threadNice() (int, bool) { return 0, false }
