package host

import (
	"errors"
	"fmt"
)

// Ready reports whether the host is in a state to serve: nil once LoadAll
// has finished and until Close begins, unless the extension the CONNECT
// chain asks first is stopped after a crash loop (it stays in the chain
// and refuses every CONNECT; broker.Server.Ready, which sees only
// SecurityExtensions, still counts it). Otherwise one error saying why.
// Safe from any goroutine; cmd/propolis asks it with the broker's Ready
// for the operator's /readyz.
func (h *Host) Ready() error {
	select {
	case <-h.done:
		return errors.New("extension host closed")
	default:
	}
	h.mu.Lock()
	loaded := h.securityKnown
	h.mu.Unlock()
	if !loaded {
		return errors.New("extensions not loaded yet")
	}
	if _, blocker := h.SecurityServing(); blocker != "" {
		return fmt.Errorf("security extension %q stopped after a crash loop: every CONNECT is refused", blocker)
	}
	return nil
}
