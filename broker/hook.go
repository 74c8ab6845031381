package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/overload"
	"github.com/propolis-mqtt/propolis/broker/store"
)

// This file is the mochi dispatch: the hook type and the On* methods mochi
// calls, each handing over to the concern it belongs to:
//
//	authenticate.go  CONNECT: the Authenticator, refusals, the CONNACK
//	authorize.go     PUBLISH and SUBSCRIBE authorization, delivery checks
//	events.go        lifecycle events for the EventListener
//	persist.go       sessions, subscriptions and messages in Persistence
//	stamp.go         message expiry and ordering keys

// hook is Propolis's only mochi hook. It is the single auth/ACL provider
// (mochi ORs auth hooks, so a second one could allow on its own) and the
// only storage hook, so that the order of security and persistence on each
// packet is fixed here rather than by hook registration order.
type hook struct {
	mqtt.HookBase
	log     *slog.Logger
	ext     Extensions
	mochi   *mqtt.Server
	persist Persistence
	// attrs is Options.Attributes, nil without it; see svc_attributes.go.
	attrs AttributeStore
	// cfg is the configuration in effect (Server.cfg); read the live
	// settings through it, see reload.go.
	cfg        *atomic.Pointer[config.Config]
	receiveMax int          // mqtt.receive_maximum, see receive.go
	sec        *securityLog // refused CONNECTs and disconnects, see seclog.go
	stats      *stats       // running totals for metrics, see stats.go
	// throttler holds each accepted client's token buckets (overload.go).
	throttler *overload.Throttler

	clients sync.Map // *mqtt.Client -> *clientState; see authenticate.go

	// seq is the last ordering key handed out; see nextSeq.
	seq atomic.Int64

	// restoredOffline holds, for each session restored at start-up and not
	// taken over since, the Unix time it went offline: restore stops its
	// client at the restart, so StopTime is not it (see offlineSince).
	restoredOffline sync.Map // *mqtt.Client -> int64
	// authBy holds, for each client accepted, AuthResult.DecidedBy of its
	// CONNECT, until its session ends (taken over, expired, removed, or
	// ended with the connection): ClientInfo.AuthenticatedBy.
	authBy sync.Map // *mqtt.Client -> string
	// retained holds the topics of mochi's retained messages, for
	// ListRetained; see retainedindex.go.
	retained retainedIndex
	// connects lets one CONNECT of a client id at a time through mochi's
	// take-over; see connectlock.go.
	connects connectLocks

	storedMu sync.Mutex
	stored   map[string]struct{} // client ids with a session record in persist; see persist.go
	// sessionLocks order a session record's writes with a change of its
	// expiry; see sessionLock.
	sessionLocks [64]sync.Mutex
	// removalGens count the removals of sessions, per session lock; see
	// removalGen.
	removalGens [64]atomic.Uint64
	// connecting holds, per client id, its last connection past
	// OnSessionEstablish, until that connection's OnDisconnect; see
	// takenOverBy.
	connecting sync.Map // string -> *mqtt.Client
	// conns holds the client id of each connection past
	// OnSessionEstablish, until the listener has finished serving it
	// (Server.connEnded).
	conns sync.Map // net.Conn -> string
	// established holds the clients past OnSessionEstablished (so past
	// mochi's Clients.Add), until their OnDisconnect.
	established sync.Map // *mqtt.Client -> struct{}
	// beforeRemove, set by tests only (SetBeforeRemove), runs as
	// removeSession starts, before it takes the session lock.
	beforeRemove func(id string)
	// listScanned, set by tests only (SetListScanned), runs in
	// ListClients between its scan and its descriptions.
	listScanned func()
	// attributeFound, set by tests only (SetAttributeFound), runs once an
	// attribute operation has found its session.
	attributeFound func(id string)
	// willTimer, set by tests only (SetWillTimer), replaces
	// time.AfterFunc for the delay of a will kickedWill publishes.
	willTimer func(d time.Duration, f func())
	// delayedWills holds, by client id, the client whose delayed will
	// clusterWill forwards when its delay is over (clusterwill.go).
	delayedWills sync.Map
	// mochiWills holds, by client id, a mark for the delayed will mochi
	// queued for the id, until its delay is over (clusterwill.go).
	mochiWills sync.Map

	// Disk-full accounting (see health.go): QoS 1/2 publishes refused with
	// store.ErrDiskFull, and queued copies the store did not take.
	refusedPublishes atomic.Uint64
	unsavedCopies    atomic.Uint64
	// unsaved holds the ordering keys (Created) of publishes whose copy
	// for a persistent session could not be stored: their pending record
	// is kept (see deletePending).
	unsaved sync.Map // int64 -> struct{}
	// pending holds the ordering keys of client publishes savePending
	// stored, until deletePending removes their record. A publish whose
	// PUBACK cannot be written (the connection is gone) never reaches
	// OnPublished: its record stays in the store for the next start, and
	// its key goes when its publisher disconnects (forgetPending).
	pending sync.Map // int64 -> *mqtt.Client, the publisher
	// reinjects holds the client PUBLISH packets being delivered through
	// the inline client at a lowered QoS, by key; see reinject.
	reinjects sync.Map // string -> *reinjection
	// unsent holds, per client id, the packet ids of deliveries its last
	// connection held and never sent (heldUnsent, takeUnsent).
	unsent sync.Map // string -> map[uint16]struct{}
	// ids holds, per client id, the aliases of the session's packet ids
	// that collide with the broker's (packetid.go).
	ids sync.Map // string -> *packetIDs
	// exported holds the client ids whose session ExportSession handed to
	// the cluster and whose stored records ForgetExported has yet to
	// delete.
	exported sync.Map // string -> struct{}

	// cluster is the cluster's bookkeeping (cluster.go), nil for a
	// single node (Options.Cluster nil).
	cluster *clusterState
	// shared holds the shared subscriptions reported to the cluster; see
	// clustershared.go.
	shared clusterShared
	// claim asks the cluster for a connecting client's session
	// (Server.claimSession), nil unless Options.Cluster implements
	// ClusterSessions; claimLog bounds the lines of failed claims.
	claim    func(cl *mqtt.Client, pk packets.Packet) (code byte, reason string)
	claimLog *logLimit

	// tap is the packet tap (SetPacketTap), nil when there is none; see
	// tap.go.
	tap atomic.Pointer[tapRef]

	// closed is set when the server starts closing: timers of the hook
	// (expireLater) then do nothing.
	closed atomic.Bool

	// replay is the pending message being re-published at start-up, if any
	// (set by Server.republishPending, read by OnPublish on the same
	// goroutine).
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
		mqtt.OnClientExpired, mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPublishDropped, mqtt.OnPacketSent,
		mqtt.OnSelectSubscribers:
		return true
	case mqtt.OnWillSent:
		return h.cluster != nil
	}
	return false
}

