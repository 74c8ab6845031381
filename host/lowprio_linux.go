package host

import "golang.org/x/sys/unix"

// lowerThreadPriority lowers the calling OS thread's priority (Linux keeps
// a niceness per thread) by delta nice steps, at most to 19, and returns how
// many steps lower than before the kernel reports it, and whether it
// changed the thread: 0 and false if it could not read or set it, or if
// the thread is the process's main thread, whose niceness is what ps and
// renice show for the whole process (the compilation then runs at normal
// priority). The caller has locked its goroutine to the thread.
func lowerThreadPriority(delta int) (int, bool) {
	tid := unix.Gettid()
	if isMainThread() {
		return 0, false
	}
	// The raw getpriority returns 20 - nice (1..40).
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0, false
	}
	before := 20 - prio
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, min(before+delta, 19)); err != nil {
		return 0, false
	}
	if prio, err = unix.Getpriority(unix.PRIO_PROCESS, tid); err != nil {
		return 0, true
	}
	return 20 - prio - before, true
}

// isMainThread reports whether the calling thread is the process's main
// thread (its thread id is the process id).
func isMainThread() bool { return unix.Gettid() == unix.Getpid() }
