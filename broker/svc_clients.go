package broker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file is the Clients service, and sessionClient, which every service
// uses to find a session.

// sessionClient returns mochi's client of clientID, connected or holding an
// offline session; the broker's inline client is no session.
func (s *Server) sessionClient(clientID string) (*mqtt.Client, bool) {
	cl, ok := s.mochi.Clients.Get(clientID)
	if !ok || cl.Net.Inline {
		return nil, false
	}
	return cl, true
}

// sessionExpiry is how long, in seconds, cl's session outlives its
// connection, by restore's rule: an MQTT 5 session, or a 3.1.1 one whose
// expiry was set (Server.SetSessionExpiry, the authenticator's
// ClientSettings.SessionExpiry; hook.expireLater honours it), its interval,
// any other persistent session the broker's maximum, never more than that
// maximum; 0 for one that ends with its connection. Called under cl's
// session lock.
func (s *Server) sessionExpiry(cl *mqtt.Client) uint32 {
	if !persistent(cl) {
		return 0
	}
	max := s.mochi.Options.Capabilities.MaximumSessionExpiryInterval
	if p := &cl.Properties; p.ProtocolVersion >= 5 || p.Props.SessionExpiryIntervalFlag {
		return min(p.Props.SessionExpiryInterval, max)
	}
	return max
}

// offlineExpiry returns when the offline session of cl went offline
// (offlineSince) and its expiry counted from then. mochi counts the
// interval from StopTime; a restored or imported session's interval is
// what was left of it at the restart or import. Called under cl's session
// lock.
func (s *Server) offlineExpiry(cl *mqtt.Client) (off int64, expiry uint32) {
	expiry = s.sessionExpiry(cl)
	off = s.hook.offlineSince(cl)
	if stop := cl.StopTime(); off < stop && expiry > 0 {
		expiry = uint32(min(stop+int64(expiry)-off, int64(s.mochi.Options.Capabilities.MaximumSessionExpiryInterval)))
	}
	return off, expiry
}

// offlineSince returns the Unix time the offline session of cl went
// offline: for a session restored at start-up the time stored with it
// (restore stops its client at the restart), StopTime for any other.
func (h *hook) offlineSince(cl *mqtt.Client) int64 {
	if v, ok := h.restoredOffline.Load(cl); ok {
		return v.(int64)
	}
	return cl.StopTime()
}

// Client implements Clients.
func (s *Server) Client(clientID string) (ClientInfo, bool) {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return ClientInfo{}, false
	}
	return s.clientInfo(cl), true
}

// clientInfo describes the session of cl (Client, ListClients). It takes
// cl's session lock.
func (s *Server) clientInfo(cl *mqtt.Client) ClientInfo {
	caps := s.mochi.Options.Capabilities
	p := &cl.Properties
	mu := s.hook.sessionLock(cl.ID) // SetSessionExpiry writes some of them
	mu.Lock()
	defer mu.Unlock()
	info := ClientInfo{
		ClientID:        cl.ID,
		Username:        string(p.Username),
		Connected:       !cl.Closed(),
		ProtocolVersion: p.ProtocolVersion,
		Listener:        cl.Net.Listener,
		RemoteAddr:      cl.Net.Remote,
		SessionExpiry:   s.sessionExpiry(cl),
		ReceiveMaximum:  caps.ReceiveMaximum,
		InflightWindow:  inflightWindow(cl),
		Queued:          cl.State.Inflight.Len(),
		MaxQueued:       int(caps.MaximumInflight),
		KeepAlive:       cl.State.Keepalive,
		QueueFullPolicy: s.cfg.Load().MQTT.QueueFullPolicy,
	}
	if v, ok := s.hook.authBy.Load(cl); ok {
		info.AuthenticatedBy = v.(string)
	}
	if st := s.hook.state(cl); st != nil {
		if n := st.settings.ReceiveMaximum; n > 0 {
			info.ReceiveMaximum = n
		}
		if n := int(st.settings.MaxQueued); n > 0 {
			info.MaxQueued = min(n, info.MaxQueued)
		}
		if info.Connected {
			info.ConnectedSince = st.connectedAt
		}
	}
	if !info.Connected {
		// mochi counts the interval from StopTime; a restored session's
		// interval is what was left of it at the restart, which the
		// caller is told counting from when it really went offline.
		info.ExpiresAt = time.Unix(cl.StopTime()+int64(info.SessionExpiry), 0)
		var off int64
		off, info.SessionExpiry = s.offlineExpiry(cl)
		info.OfflineSince = time.Unix(off, 0)
		if _, restored := s.hook.restoredOffline.Load(cl); restored {
			info.KeepAlive = 0 // mochi's default, not one a CONNECT asked for
			info.Restored = true
		}
	}
	return info
}

