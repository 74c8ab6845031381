package host

import "golang.org/x/sys/unix"

// threadNice is the calling thread's niceness (the raw getpriority
// returns 20 - nice).
func threadNice() (int, bool) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	return 20 - prio, err == nil
}
