//go:build unix

package broker

import (
	"errors"
	"os"
	"syscall"
)

// canTryWrite says tryWrite can write to a plain TCP socket without
// blocking.
const canTryWrite = true

// tryWrite makes one non-blocking write(2) of p to the socket and returns
// how much it took: 0 when the socket buffer is full (EAGAIN). Go's sockets
// are non-blocking; RawConn.Write serializes with other writes to the
// socket and, since the callback reports done, never waits. Other errors
// (a reset or closed peer) are returned.
func tryWrite(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), p)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil // a write deadline the flusher left; it sets a new one
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, os.NewSyscallError("write", werr)
	}
	return n, nil
}