// serverDisconnectCodes are the DISCONNECT reason codes a server may send
// (MQTT 5, 3.14.2.1) from 0x80 up. 0x00 (normal disconnection) is left out:
// the EventListener could not tell it from a lost connection.
var serverDisconnectCodes = [256]bool{
	0x80: true, 0x81: true, 0x82: true, 0x83: true, 0x87: true, 0x89: true, 0x8B: true,
	0x8D: true, 0x8E: true, 0x93: true, 0x94: true, 0x95: true, 0x96: true, 0x97: true,
	0x98: true, 0x99: true, 0x9A: true, 0x9B: true, 0x9C: true, 0x9D: true, 0x9E: true,
	0x9F: true, 0xA0: true, 0xA1: true, 0xA2: true,
}

// Disconnect implements Clients.
func (s *Server) Disconnect(clientID string, code byte, reason string, preventWill bool) error {
	if !serverDisconnectCodes[code] {
		return fmt.Errorf("disconnect %q: %w: reason code %#02x is not one a server sends (0x80 and up)", clientID, ErrInvalidArgument, code)
	}
	if err := checkString("reason", reason); err != nil {
		return fmt.Errorf("disconnect %q: %w", clientID, err)
	}
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return fmt.Errorf("disconnect %q: %w", clientID, ErrNoSession)
	}
	if cl.Closed() {
		return fmt.Errorf("disconnect %q: %w", clientID, ErrNotConnected)
	}
	if preventWill {
		// mochi publishes the will (now or after its delay) only while
		// the flag is set; the session record keeps it only then too.
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	s.kick(cl, packets.Code{Code: code, Reason: reason})
	return nil
}

// kickWriteTimeout bounds the write of the DISCONNECT kick sends: mochi
// sets no write deadline of its own (none at all with keepalive 0), and a
// client that stopped reading would otherwise hold the caller.
const kickWriteTimeout = 5 * time.Second

// kick closes cl's connection with code: an MQTT 5 client is sent a
// DISCONNECT first (mochi's DisconnectClient), within kickWriteTimeout;
// MQTT 3.1.1 has no DISCONNECT from the server, so its connection is just
// closed. Either way code is the stop cause the hook reports as a server
// disconnect.
func (s *Server) kick(cl *mqtt.Client, code packets.Code) { s.hook.kick(cl, code) }

// kick is Server.kick, for the hook's own use. It keeps a copy of the
// client's will, if one is due, for kickedWill.
func (h *hook) kick(cl *mqtt.Client, code packets.Code) {
	if st := h.state(cl); st != nil && atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
		w := cl.Properties.Will
		st.kickWill.Store(&w)
	}
	if cl.Properties.ProtocolVersion >= 5 {
		if c := cl.Net.Conn; c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(kickWriteTimeout)) // the connection closes next anyway
		}
		_ = h.mochi.DisconnectClient(cl, code) // returns code itself for codes >= 0x80
		return
	}
	cl.Stop(code)
}

