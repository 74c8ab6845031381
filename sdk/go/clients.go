package propolis

import "time"

// The client service (ABI.md section 5, service "clients"): look sessions
// up, end them, and change a session's expiry and a connection's in-flight
// window. A client id names a session: a connected client, or the offline
// persistent session the broker keeps for it; none gives ErrNotFound.
//
// Called from AuthorizePublish or AuthorizeSubscribe on the very client
// being authorized, DisconnectClient and InvalidateSession close its
// connection during the handler: the client gets no PUBACK or SUBACK. From Authenticate,
// the connecting client is not connected yet: its id names the earlier
// session of that id, if any.

// SessionInfo describes a session, connected or offline.
type SessionInfo struct {
	// Connected is true while the client's network connection is open.
	Connected bool
	// Protocol is 3 (MQTT 3.1), 4 (3.1.1) or 5. A session restored at
	// start-up reads 5 until its client reconnects.
	Protocol byte
	// DropStrategy is what a full queue does with a new message for the
	// client: DropNewest, the broker's only strategy.
	DropStrategy uint8
	// SessionExpiry is how long, in seconds, the session outlives its
	// connection; 0 when it ends with it.
	SessionExpiry uint32
	// ConnectedSince is when the client's CONNECT was authenticated (not the
	// TCP accept); zero while offline.
	ConnectedSince time.Time
	// ExpiresAt is when the offline session will be removed; zero while
	// connected.
	ExpiresAt time.Time
	// InflightWindow is how many QoS 1/2 messages the broker sends the
	// client before it waits for acknowledgements; 0: no limit.
	InflightWindow uint32
	// ReceiveMaximum is how many QoS 1/2 PUBLISH packets the client may
	// have unacknowledged towards the broker.
	ReceiveMaximum uint32
	// Queued is how many QoS 1/2 messages the session holds, in flight or
	// waiting; MaxQueued is the cap beyond which new ones are dropped.
	Queued    uint32
	MaxQueued uint32
	// Username is the client's user name; Listener the listener it
	// connected through; RemoteAddr its address (the last one, while
	// offline).
	Username   string
	Listener   string
	RemoteAddr string
}

// DropNewest is SessionInfo.DropStrategy when a full queue drops the new
// message.
const DropNewest uint8 = 0

// ClientConnected reports whether clientID is connected: false for an
// offline session, ErrNotFound when it has no session.
func ClientConnected(clientID string) (bool, error) {
	n := svcClientIsConnected(clientID)
	if n < 0 {
		return false, statusErr(n)
	}
	return n == 1, nil
}

// ClientSession describes the session of clientID. ErrNotFound: no
// session.
func ClientSession(clientID string) (SessionInfo, error) {
	res, err := withResult(func(out []byte) int32 { return svcClientSession(clientID, out) })
	if err != nil {
		return SessionInfo{}, err
	}
	r := resultReader(res)
	s := SessionInfo{Connected: r.u8() == 1, Protocol: r.u8(), DropStrategy: r.u8()}
	r.u8() // reserved
	s.SessionExpiry = r.u32()
	s.ConnectedSince = unixNanos(r.u64())
	s.ExpiresAt = unixNanos(r.u64())
	s.InflightWindow, s.ReceiveMaximum = r.u32(), r.u32()
	s.Queued, s.MaxQueued = r.u32(), r.u32()
	s.Username, s.Listener, s.RemoteAddr = r.str(), r.str(), r.str()
	if r.err != nil {
		return SessionInfo{}, ErrInternal
	}
	return s, nil
}

// unixNanos is the time of Unix nanoseconds n; the zero time for 0.
func unixNanos(n uint64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n))
}

// DisconnectClient closes the connection of clientID. An MQTT 5 client is
// first sent a DISCONNECT with code (a server's reason code, 0x80 or above,
// e.g. CodeAdministrativeAction) and reason; an MQTT 3.1.1 client is just
// disconnected. With preventWill its will is not published. The session
// stays (offline, or ended when it ends with its connection). It returns
// once the connection is closed. ErrNotFound: no session, or offline;
// ErrInvalidArgument: a code a server may not send, a reason that is not
// UTF-8.
func DisconnectClient(clientID string, code byte, reason string, preventWill bool) error {
	var flags uint32
	if preventWill {
		flags = 1
	}
	return statusErr(svcClientDisconnect(clientID, uint32(code), reason, flags))
}

// InvalidateSession ends the session of clientID now: a connected client is
// disconnected (MQTT 5: 0x98, administrative action), and its
// subscriptions, queued messages and session attributes are removed. Its
// next CONNECT finds no session. ErrNotFound: no session.
func InvalidateSession(clientID string) error {
	return statusErr(svcClientInvalidateSession(clientID))
}

// SetSessionExpiry sets how long, in seconds, the session of clientID
// outlives its connection (capped by the broker's maximum; 0: it ends with
// its connection), at once: for a connected client it decides what happens
// when the connection ends; an offline session whose new expiry has
// already run out is removed. A restart honours it. ErrNotFound: no
// session.
func SetSessionExpiry(clientID string, seconds uint32) error {
	return statusErr(svcClientSetSessionExpiry(clientID, seconds))
}

// SetInflightWindow sets how many QoS 1/2 messages the broker sends the
// connected client clientID before it waits for acknowledgements (1 to
// 65535), on the live connection, and returns the window in effect: n,
// capped by the Receive Maximum the client announced. It lasts as long as
// the connection. ErrNotFound: no session, or offline; ErrInvalidArgument:
// n is 0.
func SetInflightWindow(clientID string, n uint16) (uint16, error) {
	got := svcClientSetInflightWindow(clientID, uint32(n))
	if got < 0 {
		return 0, statusErr(got)
	}
	return uint16(got), nil
}
