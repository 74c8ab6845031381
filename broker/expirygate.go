package broker

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// A connected client's session expiry, changed by Server.SetSessionExpiry
// only where mochi cannot read it at the same time.
//
// mochi keeps a session's expiry in the client's properties
// (Props.SessionExpiryInterval, Props.SessionExpiryIntervalFlag, and Clean
// for MQTT 3.1.1) and reads them without a lock: on the client's
// connection goroutine in SendConnack (which may also cap the interval),
// in processDisconnect (a DISCONNECT's own interval) and at the end of
// attachClient (whether the session ends with the connection); and on the
// goroutine of a new CONNECT of the same client id in inheritClientSession
// (the old client's Clean). A service goroutine writing them races all
// four. So SetSessionExpiry writes them itself only while the connection's
// goroutine is inside outConn.Read, outside mochi (reading is set and
// cleared under mu, so the goroutine cannot leave Read while the write
// runs), holding the id's CONNECT turn (connectLocks.try: no take-over
// reads them meanwhile). Otherwise the change waits in pending, and the
// connection's goroutine makes it at its next Read (enter), or, when the
// connection ends first, OnDisconnect makes it on the offline session
// (end). The store is written at once either way (SetSessionExpiry's
// contract), and the hook's own readers (persistent, sessionRecord) see
// the pending value, so the stored record and the in-memory answer agree
// from the call on.
//
// A change that arrives after the connection's last read and before mochi
// decides whether the session ends (attachClient) cannot keep a session
// that was ending (an expiry of 0, or a clean 3.1.1 session): mochi
// removes it right after OnDisconnect, which logs it. Asked a moment later
// the service would have answered ErrNoSession.
//
// The upstream fix (mochi-mqtt v2.7.9) would be to guard those fields with
// the client's own lock, or keep the expiry in atomics, and read them
// through accessors in SendConnack, processDisconnect, attachClient,
// inheritClientSession and clearExpiredClients; and give the server a
// method to change a live session's expiry.

// expiryGate is one connection's gate for its session expiry (a field of
// outConn). The zero value is ready.
type expiryGate struct {
	mu sync.Mutex
	// reading: the connection's goroutine is inside outConn.Read.
	reading bool
	// ended: OnDisconnect has run (end); later changes are the offline
	// session's.
	ended bool
	// pending is the change waiting for the connection's goroutine; set
	// and cleared under mu, read without it by the hook's readers.
	pending atomic.Pointer[pendingExpiry]
	// known is mochi's fields as the connection's goroutine last saw them
	// outside mochi (enter, writeExpiry), read by the hook's readers on any
	// goroutine instead of the fields, which mochi's processDisconnect
	// writes; nil before the first read (nothing writes them then: the
	// hook caps the CONNECT's interval itself, capExpiry) and after the
	// end (end), when only SetSessionExpiry writes them, under the
	// session lock.
	known atomic.Pointer[pendingExpiry]
	// owner is the client on the connection, set by OnSessionEstablish on
	// the connection's goroutine and read there only (enter).
	owner *mqtt.Client
	// will is the client's will as OnSessionEstablish found it, for the
	// session record (sessionRecord): mochi clears the field at the end
	// of the connection (attachClient), which would race a service's read.
	will atomic.Pointer[willSnap]
}

// willSnap is a will as the store keeps it; will is nil for none.
type willSnap struct{ will *store.Will }

// establish is called by OnSessionEstablish on the connection's
// goroutine, before mochi's map holds cl: the gate learns its client and
// the will.
func (g *expiryGate) establish(cl *mqtt.Client) {
	g.owner = cl
	g.will.Store(&willSnap{will: willRecord(&cl.Properties.Will)})
}

// pendingExpiry is a change of a connected session's expiry not yet made in
// mochi's fields (expiryGate.pending), or those fields as last seen
// (expiryGate.known: seconds, set and clean only).
type pendingExpiry struct {
	seconds uint32
	set     bool
	clean   bool // the Clean the record and MQTT 3.1.1 get
	// apply makes the change in mochi's fields, on the connection's
	// goroutine; false when it cannot yet (the id's CONNECT turn is taken).
	apply func() bool
	// later makes the change on the offline session after the connection
	// ended, unless mochi holds another client for the id by then.
	later func()
}

// enter is called by outConn.Read on the connection's goroutine as it
// starts: a pending change is made now, unless the connection is closed
// already (OnDisconnect makes it then), and known follows mochi's fields.
func (g *expiryGate) enter(closed bool) {
	g.mu.Lock()
	if pe := g.pending.Load(); pe != nil && !closed && pe.apply() {
		g.pending.Store(nil)
	}
	if g.owner != nil {
		g.see(&g.owner.Properties)
	}
	g.reading = true
	g.mu.Unlock()
}