// kickedWill publishes the will of cl, which kick disconnected, when mochi
// did not. mochi publishes a will (sendLWT) only when the client's read
// loop ends with an error; a Stop that lands while the client's goroutine
// is between two packets (or has not read its first one yet) ends the loop
// without one (Client.Read returns nil when it finds the client closed),
// which mochi takes for a clean DISCONNECT from the client and drops the
// will. OnDisconnect calls this first, on the client's goroutine: err nil
// with the stop cause a server code of kick's is that case. The will is
// published as mochi would (through the inline client, as its client's
// message; after its delay unless a connection of the client id is open
// by then).
func (h *hook) kickedWill(cl *mqtt.Client, err error) {
	st := h.state(cl)
	if err != nil || st == nil {
		return
	}
	w := st.kickWill.Load()
	var c packets.Code
	if w == nil || !errors.As(cl.StopCause(), &c) || c.Code < 0x80 {
		return
	}
	pk := willPacket(w, cl.ID)
	publish := func() {
		inline, ok := h.mochi.Clients.Get(mqtt.InlineClientId)
		if !ok {
			return
		}
		if err := h.mochi.InjectPacket(inline, pk); err != nil {
			h.log.Warn("will not published", "client", cl.ID, "topic", w.TopicName, "error", err)
			return
		}
		_ = h.forward(&pk, cl.ID) // logged; a will has nobody to refuse
	}
	if w.WillDelayInterval == 0 {
		publish()
		return
	}
	after := h.willTimer
	if after == nil {
		after = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	after(time.Duration(w.WillDelayInterval)*time.Second, func() {
		if h.closed.Load() {
			return
		}
		if cur, ok := h.mochi.Clients.Get(cl.ID); ok && (cur != cl || !cur.Closed()) {
			// The client came back within the delay (MQTT-3.1.3-9), even
			// if it has left again since: a will of that connection is
			// its own.
			return
		}
		publish()
	})
}

// codeSessionInvalidated is what InvalidateSession tells a connected client.
var codeSessionInvalidated = packets.Code{Code: 0x98, Reason: "session invalidated"} // administrative action

// InvalidateSession implements Clients. It removes the session from mochi
// the way mochi does when a session ends with its connection (index,
// subscriptions, queue, client map), without its per-item hook calls: one
// DeleteSession removes what the store holds. If the client's goroutine
// saves the session as it closes, after this removed it, the hook sees the
// client gone from mochi and undoes the save (hook.sessionEnded).
//
// A new connection of the client id may take the session over (mochi's
// inheritClientSession) while it is being removed: the session it took,
// whichever connection holds it when the removal ends, is removed in turn,
// so that the call ends the session of clientID as if the take-over had
// come first. A client id taken over again at each attempt (at most
// maxRemoveAttempts) gets an error.
func (s *Server) InvalidateSession(clientID string) error {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return fmt.Errorf("invalidate session %q: %w", clientID, ErrNoSession)
	}
	for range maxRemoveAttempts {
		nc, err := s.hook.removeSession(cl, codeSessionInvalidated)
		if err != nil {
			return fmt.Errorf("invalidate session %q: %w", clientID, err)
		}
		if nc == nil {
			return nil
		}
		cl = nc
	}
	return fmt.Errorf("invalidate session %q: taken over by a new connection at each of %d attempts", clientID, maxRemoveAttempts)
}

// maxRemoveAttempts bounds InvalidateSession's attempts against
// connections of the client id taking its session over.
const maxRemoveAttempts = 8

// removeSession ends cl's session now (see Server.InvalidateSession): a
// connected client is kicked with code first. It returns the store's
// error, and the client that holds the session now if a new connection
// took it over, before (then nothing was removed) or while it was being
// removed (then that client keeps what it took over, in memory and in
// the store: see keepTakenOver).
//
// mochi's take-over is not ordered with this: it disconnects the old
// client, marks it taken over, copies its subscriptions and queue under
// the same client id, then puts the new client in the client map. So the
// old client's subscriptions are taken out of the topic index only while
// it is not taken over (mochi's own rule, UnsubscribeClient), and what a
// take-over may have undone here is done again afterwards; a new
// connection that ran OnSessionEstablish meanwhile stores its whole
// session when established (hook.OnSessionEstablished). The removal holds
// the client's session lock throughout, so that this and that are
// ordered: it blocks that connection's session saves for its kick (at
// most kickWriteTimeout) and one store write. Called without the session
// lock.
func (h *hook) removeSession(cl *mqtt.Client, code packets.Code) (*mqtt.Client, error) {
	if h.beforeRemove != nil {
		h.beforeRemove(cl.ID)
	}
	mu := h.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	if cur, ok := h.mochi.Clients.Get(cl.ID); ok && cur != cl {
		return h.takenOverBy(cl), nil
	}
	h.mochi.Clients.Delete(cl.ID)
	h.forgetFilters(cl.ID)
	// After the delete: a connection that reads the count later finds no
	// session to take over (see removedMeanwhile).
	h.removalGen(cl.ID).Add(1)
	h.restoredOffline.Delete(cl)
	h.authBy.Delete(cl)
	if !cl.Closed() {
		h.kick(cl, code)
	}
	for filter := range cl.State.Subscriptions.GetAll() {
		cl.State.Subscriptions.Delete(filter)
		if !cl.IsTakenOver() && h.mochi.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&h.mochi.Info.Subscriptions, -1)
		}
	}
	for _, m := range cl.State.Inflight.GetAll(false) {
		if cl.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&h.mochi.Info.Inflight, -1)
		}
	}
	h.setStored(cl.ID, false)
	err := h.persist.DeleteSession(cl.ID, true)
	// With Options.Attributes, one more round trip under the lock.
	h.dropAttributes(cl.ID)
	nc := h.takenOverBy(cl)
	if nc != nil {
		h.storeErr("keep taken-over session", nc.ID, h.keepTakenOver(nc))
	}
	h.syncShared(cl.ID)
	return nc, err
}

