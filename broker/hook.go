package broker

import (
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// hook is Propolis's only mochi hook. It is the single auth/ACL provider
// (mochi ORs auth hooks, so a second one could allow on its own) and the
// only storage hook, so that the order of security and persistence on each
// packet is fixed here rather than by hook registration order.
type hook struct {
	mqtt.HookBase
	log            *slog.Logger
	ext            Extensions
	mochi          *mqtt.Server
	store          *store.Store
	connectTimeout time.Duration
	maxMsgExpiry   int64 // seconds, 0 = no limit

	clients sync.Map // *mqtt.Client -> *clientState

	// seq is the last ordering key handed out; see nextSeq.
	seq atomic.Int64

	storedMu sync.Mutex
	stored   map[string]struct{} // client ids with a session record in the store

	// replay is the pending message being re-published at start-up, if any.
	replay *store.Message
}

// ID names the hook in mochi's logs.
func (h *hook) ID() string { return "propolis" }

// Provides lists the mochi events the hook handles; mochi skips the rest.
func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnPublish, mqtt.OnPublished, mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnPacketEncode:
		return true
	}
	return false
}

// nextSeq returns the next ordering key: a broker-wide counter, strictly
// increasing across restarts (restore starts it above every stored key). It
// goes into packets.Packet.Created, which mochi uses only to order a
// client's in-flight messages, by its low 16 bits (Propolis disables mochi's
// Created-based expiry and sets Expiry itself). A dense counter keeps those
// 16 bits in order except across a wrap, every 65,536 messages.
func (h *hook) nextSeq() int64 { return h.seq.Add(1) }

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion >= 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func (h *hook) isStored(id string) bool {
	h.storedMu.Lock()
	defer h.storedMu.Unlock()
	_, ok := h.stored[id]
	return ok
}

func (h *hook) setStored(id string, on bool) {
	h.storedMu.Lock()
	defer h.storedMu.Unlock()
	if on {
		h.stored[id] = struct{}{}
	} else {
		delete(h.stored, id)
	}
}

// storeErr logs a failed store write once, where it happens.
func (h *hook) storeErr(what, client string, err error) {
	if err != nil {
		h.log.Error("store write failed", "op", what, "client", client, "error", err)
	}
}

// deleteSession removes a stored session with everything it owns.
func (h *hook) deleteSession(id string, durable bool) {
	if !h.isStored(id) {
		return
	}
	h.storeErr("delete session", id, h.store.DeleteSession(id, durable))
	h.setStored(id, false)
}

// saveSession writes cl's session record.
func (h *hook) saveSession(cl *mqtt.Client, disconnectedAt int64, durable bool) {
	rec := sessionRecord(cl, disconnectedAt)
	if err := h.store.PutSession(rec, durable); err != nil {
		h.storeErr("put session", cl.ID, err)
		return
	}
	h.setStored(cl.ID, true)
}

// OnSessionEstablish runs before mochi inherits an existing session: a clean
// start, or a connection without a persistent session, discards what the
// store holds for that client id.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean || !persistent(cl) {
		h.deleteSession(cl.ID, false)
		return
	}
	h.reauthorizeSession(cl)
}

// reauthorizeSession checks the subscriptions of the session cl is about to
// resume against cl's own authorizer: the session may have been made by
// another user, or under rules that changed. Refused subscriptions are
// removed, with the queued messages no remaining subscription covers.
func (h *hook) reauthorizeSession(cl *mqtt.Client) {
	existing, ok := h.mochi.Clients.Get(cl.ID)
	st := h.state(cl)
	if !ok || st == nil {
		return
	}
	var revoked []string
	for filter, sub := range existing.State.Subscriptions.GetAll() {
		_, _, shared := topic.SplitShared(filter)
		v := h.authorizeSubscribe(st, &Subscribe{Filter: filter, QoS: sub.Qos, Shared: shared})
		if v.Decision == Allow {
			continue
		}
		existing.State.Subscriptions.Delete(filter)
		if h.mochi.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&h.mochi.Info.Subscriptions, -1)
		}
		if h.isStored(cl.ID) {
			h.storeErr("delete subscription", cl.ID, h.store.DeleteSubscription(cl.ID, filter, false))
		}
		revoked = append(revoked, filter)
	}
	if len(revoked) == 0 {
		return
	}
	st.revoked.Store(&revoked)
	remaining := existing.State.Subscriptions.GetAll()
	dropped := 0
	for _, m := range existing.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type != packets.Publish || coveredBy(remaining, m.TopicName) {
			continue
		}
		if existing.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&h.mochi.Info.Inflight, -1)
			dropped++
			if h.isStored(cl.ID) {
				h.storeErr("delete inflight", cl.ID, h.store.DeleteInflight(cl.ID, m.PacketID, false))
			}
		}
	}
	h.log.Info("resumed session: subscriptions not authorized for this client removed", "client", cl.ID,
		"username", string(cl.Properties.Username), "filters", revoked, "queued_dropped", dropped)
}

// coveredBy reports whether any of subs matches the topic name.
func coveredBy(subs map[string]packets.Subscription, name string) bool {
	for f := range subs {
		if _, inner, ok := topic.SplitShared(f); ok {
			f = inner
		}
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// OnSessionEstablished records a persistent session once the CONNACK is out.
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if persistent(cl) {
		h.saveSession(cl, 0, true)
	}
}

// OnDisconnect records when a persistent session went offline (its expiry
// counts from then, across restarts) or removes a session that ends here,
// and tells the EventListener.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	now := time.Now()
	if h.ext.Events != nil {
		kind, code, reason := disconnectCause(cl, err)
		h.ext.Events.OnEvent(&Event{
			Kind: EventDisconnect, Time: now, ClientID: cl.ID, Username: string(cl.Properties.Username),
			Listener: cl.Net.Listener, RemoteAddr: cl.Net.Remote, ProtocolVersion: cl.Properties.ProtocolVersion,
			ReasonCode: code, ReasonString: reason, Disconnect: kind,
		})
	}
	h.clients.Delete(cl)
	if cl.IsTakenOver() {
		return // the new connection owns the session record now
	}
	if expire {
		h.deleteSession(cl.ID, false)
		return
	}
	h.saveSession(cl, now.Unix(), false)
}

// disconnectCause tells who ended a connection, from mochi's error and stop
// cause: nil (or "disconnect with will") is the client's DISCONNECT; a
// reason code the broker sent is the server's; anything else was lost.
func disconnectCause(cl *mqtt.Client, err error) (DisconnectKind, byte, string) {
	var c packets.Code
	if errors.As(cl.StopCause(), &c) && c.Code >= 0x80 {
		return DisconnectByServer, c.Code, c.Reason
	}
	if err == nil || errors.Is(err, packets.CodeDisconnectWillMessage) {
		code := byte(0)
		if err != nil {
			code = packets.CodeDisconnectWillMessage.Code
		}
		return DisconnectByClient, code, ""
	}
	if errors.As(err, &c) && c.Code >= 0x80 {
		return DisconnectByServer, c.Code, c.Reason
	}
	// io.EOF, a network error, a keepalive timeout, a malformed packet.
	return DisconnectLost, 0, err.Error()
}

// OnClientExpired removes an expired session from the store.
func (h *hook) OnClientExpired(cl *mqtt.Client) {
	if cur, ok := h.mochi.Clients.Get(cl.ID); ok && cur != cl {
		return // the client reconnected as the session expired
	}
	h.deleteSession(cl.ID, false)
}

// OnSubscribed stores the granted subscriptions of a persistent session and
// finishes the authorization of the SUBSCRIBE.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	results := h.finishSubscribe(cl, pk, codes)
	if persistent(cl) && !cl.Net.Inline {
		for i, f := range pk.Filters {
			if i < len(codes) && codes[i] < 0x80 {
				h.storeErr("put subscription", cl.ID, h.store.PutSubscription(subscriptionRecord(cl.ID, f), true))
			}
		}
	}
	if h.ext.Events != nil {
		h.ext.Events.OnEvent(&Event{Kind: EventSubscribe, Time: time.Now(), ClientID: cl.ID,
			Username: string(cl.Properties.Username), Listener: cl.Net.Listener, RemoteAddr: cl.Net.Remote,
			ProtocolVersion: cl.Properties.ProtocolVersion, Filters: results})
	}
}

// OnUnsubscribed removes stored subscriptions.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if h.isStored(cl.ID) {
		for _, f := range pk.Filters {
			h.storeErr("delete subscription", cl.ID, h.store.DeleteSubscription(cl.ID, f.Filter, false))
		}
	}
	if h.ext.Events != nil && !cl.IsTakenOver() && cl.Net.Conn != nil {
		results := make([]FilterResult, len(pk.Filters))
		for i, f := range pk.Filters {
			results[i] = FilterResult{Filter: f.Filter, QoS: f.Qos}
		}
		h.ext.Events.OnEvent(&Event{Kind: EventUnsubscribe, Time: time.Now(), ClientID: cl.ID,
			Username: string(cl.Properties.Username), Listener: cl.Net.Listener, RemoteAddr: cl.Net.Remote,
			ProtocolVersion: cl.Properties.ProtocolVersion, Filters: results})
	}
}

