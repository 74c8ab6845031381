//go:build !linux

package host

// lowerThreadPriority does nothing outside Linux, where a thread has no
// niceness of its own: the compilation runs at normal priority, on one
// CPU. It returns 0 and false (the thread is left as it was).
func lowerThreadPriority(int) (int, bool) { return 0, false }

// isMainThread is false outside Linux: no thread is lowered there anyway.
func isMainThread() bool { return false }