// takenOverBy returns the client that took cl's session over, inheriting
// it (mochi's inheritClientSession: neither a clean start nor a clean
// 3.1.1 session), or nil. The new client may not be in mochi's client map
// (yet, or any more: the removal's delete may have come after mochi added
// it); the hook's connecting map has it.
func (h *hook) takenOverBy(cl *mqtt.Client) *mqtt.Client {
	if !cl.IsTakenOver() || (cl.Properties.Clean && cl.Properties.ProtocolVersion < 5) {
		return nil
	}
	nc, ok := h.mochi.Clients.Get(cl.ID)
	if !ok || nc == cl {
		v, found := h.connecting.Load(cl.ID)
		if !found {
			return nil
		}
		nc = v.(*mqtt.Client)
	}
	if nc == cl || nc.Properties.Clean {
		return nil
	}
	return nc
}

// removalGen returns the count of removals (removeSession) of client id's
// session, shared with the ids of the same session lock. A connection
// reads it as its session is established (OnSessionEstablish) and again
// once it is (OnSessionEstablished): a change means a removal ran
// meanwhile.
func (h *hook) removalGen(id string) *atomic.Uint64 {
	return &h.removalGens[h.lockIndex(id)]
}

// keepTakenOver makes nc, which took over a session being removed, hold
// it whole: in mochi's client map, its subscriptions in the topic index
// (the removal may have taken out entries of the same client id), and, if
// its session is persistent, in the store with its subscriptions and
// queue, which the removal deleted. Called under nc's session lock.
func (h *hook) keepTakenOver(nc *mqtt.Client) error {
	if _, ok := h.mochi.Clients.Get(nc.ID); !ok && !nc.Closed() {
		h.mochi.Clients.Add(nc)
	}
	for _, sub := range nc.State.Subscriptions.GetAll() {
		if h.mochi.Topics.Subscribe(nc.ID, sub) {
			atomic.AddInt64(&h.mochi.Info.Subscriptions, 1)
		}
	}
	return h.storeWhole(nc)
}

// storeWhole stores the persistent session of nc with its subscriptions
// and queued messages; nothing for a session that ends with its
// connection. Called under nc's session lock.
func (h *hook) storeWhole(nc *mqtt.Client) error {
	if !persistent(nc) {
		return nil
	}
	at := int64(0)
	if nc.Closed() {
		at = nc.StopTime()
	}
	rec := sessionRecord(nc, at)
	for _, pk := range nc.State.Inflight.GetAll(false) {
		h.saveInflight(nc, pk)
	}
	return h.storeSession(rec, subscriptionRecords(nc))
}

