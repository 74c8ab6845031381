package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// errRefused ends attachClient after the hook has sent its own CONNACK. The
// listener wrapper recognises it and does not log it as a failure.
var errRefused = errors.New("connect refused")

// clientState is what the broker keeps for one authenticated connection. It
// lives in hook.clients from OnConnect to OnDisconnect.
type clientState struct {
	authz    ClientAuthorizer
	connack  []UserProperty
	settings ClientSettings
	// subscribing is set while a SUBSCRIBE is being processed, so that
	// OnACLCheck(read) can tell the subscribe-time check from the
	// per-delivery one cheaply.
	subscribing atomic.Bool
	mu          sync.Mutex
	subVerdicts map[string]Verdict // filter -> verdict of the SUBSCRIBE in progress
	// revoked lists the filters of a resumed session this client may not
	// have (see hook.reauthorizeSession); a delivery already on its way
	// through one of them when they were removed is refused.
	revoked atomic.Pointer[[]string]
	// pub is reused for every PUBLISH of the client (its goroutine only).
	pub Publish
}

// state returns the clientState of cl, or nil for a client that was never
// authenticated (a session restored from the store and not yet reconnected).
func (h *hook) state(cl *mqtt.Client) *clientState {
	v, ok := h.clients.Load(cl)
	if !ok {
		return nil
	}
	return v.(*clientState)
}

// OnConnect authenticates a CONNECT through the Authenticator. A refusal is
// answered here with the chosen CONNACK code, because mochi's own path can
// only send "bad username or password".
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	if cl.ID == mqtt.InlineClientId { // reserved for the broker's own publishes
		h.refuseConnect(cl, 0x85, "client identifier reserved")
		return errRefused
	}
	c := connectInfo(cl, pk)
	h.emit(EventConnectionStart, cl, 0, "")

	res := h.authenticate(c)
	if res.Decision != Allow {
		code := res.ReasonCode
		if code < 0x80 {
			code = CodeNotAuthorized
		}
		h.refuseConnect(cl, code, res.ReasonString)
		h.log.Debug("connect refused", "client", cl.ID, "listener", cl.Net.Listener,
			"remote", cl.Net.Remote, "code", code, "reason", res.ReasonString)
		h.emit(EventAuthFailed, cl, code, res.ReasonString)
		return errRefused
	}

	st := &clientState{authz: res.Client, connack: res.ConnackUserProperties, settings: res.Settings}
	if s := res.Settings; s.SessionExpiry != nil {
		cl.Properties.Props.SessionExpiryInterval = *s.SessionExpiry
		cl.Properties.Props.SessionExpiryIntervalFlag = true
	}
	if s := res.Settings; s.Keepalive != nil {
		cl.State.Keepalive = *s.Keepalive
		cl.State.ServerKeepalive = true
	}
	if n := res.Settings.ReceiveMaximum; n > 0 {
		cl.State.Inflight.ResetReceiveQuota(int32(n))
	}
	h.clients.Store(cl, st)
	h.emit(EventAuthSucceeded, cl, 0, "")
	return nil
}

// authenticate runs the Authenticator and, on Allow, authorizes the will like
// a publish. Anything incomplete fails closed.
func (h *hook) authenticate(c *Connect) AuthResult {
	auth := h.ext.Authenticator
	if auth == nil {
		return AuthResult{Decision: Deny, ReasonCode: CodeNotAuthorized, ReasonString: "no security extension is loaded"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.connectTimeout)
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

// The call* helpers run extension code with a recover: a panic in an
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

func callAuthorizePublish(log *slog.Logger, a ClientAuthorizer, p *Publish) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("authorizer panicked", "topic", p.Topic, "panic", r)
			v = Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError}
		}
	}()
	return a.AuthorizePublish(p)
}

func (h *hook) authorizeSubscribe(st *clientState, s *Subscribe) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("authorizer panicked", "filter", s.Filter, "panic", r)
			v = Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError}
		}
	}()
	return st.authz.AuthorizeSubscribe(s)
}

