package host

import "golang.org/x/sys/unix"

// lowerThreadPriority lowers the calling OS thread's priority (Linux keeps
// a niceness per thread) by delta nice steps, at most to 19, and returns how
// many steps lower than before the kernel reports it: 0 if it could not
// read or set it (the compilation then runs at normal priority). The
// caller has locked its goroutine to the thread.
func lowerThreadPriority(delta int) int {
	tid := unix.Gettid()
	// The raw getpriority returns 20 - nice (1..40).
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0
	}
	before := 20 - prio
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, min(before+delta, 19)); err != nil {
		return 0
	}
	if prio, err = unix.Getpriority(unix.PRIO_PROCESS, tid); err != nil {
		return 0
	}
	return 20 - prio - before
}