// SetSessionExpiry implements Clients.
//
// mochi decides from the client's properties: at the end of a connection
// (server.go, attachClient) an MQTT 5 session with an interval of 0, or a
// 3.1.1 one with the clean flag, ends; an offline MQTT 5 session with the
// interval flag is removed by mochi's sweep (clearExpiredClients) once the
// interval has passed, any other after mqtt.max_session_expiry. So a
// connected MQTT 5 client gets the new interval in its properties; a
// connected 3.1.1 client gets the clean flag (0) or not, and the interval,
// which hook.sessionEnded turns into a timer of our own when the connection
// ends (mochi's sweep would use the broker's maximum); an offline session
// is held as an MQTT 5 session, as restore holds every session, with what
// is left of its expiry, or removed when nothing is. The broker's own saves
// of the session record are ordered with the change (hook.sessionLock);
// mochi reads the fields without a lock (on the client's goroutine at the
// end of the connection, on its event loop for offline sessions, on
// publishers for the protocol version): each is one aligned word, and
// either value it reads is a consistent state.
func (s *Server) SetSessionExpiry(clientID string, seconds uint32) (uint32, error) {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return 0, fmt.Errorf("set session expiry of %q: %w", clientID, ErrNoSession)
	}
	seconds = min(seconds, s.mochi.Options.Capabilities.MaximumSessionExpiryInterval)
	// The client's goroutine reads these fields to save the record as the
	// session is established and as it goes offline (hook.saveSession).
	mu := s.hook.sessionLock(clientID)
	mu.Lock()
	unlock := sync.OnceFunc(mu.Unlock)
	defer unlock()
	p := &cl.Properties
	disconnectedAt := cl.StopTime()
	if cl.Closed() {
		// The new expiry counts from when the session went offline, which
		// for a session restored at start-up is before StopTime.
		disconnectedAt = s.hook.offlineSince(cl)
		left := disconnectedAt + int64(seconds) - time.Now().Unix()
		if left <= 0 {
			unlock() // removeSession takes it
			nc, err := s.hook.removeSession(cl, codeSessionInvalidated)
			if err != nil {
				return seconds, fmt.Errorf("set session expiry of %q: remove expired session: %w", clientID, err)
			}
			if nc != nil {
				// A new connection resumed the session meanwhile: the
				// expiry is its now.
				return s.SetSessionExpiry(clientID, seconds)
			}
			return seconds, nil
		}
		// The interval in the properties counts from StopTime, as mochi's
		// sweep counts it; the record keeps seconds from disconnectedAt.
		p.Props.SessionExpiryInterval = uint32(max(disconnectedAt+int64(seconds)-cl.StopTime(), 1))
		p.Props.SessionExpiryIntervalFlag = true
		p.ProtocolVersion = 5
	} else {
		was := persistent(cl)
		p.Props.SessionExpiryInterval = seconds
		p.Props.SessionExpiryIntervalFlag = true
		if p.ProtocolVersion < 5 {
			p.Clean = seconds == 0
		}
		if !was && seconds > 0 {
			if err := s.storeNowPersistent(cl); err != nil {
				return seconds, fmt.Errorf("set session expiry of %q: %w", clientID, err)
			}
			return seconds, nil
		}
	}
	if s.hook.isStored(clientID) {
		rec := sessionRecord(cl, disconnectedAt)
		rec.SessionExpiry = seconds
		if err := s.persist.PutSession(rec, true); err != nil {
			return seconds, fmt.Errorf("set session expiry of %q: %w", clientID, err)
		}
	}
	return seconds, nil
}

// storeNowPersistent stores the session of the connected client cl, which
// just became persistent, with its subscriptions: from now on the hook
// stores its changes as for any persistent session.
func (s *Server) storeNowPersistent(cl *mqtt.Client) error {
	return s.hook.storeSession(sessionRecord(cl, 0), subscriptionRecords(cl))
}

// SetInflightWindow implements Clients: the outConn under the connection
// counts the window (sendquota.go).
func (s *Server) SetInflightWindow(clientID string, n uint16) (uint16, error) {
	if n == 0 {
		return 0, fmt.Errorf("set in-flight window of %q: %w: 0, want 1 to 65535", clientID, ErrInvalidArgument)
	}
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return 0, fmt.Errorf("set in-flight window of %q: %w", clientID, ErrNoSession)
	}
	oc, ok := cl.Net.Conn.(*outConn)
	if cl.Closed() || !ok {
		return 0, fmt.Errorf("set in-flight window of %q: %w", clientID, ErrNotConnected)
	}
	return oc.setWindow(n), nil
}
