package broker

import (
	"errors"
	"fmt"
)

// Ready reports whether the broker serves clients as configured: nil when
// it does, else one error per condition that fails, joined (errors.Join),
// each line saying what is wrong:
//
//   - its listeners are open: Start has returned, Close has not begun, and
//     no listener's accept loop has ended (mochi's ends for good on any
//     accept error, such as running out of file descriptors);
//   - its store (Persistence) is open;
//   - a security extension can decide (Authenticator.SecurityExtensions is
//     not empty); with none every CONNECT is refused.
//
// Whether the extension host finished loading is the host's to say; the
// operator's /readyz (cmd/propolis, package opshttp) asks both. Safe from
// any goroutine; it reads atomics and asks the Authenticator, taking no
// broker lock.
func (s *Server) Ready() error {
	var errs []error
	switch {
	case s.hook.closed.Load():
		errs = append(errs, errors.New("listeners closed: the broker is shutting down"))
	case !s.started.Load():
		errs = append(errs, errors.New("listeners not open yet: the broker has not started"))
	default:
		for _, l := range s.listeners {
			if l.stopped.Load() {
				errs = append(errs, fmt.Errorf("listener %q on %s stopped accepting connections", l.ID(), l.Address()))
			}
		}
	}
	if s.storeClosed.Load() {
		errs = append(errs, errors.New("store closed"))
	}
	if a := s.hook.ext.Authenticator; a == nil || len(a.SecurityExtensions()) == 0 {
		errs = append(errs, errors.New("no security extension loaded: every CONNECT is refused"))
	}
	return errors.Join(errs...)
}