// see makes known what p holds, allocating only when it changed. Called
// under mu, where nothing writes p.
func (g *expiryGate) see(p *mqtt.ClientProperties) {
	k := g.known.Load()
	if k == nil || k.seconds != p.Props.SessionExpiryInterval || k.set != p.Props.SessionExpiryIntervalFlag || k.clean != p.Clean {
		g.known.Store(&pendingExpiry{seconds: p.Props.SessionExpiryInterval, set: p.Props.SessionExpiryIntervalFlag, clean: p.Clean})
	}
}

// leave is called by outConn.Read as it returns: mochi is handed the bytes.
func (g *expiryGate) leave() {
	g.mu.Lock()
	g.reading = false
	g.mu.Unlock()
}

// end is called by OnDisconnect on the connection's goroutine, after mochi
// decided whether the session ends; it returns the change still pending,
// if any, for the caller to make on the offline session.
func (g *expiryGate) end() *pendingExpiry {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ended, g.reading = true, false
	g.known.Store(nil)
	return g.pending.Swap(nil)
}

// gateOf returns the expiry gate of cl's connection; nil for a client
// without an outConn (the inline client, a restored offline session).
func gateOf(cl *mqtt.Client) *expiryGate {
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		return &oc.expiry
	}
	return nil
}

// expiryOf returns the session expiry of cl as the hook reads it: a
// change pending on its connection, else mochi's fields.
func expiryOf(cl *mqtt.Client) (seconds uint32, set, clean bool) {
	if g := gateOf(cl); g != nil {
		if pe := g.pending.Load(); pe != nil {
			return pe.seconds, true, pe.clean
		}
		if k := g.known.Load(); k != nil {
			return k.seconds, k.set, k.clean
		}
	}
	p := &cl.Properties
	return p.Props.SessionExpiryInterval, p.Props.SessionExpiryIntervalFlag, p.Clean
}

// setConnectedExpiry is SetSessionExpiry for a client whose connection
// has an expiry gate; handled is false when OnDisconnect has run (the
// caller treats the session as offline). seconds is capped. A client
// closed but not yet through OnDisconnect gets the change pending: mochi
// reads the fields once more, at the end of attachClient.
func (s *Server) setConnectedExpiry(cl *mqtt.Client, g *expiryGate, seconds uint32) (handled bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return false, nil
	}
	if g.reading && !cl.Closed() {
		if release, ok := s.hook.connects.try(cl.ID); ok {
			defer release()
			g.pending.Store(nil)
			return true, s.writeExpiry(cl, g, seconds, true)
		}
	}
	clean := cl.Properties.Clean // written by this gate's holders only
	if cl.Properties.ProtocolVersion < 5 {
		clean = seconds == 0
	}
	pe := &pendingExpiry{seconds: seconds, clean: clean}
	pe.apply = func() bool {
		release, ok := s.hook.connects.try(cl.ID)
		if !ok {
			return false
		}
		defer release()
		_ = s.writeExpiry(cl, g, seconds, false) // stored below already
		return true
	}
	pe.later = func() {
		if cur, ok := s.mochi.Clients.Get(cl.ID); !ok || cur != cl {
			return // ended, or taken over: the new CONNECT's expiry came after
		}
		if _, err := s.setExpiryOf(cl, seconds); err != nil {
			s.hook.storeErr("set session expiry", cl.ID, err)
		}
	}
	g.pending.Store(pe)
	return true, s.storeExpiry(cl)
}

// writeExpiry sets cl's session expiry in mochi's fields, on cl's
// connection goroutine or while it waits in outConn.Read, and, when
// store is set, stores the session as SetSessionExpiry promises. Called
// holding cl's expiry gate g and CONNECT turn.
func (s *Server) writeExpiry(cl *mqtt.Client, g *expiryGate, seconds uint32, store bool) error {
	mu := s.hook.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	p := &cl.Properties
	p.Props.SessionExpiryInterval = seconds
	p.Props.SessionExpiryIntervalFlag = true
	if p.ProtocolVersion < 5 {
		p.Clean = seconds == 0
	}
	g.see(p)
	if !store {
		return nil
	}
	return s.storeExpiryLocked(cl)
}

// storeExpiry is storeExpiryLocked under cl's session lock.
func (s *Server) storeExpiry(cl *mqtt.Client) error {
	mu := s.hook.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	return s.storeExpiryLocked(cl)
}

// storeExpiryLocked stores the session of the connected client cl after a
// change of its expiry (as expiryOf reads it): a session that just became
// persistent with its subscriptions (storeNowPersistent), a stored one's
// record rewritten. Called under cl's session lock.
func (s *Server) storeExpiryLocked(cl *mqtt.Client) error {
	if !s.hook.isStored(cl.ID) {
		if !persistent(cl) {
			return nil
		}
		return s.storeNowPersistent(cl)
	}
	return s.persist.PutSession(sessionRecord(cl, 0), true)
}