// OnPacketRead sees every packet mochi decodes, before it validates or
// handles it: a CONNECT goes through the CONNECT interceptors
// (interceptConnect), then one with an empty password or an empty will
// payload is made to pass mochi's validation (see keepEmptyPassword,
// keepEmptyWill); a QoS 1/2 PUBLISH beyond the client's Receive Maximum
// disconnects it (checkReceiveMaximum) and is rejected, which ends the
// connection; a DISCONNECT goes through the DISCONNECT interceptors, and
// its reason string is kept for the disconnect event (clientLeaving).
// Before that, a packet numbered by the client whose id names a flow of
// the broker is given an alias (renameInbound). Other packets pass
// unchanged. Last, the packet as the broker will handle it (a rejected one
// too), with the packet id and Password Flag the client sent (asSent), is
// offered to the packet tap (tapRead).
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	sent := sentAs(&pk)
	err := h.readPacket(cl, &pk)
	h.tapRead(cl, &pk, sent)
	return pk, err
}

// readPacket is OnPacketRead but for the tap; it changes pk in place (a
// packet is 800 bytes: no copies per packet).
func (h *hook) readPacket(cl *mqtt.Client, pk *packets.Packet) error {
	if clientsID(pk) {
		h.renameInbound(cl, pk)
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		h.stats.countReceived(pk)
		if !h.checkReceiveMaximum(cl, pk) {
			return packets.ErrRejectPacket
		}
	case packets.Connect:
		if ic := h.interceptors(InterceptConnect); ic != nil && !cl.Net.Inline {
			h.interceptConnect(ic, cl, pk)
		}
		keepEmptyPassword(pk)
		keepEmptyWill(pk)
	case packets.Disconnect:
		// Only an intercepted DISCONNECT's reason string reaches the
		// disconnect event: without interceptors the event is what 1.0
		// and 1.1 modules always got (no reason string).
		if ic := h.interceptors(InterceptDisconnect); ic != nil {
			*pk = h.interceptDisconnect(ic, cl, *pk, false)
			h.clientLeaving(cl, *pk)
		}
	}
	return nil
}

// OnConnect authenticates a CONNECT (see authenticateConnect), once an
// empty will payload is empty again (restoreEmptyWill) and mochi's send
// quota is replaced by outConn's count of the client's Receive Maximum
// (takeSendQuota). A non-nil
// error makes mochi drop the connection; a refusal has been answered with
// its CONNACK already.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	takeSendQuota(cl, pk, h.heldExpired(cl), h.heldUnsent(cl)) // before cl is in h.clients; see sendquota.go
	restoreEmptyWill(cl, &pk)
	return h.authenticateConnect(cl, pk)
}

// OnConnectAuthenticate lets through exactly the clients OnConnect accepted.
// Nothing else in the hook chain can allow a client (Propolis adds no other
// auth hook to mochi).
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.state(cl) != nil
}

// OnSessionEstablish runs before mochi inherits an existing session: a clean
// start, a connection without a persistent session, or one mochi will not
// resume a session for (none in memory, or an MQTT 3.1.1 clean one: see
// mochi's inheritClientSession) discards what is stored for that client id;
// a resumed session keeps only the subscriptions the new connection may
// have.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.connects.acquire(cl) // until cl is in mochi's map; see connectlock.go
	if st := h.state(cl); st != nil {
		st.removals = h.removalGen(cl.ID).Load()
	}
	h.connecting.Store(cl.ID, cl)
	if cl.Net.Conn != nil {
		h.conns.Store(cl.Net.Conn, cl.ID)
	}
	old, ok := h.mochi.Clients.Get(cl.ID)
	if ok {
		h.restoredOffline.Delete(old) // the new connection replaces it
		h.authBy.Delete(old)
	}
	fresh := !ok || (old.Properties.Clean && old.Properties.ProtocolVersion < 5)
	if pk.Connect.Clean || fresh { // mochi inherits nothing
		h.ids.Delete(cl.ID)
		h.forgetFilters(cl.ID)
	}
	h.keepIDs(cl)
	if pk.Connect.Clean || !persistent(cl) || fresh {
		stored := h.isStored(cl.ID)
		h.deleteSession(cl.ID, false)
		if !stored {
			// Options.Attributes may hold attributes of a session this
			// node never held (another node's, or one whose node died).
			h.dropAttributes(cl.ID)
		}
		return
	}
	h.reauthorizeSession(cl)
}

// OnSessionEstablished records a persistent session once the CONNACK is out
// (and a resumed session's queue resent), from then on bounds the client's
// outbound buffer (outConn.establish), and lifts mochi's receive quota,
// which the hook enforces itself (see receive.go). In a cluster it reports
// the connection (clusterConnected, one KV put) and the session's shared
// subscriptions (syncShared).
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.established.Store(cl, struct{}{})
	h.cancelClusterWill(cl.ID)
	h.mochiWills.Delete(cl.ID) // mochi drops the delayed will too [MQTT-3.1.3-9]
	h.clusterConnected(cl)
	defer h.syncShared(cl.ID)
	liftMochiQuota(cl)
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.establish(cl.ID)
	}
	if h.removedMeanwhile(cl) {
		return
	}
	h.restoreInMap(cl)
	if h.persistentLocked(cl) {
		h.saveSession(cl, 0, true)
	}
}

// removedMeanwhile handles a removal of cl's session id (removeSession)
// that ran since OnSessionEstablish: what mochi's take-over gave cl may be
// missing from the topic index, the client map and the store, so cl keeps
// it whole (keepTakenOver), under the session lock the removal holds. It
// reports whether it did.
func (h *hook) removedMeanwhile(cl *mqtt.Client) bool {
	st := h.state(cl)
	if st == nil {
		return false
	}
	mu := h.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	if h.removalGen(cl.ID).Load() == st.removals {
		return false
	}
	h.storeErr("keep taken-over session", cl.ID, h.keepTakenOver(cl))
	return true
}

