package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file authenticates CONNECTs: the Authenticator's view of a CONNECT
// (with TLS details), its answer, the refusing CONNACK, and the accepting
// CONNACK's extras. What an accepted client keeps is its clientState.

// errRefused ends attachClient after the hook has sent its own CONNACK. The
// listener wrapper recognises it and does not log it as a failure.
var errRefused = errors.New("connect refused")

// clientState is what the broker keeps for one authenticated connection. It
// lives in hook.clients from OnConnect to OnDisconnect; a client without
// one (a session restored from the store and not yet reconnected, or a
// refused CONNECT) is not authenticated.
type clientState struct {
	// authz authorizes the client's publishes and subscriptions.
	authz ClientAuthorizer
	// connack and settings are the Authenticator's extras for the CONNACK
	// and the client's limits (see connectAck, mayRead).
	connack  []UserProperty
	settings ClientSettings
	// sub carries the verdicts of the SUBSCRIBE being processed from
	// OnSubscribe to OnACLCheck and OnSubscribed (see authorize.go).
	sub subscribeState
	// subackReason is the reason string of the SUBACK being written, from
	// finishSubscribe to subscribeAck (the client's goroutine only).
	subackReason string
	// revoked lists the filters of a resumed session this client may not
	// have (see hook.reauthorizeSession); a delivery already on its way
	// through one of them when they were removed is refused.
	revoked atomic.Pointer[[]string]
	// recv counts the client's open QoS 2 flows against its Receive
	// Maximum (see receive.go).
	recv inboundQuota
	// ids are the packet id aliases of the client's session, from
	// OnSessionEstablish on (packetid.go).
	ids *packetIDs
	// pub is reused for every PUBLISH of the client (its goroutine only);
	// msg likewise for the PUBLISH interceptors (intercept.go).
	pub Publish
	msg Message
	// owedAck is the acknowledgement of a PUBLISH lowered to QoS 0 that
	// OnPublished writes (see downgraded).
	owedAck owedAck
	// peer names the client to interceptors, built once (intercept.go).
	peer Peer
	// connectedAt is when the CONNECT was accepted (Clients.Client).
	connectedAt time.Time
	// conn holds the connection's attributes (svc_connattrs.go), from the
	// CONNECT on; dropState ends it.
	conn Conn
	// removals is the count of session removals of the client id (see
	// hook.removalGen) when its session was being established.
	removals uint64
	// kickWill is the client's will when the broker disconnected it without
	// preventing the will (hook.kick, hook.kickedWill).
	kickWill atomic.Pointer[mqtt.Will]
	// leaving is the reason string of the DISCONNECT the client sent, as
	// interceptors left it, for its disconnect event (clientLeaving).
	leaving atomic.Pointer[string]
}

// state returns the clientState of cl, or nil for a client that was never
// authenticated. Safe from any goroutine (a sync.Map load).
func (h *hook) state(cl *mqtt.Client) *clientState {
	v, ok := h.clients.Load(cl)
	if !ok {
		return nil
	}
	return v.(*clientState)
}

// dropState forgets cl's clientState when its connection ends, and ends
// the connection's attributes.
func (h *hook) dropState(cl *mqtt.Client) {
	if v, ok := h.clients.LoadAndDelete(cl); ok {
		v.(*clientState).conn.end()
	}
}

// authenticateConnect is OnConnect: it authenticates a CONNECT through the
// Authenticator, on the connecting client's goroutine. A refusal is answered
// here with the chosen CONNACK code, because mochi's own path can only send
// "bad username or password", and returns errRefused. On Allow the client's
// settings are applied and its clientState kept. The broker's own inline
// client passes; the inline client's id is refused to everyone else.
func (h *hook) authenticateConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	if cl.ID == mqtt.InlineClientId { // reserved for the broker's own publishes
		h.refuseConnect(cl, 0x85, "client identifier reserved")
		return errRefused
	}
	if reason := h.clusterCheckClientID(cl); reason != "" {
		h.refuseConnect(cl, 0x85, reason)
		return errRefused
	}
	c := connectInfo(cl, pk)
	c.Conn = newConn()
	if oc, ok := cl.Net.Conn.(*outConn); ok && !oc.connectConn.IsZero() {
		c.Conn = oc.connectConn // what the CONNECT interceptors wrote stays (intercept.go)
	}
	h.emit(EventConnectionStart, cl, c.Conn, 0, "")

	res := h.authenticate(c)
	if res.Decision != Allow {
		code := res.ReasonCode
		if code < 0x80 {
			code = CodeNotAuthorized
		}
		h.refuseConnect(cl, code, res.ReasonString)
		h.emit(EventAuthFailed, cl, c.Conn, code, res.ReasonString)
		c.Conn.end()
		return errRefused
	}
	if h.claim != nil { // a cluster that replicates sessions: clustersessions.go
		if code, reason := h.claim(cl, pk); code != 0 {
			h.refuseConnect(cl, code, reason)
			h.emit(EventAuthFailed, cl, c.Conn, code, reason)
			c.Conn.end()
			return errRefused
		}
	}

	st := &clientState{authz: res.Client, connack: res.ConnackUserProperties, settings: res.Settings, connectedAt: time.Now(), conn: c.Conn}
	st.peer = Peer{ID: cl.ID, Username: string(cl.Properties.Username), ProtocolVersion: cl.Properties.ProtocolVersion, Conn: c.Conn}
	st.recv.max = h.receiveMax
	if n := res.Settings.ReceiveMaximum; n > 0 {
		st.recv.max = int(n)
	}
	applySettings(cl, res.Settings)
	grantKeepalive(cl, h.maxKeepalive())
	h.attachThrottle(cl, res.Settings)
	h.clients.Store(cl, st)
	h.authBy.Store(cl, res.DecidedBy)
	h.emit(EventAuthSucceeded, cl, c.Conn, 0, "")
	return nil
}

