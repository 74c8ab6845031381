package broker

import (
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Store returns the Persistence s uses, so that tests can read what the
// running broker has stored (Load). It exists in test builds only: the
// broker hands its store to no one, and a program that needs the store
// opens it itself and passes it in Options.Persistence.
func (s *Server) Store() Persistence { return s.persist }

// SetViolationClock makes the protocol-violation log's rate limit read the
// time from now, so that a test decides when a window ends.
func (s *Server) SetViolationClock(now func() time.Time) {
	s.violations.limit.mu.Lock()
	defer s.violations.limit.mu.Unlock()
	s.violations.limit.now = now
}

// SetSecurityLogClock makes the rate limits of the security log (refused
// CONNECTs, disconnects) read the time from now, so that a test decides
// when a window ends, and stops their summary timers: a summary line is
// written only at Close, however long the test runs.
func (s *Server) SetSecurityLogClock(now func() time.Time) {
	for _, l := range []*logLimit{s.hook.sec.connects, s.hook.sec.disconnects} {
		l.mu.Lock()
		l.now = now
		l.afterFunc = func(time.Duration, func()) func() bool { return func() bool { return true } }
		l.mu.Unlock()
	}
}

// ViolationsSeen returns how many protocol violations were reported, logged
// or suppressed.
func (s *Server) ViolationsSeen() int {
	s.violations.mu.Lock()
	defer s.violations.mu.Unlock()
	return s.violations.seen
}

// SetHeldClock makes the connections accepted from now on read the time
// of the deliveries they hold back for a client's Receive Maximum (their
// expiry) from now, so that a test decides how long a message was held.
func (s *Server) SetHeldClock(now func() time.Time) { s.heldClock.Store(&now) }

// PendingInMemory returns how many publishes the broker remembers having
// written as pending and not yet queued for their subscribers.
func (s *Server) PendingInMemory() int {
	n := 0
	s.hook.pending.Range(func(any, any) bool { n++; return true })
	return n
}

// SetBeforeRemove makes every removal of a session (InvalidateSession,
// SetSessionExpiry running a session out, a 3.1.1 session's expiry) call f
// with the client id once it has found the session and before it acts on
// it, so that a test decides what happens in between. Set it before any
// removal runs.
func (s *Server) SetBeforeRemove(f func(id string)) { s.hook.beforeRemove = f }

// SetListScanned makes every ListClients call f once it has chosen the
// sessions of its page and before it describes them, so that a test
// decides what happens in between. Set it before any ListClients runs.
func (s *Server) SetListScanned(f func()) { s.hook.listScanned = f }

// SetAttributeFound makes every session attribute operation call f with
// the client id once it has found the session and before it reads or
// writes the store. Set it before any attribute operation runs.
func (s *Server) SetAttributeFound(f func(id string)) { s.hook.attributeFound = f }

// SetWillTimer makes the broker hand the delayed publication of the will
// of a client it disconnected (see kickedWill) to after instead of
// time.AfterFunc, so that a test decides when the delay ends. Set it
// before any client connects.
func (s *Server) SetWillTimer(after func(d time.Duration, f func())) { s.hook.willTimer = after }

// ForgetClient removes the client id from mochi's client map without
// closing its connection: the state in which a client once kept Close
// waiting for ever (closeGrace).
func (s *Server) ForgetClient(id string) bool {
	cl, ok := s.mochi.Clients.Get(id)
	if ok {
		s.mochi.Clients.Delete(id)
	}
	return ok && cl != nil
}

// EndConnectionOf runs what the listener runs when a connection of client
// id ends (connEnded), for a connection that is not the client's current
// one: the moment mochi's takeover race deletes the current one from the
// client map.
func (s *Server) EndConnectionOf(id string) {
	var fake net.Conn = &net.TCPConn{}
	s.hook.conns.Store(fake, id)
	s.connEnded(fake)
}

// Established reports whether the connection of client id is past
// OnSessionEstablished.
func (s *Server) Established(id string) bool {
	cl, ok := s.hook.connectingClient(id)
	if !ok {
		return false
	}
	_, est := s.hook.established.Load(cl)
	return est
}

// StopAccepting closes the socket of the named listener under mochi's
// accept loop, which then ends as it does on any accept error (such as
// running out of file descriptors): the listener stays in the broker but
// accepts no one.
func (s *Server) StopAccepting(name string) {
	for _, l := range s.listeners {
		if l.ID() == name {
			l.Listener.Close(func(string) {})
		}
	}
}

// AuthByStale counts the entries of the hook's authBy (the deciding
// extension of each accepted CONNECT) whose client is not the session
// mochi holds for its id: nothing would ever delete those.
func (s *Server) AuthByStale() (stale int) {
	s.hook.authBy.Range(func(k, _ any) bool {
		cl := k.(*mqtt.Client)
		if cur, ok := s.mochi.Clients.Get(cl.ID); !ok || cur != cl {
			stale++
		}
		return true
	})
	return stale
}

// ConnectTurns returns how many client ids have a CONNECT holding or
// waiting for its turn (connectlock.go): 0 once every CONNECT is through.
func (s *Server) ConnectTurns() int { return s.hook.connects.pending() }

// ConnectTurnUsers is how many callers hold or wait for the CONNECT turn of
// client id (connectlock.go): 2 while one waits behind another.
func (s *Server) ConnectTurnUsers(id string) int {
	l := &s.hook.connects
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.turns[id]; t != nil {
		return t.users
	}
	return 0
}