// OnDisconnect tells the EventListener how the connection ended, forgets
// the client's authorization, and records when a persistent session went
// offline (its expiry counts from then, across restarts) or removes a
// session that ends here.
// In a cluster it reports the end of a connection OnSessionEstablished
// reported (clusterDisconnected).
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	now := time.Now()
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.accepted.Store(nil) // counted here, not by guardedListener.Serve
	}
	h.connects.release(cl) // if its CONNACK was never encoded
	h.stats.countDisconnect(cl, err)
	h.kickedWill(cl, err)
	h.clusterWill(cl, err, expire)
	h.noteMochiWill(cl, err)
	h.emitDisconnect(cl, err, now)
	h.dropState(cl)
	h.forgetPending(cl)
	h.connecting.CompareAndDelete(cl.ID, cl)
	if _, was := h.established.LoadAndDelete(cl); was {
		h.clusterDisconnected(cl) // the pair of OnSessionEstablished's clusterConnected
	}
	if expire && !cl.IsTakenOver() {
		h.forgetFilters(cl.ID)
	}
	if expire {
		h.unsent.Delete(cl.ID)
		if _, other := h.connecting.Load(cl.ID); !other {
			h.ids.Delete(cl.ID)
		}
	}
	h.sessionEnded(cl, expire, now)
	// The deciding extension is kept only for the session mochi holds:
	// one ending here, or whose client was replaced in mochi's map (taken
	// over, or removed meanwhile), is forgotten. Every later replacement
	// deletes it in OnSessionEstablish, which the per-id CONNECT lock
	// (connectLock) orders after this client joined the map.
	if cur, ok := h.mochi.Clients.Get(cl.ID); expire || !ok || cur != cl {
		h.authBy.Delete(cl)
	}
}

// OnClientExpired removes an expired session from persistence.
func (h *hook) OnClientExpired(cl *mqtt.Client) {
	h.unsent.Delete(cl.ID)
	h.ids.Delete(cl.ID)
	h.forgetFilters(cl.ID)
	h.sessionExpired(cl)
}

// OnACLCheck answers mochi's topic checks. Publishes are authorized in
// OnPublish (which sees QoS, retain and payload), so write checks pass here;
// read checks are answered by mayRead.
func (h *hook) OnACLCheck(cl *mqtt.Client, name string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	return h.mayRead(cl, name)
}

// OnSubscribe runs the SUBSCRIBE interceptors on each filter
// (interceptSubscribe), then authorizes each filter they left (see
// subscribeState for how the verdicts reach OnACLCheck and OnSubscribed).
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	var removed map[string]Verdict
	if ic := h.interceptors(InterceptSubscribe); ic != nil && !cl.Net.Inline {
		removed = h.interceptSubscribe(ic, cl, &pk)
	}
	h.beginSubscribe(cl, pk, removed)
	return pk
}

// OnSubscribed stores the granted subscriptions of a persistent session
// (refusing those the store cannot take), finishes the authorization of the
// SUBSCRIBE (reason codes into the SUBACK, a Disconnect verdict) and tells
// the EventListener.
func (h *hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	// The SUBSCRIBE ends (finishSubscribe) before the durable store write,
	// so that deliveries meanwhile get the full per-delivery checks.
	results := h.finishSubscribe(cl, pk, codes)
	h.saveSubscriptions(cl, pk, codes)
	h.clusterSubscribed(cl, pk, codes)
	for i := range results {
		if i < len(codes) {
			results[i].Code = codes[i]
		}
	}
	h.emitSubscribe(cl, results)
	h.sendParentRetained(cl, pk, codes) // what mochi's retained scan misses; see retainparent.go
}

// OnPublishDropped: mochi's queue of pending writes to cl was full (see
// queueFull).
func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.queueFull(cl, pk)
}

// OnUnsubscribed removes stored subscriptions and tells the EventListener.
func (h *hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.deleteSubscriptions(cl, pk)
	h.clusterUnsubscribed(cl, pk)
	h.emitUnsubscribe(cl, pk)
}

// OnPublish authorizes an incoming PUBLISH, runs the PUBLISH interceptors
// on it (interceptPublish, which authorizes it again when they changed
// what authorization reads), sets its expiry and ordering key, and, for
// QoS 1/2, writes it to persistence as pending before mochi sends the
// PUBACK/PUBREC (durable). OnPublished removes the pending record once
// mochi has queued the message for every subscriber; a crash in between is
// repaired at start-up by re-publishing it. The broker's own publishes (the
// inline client: re-published pending messages, crash wills) are only
// stamped; a client's PUBLISH delivered at a lowered QoS through the inline
// client gets back what it had (reinjected).
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		if !h.reinjected(&pk) {
			h.stampInline(&pk)
		}
		return pk, nil
	}
	if err := h.authorizePublish(cl, &pk); err != nil {
		return pk, err
	}
	if ic := h.interceptors(InterceptPublishInbound); ic != nil {
		sent := pk.FixedHeader.Qos
		if err := h.interceptPublish(ic, cl, &pk); err != nil {
			return pk, err
		}
		if pk.FixedHeader.Qos < sent {
			h.stampPublish(&pk)
			return h.downgraded(cl, pk, sent)
		}
	}
	return h.acceptPublish(cl, pk)
}

// OnPublished drops the pending record of a QoS 1/2 publish: its copies now
// sit in each subscriber's in-flight store. A PUBLISH an interceptor lowered
// to QoS 0 is acknowledged here, once retained and delivered (ackOwed).
func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	h.deletePending(cl, pk)
	h.ackOwed(cl)
}

// OnRetainMessage mirrors mochi's retained-message index into persistence.
// It keeps the topic index of ListRetained (retainedindex.go) too.
func (h *hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	h.retained.sync(h.mochi.Topics, pk.TopicName)
	h.saveRetained(cl, pk, r)
}

// OnRetainedExpired removes an expired retained message from persistence
// and from the topic index of ListRetained.
func (h *hook) OnRetainedExpired(topic string) {
	h.retained.sync(h.mochi.Topics, topic)
	h.deleteRetained(topic)
}

// OnQosPublish stores an in-flight or queued message of a persistent session.
func (h *hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	h.saveInflight(cl, pk)
}

// OnQosComplete removes an acknowledged in-flight message.
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.inflightAcked(cl, pk)
	h.aliasEnded(cl, pk)
}

// OnQosDropped removes an expired or discarded in-flight message. A
// PUBLISH mochi dropped (its expiry sweep) is also dropped from the
// deliveries cl's outConn holds back, so that it is never sent and its
// packet id, which mochi may reuse, names one message only.
func (h *hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.stats.countExpired(&pk)
	h.inflightDropped(cl, pk)
	if oc, ok := cl.Net.Conn.(*outConn); ok && pk.FixedHeader.Type == packets.Publish {
		oc.forgetHeld(pk.PacketID)
	}
}

// OnPacketSent gives the client id's CONNECT turn back once the CONNACK is
// written (see connectlock.go): only then may another CONNECT of the id take
// this one over, so that a client's first packet from the server is its
// CONNACK, never a take-over's DISCONNECT [MQTT-3.2.0-1]. A CONNACK whose
// write fails ends the connection, which gives the turn back (onStop,
// OnDisconnect).
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Connack {
		h.connects.release(cl)
	}
}

// OnPacketEncode sees every packet before it is written. It counts the
// PUBRECs and PUBCOMPs written to a client (its Receive Maximum, see
// receive.go; a resent PUBLISH of an open flow gets a success PUBREC),
// gives the answers to a flow of the client renamed by renameInbound the
// client's packet id back (renameAnswer), and adjusts SUBACKs and UNSUBACKs (see subscribeAck) and
// CONNACKs: a refusal is logged and given a code the client's protocol
// version has (see refusingConnack); an accepting one gets the
// authenticator's user properties and settings (see connectAck) and, when
// a session is resumed, the ordering keys of its queued messages are
// renumbered just before mochi resends them (see renumberInflight). PUBLISH,
// CONNACK and DISCONNECT keep their user properties and reason string
// whatever the client's Request Problem Information. Last, the packet as it
// will be written is offered to the packet tap (tapWrite).
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.encodePacket(cl, &pk)
	h.tapWrite(cl, &pk)
	return pk
}

// encodePacket is OnPacketEncode but for the tap; it changes pk in place
// (a packet is 800 bytes: no copies per packet).
func (h *hook) encodePacket(cl *mqtt.Client, pk *packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Pubrec, packets.Pubcomp:
		if st := h.state(cl); st != nil {
			*pk = st.recv.resent(*pk)
			st.recv.sent(*pk)
		}
		*pk = h.renameAnswer(cl, *pk)
		return
	case packets.Puback:
		*pk = h.renameAnswer(cl, *pk)
		return
	case packets.Suback, packets.Unsuback:
		*pk = h.renameAnswer(cl, h.subscribeAck(cl, *pk))
		return
	case packets.Publish, packets.Disconnect:
		// A client's Request Problem Information of 0 has mochi strip
		// reason strings and user properties from every packet; MQTT 5
		// allows them on PUBLISH, CONNACK and DISCONNECT
		// ([MQTT-3.1.2-29]), and a forwarded PUBLISH must keep its user
		// properties ([MQTT-3.3.2-17]). A PUBLISH has no reason string.
		pk.Mods.DisallowProblemInfo = false
		if pk.FixedHeader.Type == packets.Disconnect {
			if ic := h.interceptors(InterceptDisconnect); ic != nil && cl.Properties.ProtocolVersion >= 5 {
				*pk = h.interceptDisconnect(ic, cl, *pk, true)
			}
			return
		}
		if pk.FixedHeader.Dup {
			*pk = h.firstSend(cl, *pk)
		}
		if ic := h.interceptors(InterceptPublishOutbound); ic != nil {
			h.interceptDelivery(ic, cl, pk)
		}
		if pk.Mods.MaxSize > 0 && pk.FixedHeader.Type == packets.Publish && tooLarge(*pk) {
			// mochi will not send it; a QoS 1/2 copy would stay in the
			// session and fail again at every resend, the client unable
			// to resume: discard it as if delivered ([MQTT-3.1.2-25]),
			// so that it counts once.
			h.stats.dropped[dropTooLarge].Add(1)
			if pk.FixedHeader.Qos > 0 {
				h.discardInflight(cl, *pk)
			}
		}
		return
	case packets.Connack:
		pk.Mods.DisallowProblemInfo = false
	default:
		return
	}
	if pk.ReasonCode != 0 {
		*pk = h.refusingConnack(cl, *pk)
		if ic := h.interceptors(InterceptConnack); ic != nil {
			*pk = h.interceptConnack(ic, cl, *pk)
		}
		h.stats.countConnack(pk.ReasonCode)
		return
	}
	h.stats.countConnack(0)
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.accepted.Store(cl) // see guardedListener.Serve
	}
	*pk = h.connectAck(cl, *pk)
	if ic := h.interceptors(InterceptConnack); ic != nil {
		*pk = h.interceptConnack(ic, cl, *pk)
	}
	h.takeUnsent(cl, pk.SessionPresent)
	if pk.SessionPresent {
		h.dropRevokedInflight(cl)
		h.dropTooLargeInflight(cl)
		renumberInflight(cl)
	}
}

// dropTooLargeInflight discards, as the CONNACK resuming cl's session is
// written and before mochi resends them, the QoS 1/2 PUBLISH packets the
// session holds that exceed the Maximum Packet Size of cl's CONNECT
// (queued while it was offline, or restored): mochi would fail the resend
// with "packet too large" and end the connection, every time the client
// came back. Each counts as too large, once.
func (h *hook) dropTooLargeInflight(cl *mqtt.Client) {
	max := cl.Properties.Props.MaximumPacketSize
	if max == 0 {
		return
	}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		pk.Mods.MaxSize = max
		if tooLarge(pk) {
			h.stats.dropped[dropTooLarge].Add(1)
			h.discardInflight(cl, pk)
		}
	}
}

// discardInflight removes a QoS 1/2 PUBLISH that will never be sent from
// cl's session, its store record and the deliveries its outConn holds
// back, as if the client had acknowledged it.
func (h *hook) discardInflight(cl *mqtt.Client, pk packets.Packet) {
	if !cl.State.Inflight.Delete(pk.PacketID) {
		return
	}
	atomic.AddInt64(&h.mochi.Info.Inflight, -1)
	h.inflightDropped(cl, pk)
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.forgetHeld(pk.PacketID)
	}
}