// OnPublish authorizes an incoming PUBLISH, sets its expiry and ordering key,
// and, for QoS 1/2, writes it to the store as pending before mochi sends the
// PUBACK/PUBREC (durable in sync mode). OnPublished removes the pending
// record once mochi has queued the message for every subscriber; a crash in
// between is repaired at start-up by re-publishing it.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		if r := h.replay; r != nil {
			pk.Created, pk.Expiry = r.Created, r.Expiry
			if pk.Expiry > 0 {
				pk.ProtocolVersion = 5
			}
			return pk, nil
		}
		pk.Created = h.nextSeq()
		return pk, nil
	}
	if err := h.authorizePublish(cl, &pk); err != nil {
		return pk, err
	}

	// Expiry: the message's own interval, capped by max_message_expiry.
	// ProtocolVersion 5 on the stored copy makes mochi's expiry sweeps honour
	// Expiry for messages from 3.1.1 publishers too; it is not used to encode.
	exp := int64(pk.Properties.MessageExpiryInterval)
	if h.maxMsgExpiry > 0 && (exp == 0 || exp > h.maxMsgExpiry) {
		exp = h.maxMsgExpiry
	}
	pk.Expiry = 0
	if exp > 0 {
		pk.Expiry = time.Now().Unix() + exp
		pk.ProtocolVersion = 5
	}
	pk.Created = h.nextSeq()

	if pk.FixedHeader.Qos > 0 {
		if err := h.store.PutPending(uint64(pk.Created), messageRecord("", &pk), true); err != nil {
			h.storeErr("put pending", cl.ID, err)
			h.failPublish(cl, &pk, Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError, ReasonString: "message store unavailable"})
			return pk, packets.ErrRejectPacket
		}
	}
	return pk, nil
}

// OnPublished drops the pending record of a QoS 1/2 publish: its copies now
// sit in each subscriber's in-flight store.
func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline && pk.FixedHeader.Qos > 0 {
		h.storeErr("delete pending", cl.ID, h.store.DeletePending(uint64(pk.Created), false))
	}
}

// OnRetainMessage mirrors the retained-message index into the store.
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	durable := pk.FixedHeader.Qos > 0
	switch r {
	case 1:
		h.storeErr("put retained", cl.ID, h.store.PutRetained(messageRecord(cl.ID, &pk), durable))
	case -1:
		h.storeErr("delete retained", cl.ID, h.store.DeleteRetained(pk.TopicName, durable))
	}
}

// OnRetainedExpired removes an expired retained message from the store.
func (h *hook) OnRetainedExpired(topic string) {
	h.storeErr("delete retained", "", h.store.DeleteRetained(topic, false))
}

// OnQosPublish stores an in-flight or queued message of a persistent session.
func (h *hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	// A PUBACK to a QoS 1 publisher is sent at once: nothing to keep.
	if cl.Net.Inline || pk.FixedHeader.Type == packets.Puback || !persistent(cl) {
		return
	}
	h.storeErr("put inflight", cl.ID, h.store.PutInflight(messageRecord(cl.ID, &pk), false))
}

// OnQosComplete removes an acknowledged in-flight message.
//
// mochi also calls it for the PUBACK it sends a QoS 1 publisher, which
// OnQosPublish never stored: that ack is built by the broker (Created is
// set), while a subscriber's PUBACK comes off the wire (Created is 0).
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	ownAck := pk.FixedHeader.Type == packets.Puback && pk.Created != 0
	if !ownAck && !cl.IsTakenOver() && h.isStored(cl.ID) {
		h.storeErr("delete inflight", cl.ID, h.store.DeleteInflight(cl.ID, pk.PacketID, false))
	}
}

// OnQosDropped removes an expired or discarded in-flight message. A
// taken-over client's messages now belong to the new connection: mochi
// clears the old one's copy, the store keeps them.
func (h *hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cl.IsTakenOver() && h.isStored(cl.ID) {
		h.storeErr("delete inflight", cl.ID, h.store.DeleteInflight(cl.ID, pk.PacketID, false))
	}
}

// OnPacketEncode adjusts an accepting CONNACK (the authenticator's user
// properties and settings) and, when a session is resumed, renumbers the
// ordering keys of its queued messages just before mochi resends them.
// mochi sorts in-flight messages by the low 16 bits of Created; giving them
// 0..n-1 in their true order makes the resend come out in publish order.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode >= 0x80 {
		return pk
	}
	pk = h.connectAck(cl, pk)
	if pk.SessionPresent {
		renumberInflight(cl)
	}
	return pk
}

// renumberInflight rewrites Created of cl's in-flight messages to 0..n-1,
// keeping their order.
func renumberInflight(cl *mqtt.Client) {
	all := cl.State.Inflight.GetAll(false)
	if len(all) < 2 {
		return
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Created < all[j].Created })
	for i := range all {
		all[i].Created = int64(i)
		cl.State.Inflight.Set(all[i])
	}
}
