package host

import (
	"runtime/debug"
)

// This file returns the memory of closed instances to the operating
// system. A guest's linear memory is a Go byte slice (wazero grows it by
// copying), so an instance that grew large leaves tens of megabytes of Go
// heap behind when it is closed. The collector frees it, but the runtime
// keeps the pages mapped for reuse: a memory hog left the broker's resident
// size at ~120 MB for good after it was stopped. After a large release the
// host asks for the pages to be returned (debug.FreeOSMemory) on its own
// goroutine (freeMemory), so no caller waits for the collection it forces.

// releaseThreshold is how much guest linear memory, closed at once (one
// discarded instance, or every instance of a stopped extension), makes the
// host return freed memory to the operating system. A Go guest's instance
// takes ~6 MB, so a routine discard stays below it; a stopped pool of four,
// or one runaway instance, does not.
const releaseThreshold = 16 << 20

// released is told that instances holding n bytes of linear memory were
// just closed and are no longer referenced. From any goroutine; it never
// blocks: requests made while one is pending are served by that one.
func (h *Host) released(n uint64) {
	if n < releaseThreshold {
		return
	}
	select {
	case h.freeReq <- struct{}{}:
	default:
	}
}

// freeMemory serves released's requests until the host closes.
func (h *Host) freeMemory() {
	defer h.wg.Done()
	for {
		select {
		case <-h.done:
			return
		case <-h.freeReq:
			debug.FreeOSMemory()
		}
	}
}