// applySettings applies the Authenticator's per-client settings to cl before
// mochi answers the CONNECT: session expiry and keepalive (then sent to an
// MQTT 5 client as Server Keep Alive). The receive maximum is the hook's
// to enforce (clientState.recv, receive.go).
func applySettings(cl *mqtt.Client, s ClientSettings) {
	if s.SessionExpiry != nil {
		cl.Properties.Props.SessionExpiryInterval = *s.SessionExpiry
		cl.Properties.Props.SessionExpiryIntervalFlag = true
	}
	if s.Keepalive != nil {
		cl.State.Keepalive = *s.Keepalive
		cl.State.ServerKeepalive = true
	}
}

// authenticate runs the Authenticator, within the connect timeout, and, on
// Allow, authorizes the will like a publish. Anything incomplete fails
// closed: no Authenticator, an Allow without a ClientAuthorizer, a will the
// authorizer refuses.
func (h *hook) authenticate(c *Connect) AuthResult {
	auth := h.ext.Authenticator
	if auth == nil {
		return AuthResult{Decision: Deny, ReasonCode: CodeNotAuthorized, ReasonString: "no security extension is loaded"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.connectTimeout())
	res := h.callAuthenticate(auth, ctx, c)
	cancel()
	if res.Decision != Allow {
		res.Decision = Deny
		return res
	}
	if res.Client == nil {
		return AuthResult{Decision: Deny, ReasonCode: CodeNotAuthorized, ReasonString: "authenticator allowed without an authorizer"}
	}
	if w := c.Will; w != nil {
		v := callAuthorizePublish(h.log, res.Client, &Publish{Topic: w.Topic, QoS: w.QoS, Retain: w.Retain, Payload: w.Payload, Will: true})
		if v.Decision != Allow {
			reason := v.ReasonString
			if reason == "" {
				reason = "will topic not authorized"
			}
			return AuthResult{Decision: Deny, ReasonCode: v.ReasonCode, ReasonString: reason}
		}
	}
	return res
}

// callAuthenticate runs the Authenticator with a recover: a panic in an
// implementation denies (fail closed) instead of taking the broker down.
func (h *hook) callAuthenticate(auth Authenticator, ctx context.Context, c *Connect) (res AuthResult) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("authenticator panicked", "client", c.ClientID, "panic", r)
			res = AuthResult{Decision: Deny, ReasonCode: CodeUnspecifiedError, ReasonString: "authentication failed"}
		}
	}()
	return auth.Authenticate(ctx, c)
}

// refuseConnect writes a refusing CONNACK. MQTT 3.1.1 clients get the 3.1.1
// return code that matches the MQTT 5 reason code; MQTT 5 clients also get
// the reason string (a 3.1.1 CONNACK has no properties: mochi does not
// encode them, and the log line of OnPacketEncode still reads it). Origin,
// unused in a CONNACK, tells OnPacketEncode the refusal is the hook's. A
// failed write is logged at debug level: the client is dropped either
// way.
func (h *hook) refuseConnect(cl *mqtt.Client, code byte, reason string) {
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code, Origin: "propolis"}
	ack.Properties.ReasonString = reason
	if cl.Properties.ProtocolVersion < 5 {
		ack.ReasonCode = v3ConnackCode(code)
	}
	if err := cl.WritePacket(ack); err != nil {
		h.log.Debug("write refusing connack", "client", cl.ID, "error", err)
	}
}

