package broker

import (
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// connEnded runs once the listener has finished serving connection c. It
// repairs a race in mochi's takeover (v2.7.9, Server.attachClient): a
// connection ending without a persistent session checks that it was not
// taken over, then deletes its client id from the client map. When a new
// connection of the same id takes the session over between the check and
// the delete, the delete removes the new client, which stays connected
// but out of the map: messages for its subscriptions are not delivered
// (mochi finds subscribers in the map), nobody can disconnect it (the
// clients service and shutdown find clients in the map), and a shutdown
// waited for it for ever (closeGrace). Here, after the old connection's
// delete has certainly happened, the newest connection of its id, if
// still open and missing from the map, is put back.
//
// Only a client past OnSessionEstablished (so past mochi's own
// Clients.Add) is put back: one still between OnSessionEstablish and the
// Add would find itself in the map as the session to take over, and
// disconnect itself. A delete landing before OnSessionEstablished is
// repaired there (restoreInMap).
func (s *Server) connEnded(c net.Conn) {
	s.detachThrottle(c)
	v, ok := s.hook.conns.LoadAndDelete(c)
	if !ok {
		return
	}
	if cur, ok := s.hook.connectingClient(v.(string)); ok && cur.Net.Conn != c {
		if _, est := s.hook.established.Load(cur); est {
			s.hook.restoreInMap(cur)
		}
	}
}

// restoreInMap puts cl, an open connection past mochi's Clients.Add, back
// into the client map if another connection's end removed it. Not after a
// removal of its session (removeSession: InvalidateSession, an expiry),
// which takes clients out of the map on purpose: the removal count of the
// id, under its session lock, tells.
func (h *hook) restoreInMap(cl *mqtt.Client) {
	st := h.state(cl)
	if st == nil || cl.Closed() {
		return
	}
	mu := h.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	if h.removalGen(cl.ID).Load() != st.removals || cl.Closed() {
		return
	}
	if _, ok := h.mochi.Clients.Get(cl.ID); ok {
		return
	}
	h.mochi.Clients.Add(cl)
	h.log.Warn("client restored to the client map after a takeover race", "client", cl.ID, "remote", cl.Net.Remote)
}

// connectingClient is the newest connection of client id past
// OnSessionEstablish, until its OnDisconnect.
func (h *hook) connectingClient(id string) (*mqtt.Client, bool) {
	v, ok := h.connecting.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*mqtt.Client), true
}
