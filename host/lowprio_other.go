//go:build !linux

package host

// lowerThreadPriority does nothing outside Linux, where a thread has no
// niceness of its own: the compilation runs at normal priority, on one
// CPU. It returns 0.
func lowerThreadPriority(int) int { return 0 }