// v3ConnackCode maps an MQTT 5 CONNACK reason code to an MQTT 3.1.1 return
// code (3.1.1 has only five refusals).
func v3ConnackCode(code byte) byte {
	switch code {
	case 0x84: // unsupported protocol version
		return 0x01
	case 0x85: // client identifier not valid
		return 0x02
	case 0x88, 0x89, 0x97, 0x9F: // server unavailable, busy, quota exceeded, connection rate exceeded
		return 0x03
	case 0x86: // bad user name or password
		return 0x04
	default: // not authorized and every other refusal
		return 0x05
	}
}

// refusingConnack is OnPacketEncode for a refusing CONNACK, the hook's
// own (refuseConnect) or mochi's: it is logged (securityLog), but for
// mochi's protocol-violation refusals, which the violation log reports,
// and its code is made one the client's protocol version has
// (refusalCode).
func (h *hook) refusingConnack(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	ours := pk.Origin != "" // see refuseConnect
	if !ours && isViolationCode(pk.ReasonCode) {
		return refusalCode(cl, pk)
	}
	reason := pk.Properties.ReasonString
	pk = refusalCode(cl, pk)
	if reason == "" { // mochi's 3.1.1 refusals carry none
		reason = v3ConnackText(pk.ReasonCode)
	}
	h.sec.connectRefused(cl, pk.ReasonCode, reason)
	return pk
}

// v3ConnackText names an MQTT 3.1.1 CONNACK return code (3.1.1, table
// 3.1), for the log.
func v3ConnackText(code byte) string {
	switch code {
	case 0x01:
		return "unacceptable protocol version"
	case 0x02:
		return "identifier rejected"
	case 0x03:
		return "server unavailable"
	case 0x04:
		return "bad user name or password"
	case 0x05:
		return "not authorized"
	}
	return ""
}

// refusalCode gives a refusing CONNACK that mochi wrote itself, before the
// authenticator ran, a code the client's protocol version has. mochi sends
// its MQTT 5 reason codes to MQTT 3.1.1 clients where its V5CodesToV3 table
// has no entry: 0x80 for an empty client id with a persistent session, and
// 0x82 ("protocol violation") for a protocol name or level it does not
// speak, in a CONNACK without properties (mochi adds them for level 5
// only). A client that is not MQTT 5 gets the 3.1.1 code (0x02 and 0x01
// there, v3ConnackCode otherwise); an MQTT 5 client whose protocol name
// does not go with level 5 gets 0x84, unsupported protocol version. mochi
// names its refusal in the reason string, which identifies it. Refusals
// of the hook's own (refuseConnect) already carry the right code and pass
// unchanged. Called by OnPacketEncode on the client's goroutine.
func refusalCode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	mochi := packets.Code{Code: pk.ReasonCode, Reason: pk.Properties.ReasonString}
	unknownProtocol := mochi == packets.ErrProtocolViolationProtocolVersion || mochi == packets.ErrProtocolViolationProtocolName
	if cl.Properties.ProtocolVersion == 5 {
		if unknownProtocol {
			pk.ReasonCode = packets.ErrUnsupportedProtocolVersion.Code
			pk.Properties.ReasonString = packets.ErrUnsupportedProtocolVersion.Reason
		}
		return pk
	}
	switch {
	case pk.ReasonCode < 0x80: // already a 3.1.1 code
	case unknownProtocol:
		pk.ReasonCode = 0x01 // unacceptable protocol version
	case mochi == packets.ErrUnspecifiedError && cl.Properties.Props.AssignedClientID != "" && !cl.Properties.Clean:
		pk.ReasonCode = 0x02 // identifier rejected: empty, with a persistent session
	default:
		pk.ReasonCode = v3ConnackCode(pk.ReasonCode)
	}
	return pk
}

// connectAck adds what the authenticator asked for to an accepting CONNACK:
// its user properties, and the session expiry and receive maximum it set.
// OnPacketEncode calls it on the client's goroutine.
func (h *hook) connectAck(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	st := h.state(cl)
	if st == nil {
		return pk
	}
	if len(st.connack) > 0 {
		for _, p := range st.connack {
			pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: p.Key, Val: p.Value})
		}
	}
	if st.settings.SessionExpiry != nil {
		pk.Properties.SessionExpiryInterval = cl.Properties.Props.SessionExpiryInterval
		pk.Properties.SessionExpiryIntervalFlag = true
	}
	if n := st.settings.ReceiveMaximum; n > 0 {
		pk.Properties.ReceiveMaximum = n
	}
	return pk
}

// keepEmptyPassword lets a CONNECT with the password flag set and a
// zero-length password through mochi's validation, which refuses it as
// "password flag set but no value" (0x82) although MQTT 3.1.1 and 5 allow
// it (only its absence is signalled by the flag). OnPacketRead calls it
// before mochi validates the CONNECT: the flag is cleared and the password
// kept as a non-nil empty slice, which hasPassword reads as "present". A
// CONNECT without the flag keeps a nil password (mochi never sets it).
func keepEmptyPassword(pk *packets.Packet) {
	if !pk.Connect.PasswordFlag || len(pk.Connect.Password) > 0 {
		return
	}
	pk.Connect.PasswordFlag = false
	pk.Connect.Password = []byte{}
}

// emptyWill stands in for a will's empty payload from OnPacketRead to
// OnConnect (see keepEmptyWill); it is recognised by its address, never
// by its content, and never written to.
var emptyWill = []byte{0}

// keepEmptyWill lets a CONNECT whose will has an empty payload through
// mochi's validation, which refuses it as "will flag no payload" (0x82)
// although MQTT 3.1.1 and 5 allow it (the field must be present, and may
// be zero bytes long). OnPacketRead calls it before mochi validates the
// CONNECT: the payload becomes emptyWill, one byte that mochi copies into
// the client's will as it is; restoreEmptyWill, first thing in OnConnect,
// makes both empty again, before the authenticator sees the will and
// before it is stored or sent. A will without a topic is still refused
// (a topic name is at least one character long, MQTT 4.7.3).
func keepEmptyWill(pk *packets.Packet) {
	if !pk.Connect.WillFlag || len(pk.Connect.WillPayload) > 0 || pk.Connect.WillTopic == "" {
		return
	}
	pk.Connect.WillPayload = emptyWill[:1:1]
}

// restoreEmptyWill undoes keepEmptyWill on the CONNECT and on cl's will.
func restoreEmptyWill(cl *mqtt.Client, pk *packets.Packet) {
	isEmptyWill := func(b []byte) bool { return len(b) == 1 && &b[0] == &emptyWill[0] }
	if isEmptyWill(pk.Connect.WillPayload) {
		pk.Connect.WillPayload = []byte{}
	}
	if isEmptyWill(cl.Properties.Will.Payload) {
		cl.Properties.Will.Payload = []byte{}
	}
}

// hasPassword reports whether a CONNECT carried a password, possibly empty
// (see keepEmptyPassword).
func hasPassword(pk packets.Packet) bool {
	return pk.Connect.PasswordFlag || pk.Connect.Password != nil
}

// connectInfo builds the Authenticator's view of a CONNECT.
func connectInfo(cl *mqtt.Client, pk packets.Packet) *Connect {
	c := &Connect{
		ClientID:        cl.ID,
		Username:        string(pk.Connect.Username),
		HasUsername:     pk.Connect.UsernameFlag,
		Password:        pk.Connect.Password,
		ProtocolVersion: pk.ProtocolVersion,
		CleanStart:      pk.Connect.Clean,
		Keepalive:       pk.Connect.Keepalive,
		SessionExpiry:   pk.Properties.SessionExpiryInterval,
		ReceiveMaximum:  pk.Properties.ReceiveMaximum,
		RemoteAddr:      cl.Net.Remote,
		Listener:        cl.Net.Listener,
	}
	if hasPassword(pk) && c.Password == nil {
		c.Password = []byte{} // present but empty
	}
	for _, p := range pk.Properties.User {
		c.UserProperties = append(c.UserProperties, UserProperty{Key: p.Key, Value: p.Val})
	}
	if pk.Connect.WillFlag {
		c.Will = &WillInfo{Topic: pk.Connect.WillTopic, Payload: pk.Connect.WillPayload, QoS: pk.Connect.WillQos, Retain: pk.Connect.WillRetain,
			Delay: pk.Connect.WillProperties.WillDelayInterval}
	}
	if tc, ok := tlsConn(cl.Net.Conn); ok {
		c.TLS = tlsInfo(tc.ConnectionState())
	}
	return c
}

// tlsConn finds the *tls.Conn under a client connection (plain TLS, or a
// secure WebSocket through wsConn).
func tlsConn(c any) (*tls.Conn, bool) {
	switch v := c.(type) {
	case *tls.Conn:
		return v, true
	case interface{ NetConn() any }:
		return tlsConn(v.NetConn())
	}
	return nil, false
}

// tlsInfo extracts the verified peer certificate's subject and SANs.
func tlsInfo(cs tls.ConnectionState) *TLSInfo {
	info := &TLSInfo{}
	if len(cs.PeerCertificates) == 0 {
		return info
	}
	cert := cs.PeerCertificates[0]
	info.PeerSubject = cert.Subject.String()
	info.PeerSANs = append(info.PeerSANs, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		info.PeerSANs = append(info.PeerSANs, ip.String())
	}
	for _, u := range cert.URIs {
		info.PeerSANs = append(info.PeerSANs, u.String())
	}
	info.PeerSANs = append(info.PeerSANs, cert.EmailAddresses...)
	return info
}