// refuseConnect writes a refusing CONNACK. MQTT 3.1.1 clients get the 3.1.1
// return code that matches the MQTT 5 reason code.
func (h *hook) refuseConnect(cl *mqtt.Client, code byte, reason string) {
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code}
	if cl.Properties.ProtocolVersion < 5 {
		ack.ReasonCode = v3ConnackCode(code)
	} else {
		ack.Properties.ReasonString = reason
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

// OnConnectAuthenticate lets through exactly the clients OnConnect accepted.
// Nothing else in the hook chain can allow a client (Propolis adds no other
// auth hook to mochi).
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.state(cl) != nil
}

// OnACLCheck answers mochi's topic checks. Publishes are authorized in
// OnPublish (which sees QoS, retain and payload), so write checks pass here.
// Read checks run at SUBSCRIBE (answered from the verdicts OnSubscribe
// computed) and again for every delivery (allowed: the subscription was
// authorized when it was made; refused only when the client's own
// MaxQueued limit is reached).
func (h *hook) OnACLCheck(cl *mqtt.Client, name string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	st := h.state(cl)
	if st == nil {
		return true
	}
	if st.subscribing.Load() {
		v, ok := st.verdict(name)
		return !ok || v.Decision == Allow
	}
	// A delivery: refused by the client's own queue limit, or when it
	// matches a subscription revoked from the session it resumed.
	if r := st.revoked.Load(); r != nil && cl.State.Subscriptions != nil {
		for _, f := range *r {
			if _, inner, ok := topic.SplitShared(f); ok {
				f = inner
			}
			if topic.Match(f, name) && !coveredBy(cl.State.Subscriptions.GetAll(), name) {
				return false
			}
		}
	}
	n := st.settings.MaxQueued
	return n == 0 || cl.State.Inflight.Len() < int(n)
}

// OnSubscribe authorizes each filter of a SUBSCRIBE. mochi then asks
// OnACLCheck per filter and OnSubscribed with the reason codes.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	st := h.state(cl)
	if st == nil {
		return pk
	}
	verdicts := make(map[string]Verdict, len(pk.Filters))
	for _, f := range pk.Filters {
		_, _, shared := topic.SplitShared(f.Filter)
		v := h.authorizeSubscribe(st, &Subscribe{Filter: f.Filter, QoS: f.Qos, Shared: shared})
		if v.Decision != Allow {
			if v.ReasonCode < 0x80 {
				v.ReasonCode = CodeNotAuthorized
			}
			verdicts[f.Filter] = v
		}
	}
	st.mu.Lock()
	st.subVerdicts = verdicts
	st.mu.Unlock()
	st.subscribing.Store(true)
	return pk
}

// finishSubscribe puts the extensions' reason codes into the SUBACK (codes
// shares its array with the packet mochi is about to write) and carries out
// a Disconnect verdict. It returns the per-filter results for the event.
func (h *hook) finishSubscribe(cl *mqtt.Client, pk packets.Packet, codes []byte) []FilterResult {
	st := h.state(cl)
	results := make([]FilterResult, len(pk.Filters))
	var disconnect *Verdict
	for i, f := range pk.Filters {
		results[i] = FilterResult{Filter: f.Filter, QoS: f.Qos}
		if i >= len(codes) {
			continue
		}
		if st != nil {
			if v, ok := st.verdict(f.Filter); ok {
				if cl.Properties.ProtocolVersion >= 5 {
					codes[i] = v.ReasonCode
				}
				if v.Decision == Disconnect && disconnect == nil {
					disconnect = &v
				}
			}
		}
		results[i].Code = codes[i]
	}
	if st != nil {
		st.subscribing.Store(false)
		st.mu.Lock()
		st.subVerdicts = nil
		st.mu.Unlock()
	}
	if disconnect != nil {
		h.disconnect(cl, disconnect.ReasonCode, disconnect.ReasonString)
	}
	return results
}

// verdict returns the verdict OnSubscribe recorded for filter in the
// SUBSCRIBE being processed. A delivery racing with that SUBSCRIBE on a topic
// spelled exactly like a refused filter is refused too; nothing else is.
func (st *clientState) verdict(filter string) (Verdict, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	v, ok := st.subVerdicts[filter]
	return v, ok
}

// authorizePublish runs the client's authorizer on an incoming PUBLISH. It
// returns a non-nil error (for mochi's OnPublish) when the packet must not be
// delivered, having already answered or disconnected the client.
func (h *hook) authorizePublish(cl *mqtt.Client, pk *packets.Packet) error {
	st := h.state(cl)
	v := Verdict{Decision: Deny, ReasonString: "client not authenticated"}
	if st != nil {
		// The client's goroutine handles one PUBLISH at a time: reuse one
		// Publish per client rather than allocate one per message.
		st.pub = Publish{Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Payload: pk.Payload}
		v = callAuthorizePublish(h.log, st.authz, &st.pub)
		st.pub = Publish{}
	}
	if v.Decision == Allow {
		return nil
	}
	if v.ReasonCode < 0x80 {
		v.ReasonCode = CodeNotAuthorized
	}
	h.log.Debug("publish refused", "client", cl.ID, "topic", pk.TopicName, "decision", v.Decision, "code", v.ReasonCode)
	h.failPublish(cl, pk, v)
	return packets.ErrRejectPacket
}

// failPublish answers a PUBLISH that will not be delivered: MQTT 5 QoS 1/2
// gets a PUBACK/PUBREC with the reason code; MQTT 3.1.1 cannot be told, so a
// QoS 1/2 sender is disconnected (MQTT-3.3.5-2); QoS 0 is dropped.
func (h *hook) failPublish(cl *mqtt.Client, pk *packets.Packet, v Verdict) {
	switch {
	case v.Decision == Disconnect:
		h.disconnect(cl, v.ReasonCode, v.ReasonString)
	case pk.FixedHeader.Qos == 0:
	case cl.Properties.ProtocolVersion < 5:
		h.disconnect(cl, v.ReasonCode, v.ReasonString)
	default:
		ackType := packets.Puback
		if pk.FixedHeader.Qos == 2 {
			ackType = packets.Pubrec
		}
		ack := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: ackType},
			PacketID:    pk.PacketID,
			ReasonCode:  v.ReasonCode,
			Properties:  packets.Properties{ReasonString: v.ReasonString},
		}
		if err := cl.WritePacket(ack); err != nil {
			h.log.Debug("write refusing ack", "client", cl.ID, "error", err)
		}
	}
}

// disconnect closes cl's connection, telling an MQTT 5 client why.
func (h *hook) disconnect(cl *mqtt.Client, code byte, reason string) {
	if code < 0x80 {
		code = CodeNotAuthorized
	}
	if reason == "" {
		reason = "not authorized"
	}
	_ = h.mochi.DisconnectClient(cl, packets.Code{Code: code, Reason: reason})
}

// connectAck adds what the authenticator asked for to an accepting CONNACK.
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
		RemoteAddr:      cl.Net.Remote,
		Listener:        cl.Net.Listener,
	}
	if pk.Connect.PasswordFlag && c.Password == nil {
		c.Password = []byte{} // present but empty
	}
	for _, p := range pk.Properties.User {
		c.UserProperties = append(c.UserProperties, UserProperty{Key: p.Key, Value: p.Val})
	}
	if pk.Connect.WillFlag {
		c.Will = &WillInfo{Topic: pk.Connect.WillTopic, Payload: pk.Connect.WillPayload, QoS: pk.Connect.WillQos, Retain: pk.Connect.WillRetain}
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

// emit sends a lifecycle event to the EventListener, if any.
func (h *hook) emit(kind EventKind, cl *mqtt.Client, code byte, reason string) {
	if h.ext.Events == nil {
		return
	}
	h.ext.Events.OnEvent(&Event{
		Kind:            kind,
		Time:            time.Now(),
		ClientID:        cl.ID,
		Username:        string(cl.Properties.Username),
		Listener:        cl.Net.Listener,
		RemoteAddr:      cl.Net.Remote,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		ReasonCode:      code,
		ReasonString:    reason,
	})
}
