//go:build !unix

package broker

import "syscall"

// canTryWrite is false where tryWrite cannot write to a socket without
// blocking: every write goes through the flusher.
const canTryWrite = false

// tryWrite is never called here (canTryWrite is false).
func tryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }
