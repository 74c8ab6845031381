package broker

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/store"
)

// This file keeps sessions, subscriptions and messages in the hook's
// Persistence as mochi changes them. Every write goes through here (restore
// aside); a failed write is logged once, by storeErr, and the broker carries
// on with what it holds in memory.

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion >= 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// isStored reports whether a session record of client id is stored, so that
// clients without one cost no write. It takes storedMu briefly.
func (h *hook) isStored(id string) bool {
	h.storedMu.Lock()
	defer h.storedMu.Unlock()
	_, ok := h.stored[id]
	return ok
}

// setStored records whether a session record of client id is stored. It
// takes storedMu briefly and never calls out while holding it.
func (h *hook) setStored(id string, on bool) {
	h.storedMu.Lock()
	defer h.storedMu.Unlock()
	if on {
		h.stored[id] = struct{}{}
	} else {
		delete(h.stored, id)
	}
}

// storeErr logs a failed persistence write once, where it happens. A write
// refused for lack of disk space (store.ErrDiskFull) is logged at Debug
// only: the store logs entering and leaving the full state once, and
// StoreHealth counts the refusals.
func (h *hook) storeErr(what, client string, err error) {
	switch {
	case err == nil:
	case errors.Is(err, store.ErrDiskFull):
		h.log.Debug("store write refused: disk full", "op", what, "client", client, "error", err)
	default:
		h.log.Error("store write failed", "op", what, "client", client, "error", err)
	}
}

// saveSession writes cl's session record; disconnectedAt is the Unix time
// the session went offline, 0 while it is connected. Called on the client's
// goroutine (OnSessionEstablished, OnDisconnect).
//
// The session's expiry may change meanwhile (Server.SetSessionExpiry, which
// stores the record itself): the record is built under the client's
// session lock, and written again if the expiry changed before this write
// went out, so that an older record never has the last word.
func (h *hook) saveSession(cl *mqtt.Client, disconnectedAt int64, durable bool) {
	mu := h.sessionLock(cl.ID)
	for range 2 {
		mu.Lock()
		rec := sessionRecord(cl, disconnectedAt)
		mu.Unlock()
		if err := h.persist.PutSession(rec, durable); err != nil {
			h.storeErr("put session", cl.ID, err)
			return
		}
		h.setStored(cl.ID, true)
		mu.Lock()
		now := sessionRecord(cl, disconnectedAt)
		mu.Unlock()
		if now.SessionExpiry == rec.SessionExpiry && now.SessionExpirySet == rec.SessionExpirySet &&
			now.Clean == rec.Clean && now.ProtocolVersion == rec.ProtocolVersion {
			return
		}
	}
}

// storeSession stores the session record rec with its subscriptions subs:
// the subscriptions first, then the record, durably (which makes the
// subscriptions durable too), so that a stored record always has its
// subscriptions. It stops at the first failed write and returns its error;
// the caller logs it. From then on the hook stores the session's changes.
func (h *hook) storeSession(rec *store.Session, subs []store.Subscription) error {
	for i := range subs {
		if err := h.persist.PutSubscription(&subs[i], false); err != nil {
			return err
		}
	}
	if err := h.persist.PutSession(rec, true); err != nil {
		return err
	}
	h.setStored(rec.ClientID, true)
	return nil
}

// subscriptionRecords is the stored form of cl's subscriptions, by filter.
func subscriptionRecords(cl *mqtt.Client) []store.Subscription {
	all := cl.State.Subscriptions.GetAll()
	out := make([]store.Subscription, 0, len(all))
	for _, sub := range all {
		out = append(out, *subscriptionRecord(cl.ID, sub))
	}
	slices.SortFunc(out, func(a, b store.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
	return out
}

// persistentLocked is persistent under cl's session lock.
func (h *hook) persistentLocked(cl *mqtt.Client) bool {
	mu := h.sessionLock(cl.ID)
	mu.Lock()
	defer mu.Unlock()
	return persistent(cl)
}

// sessionLock returns the lock that orders the writes of the session
// record of client id with a change of its session expiry
// (Server.SetSessionExpiry): one of a fixed set, chosen by a hash of the
// id, so that unrelated clients rarely share one.
func (h *hook) sessionLock(id string) *sync.Mutex {
	return &h.sessionLocks[h.lockIndex(id)]
}

// lockIndex is the index of client id's session lock.
func (h *hook) lockIndex(id string) uint32 {
	f := fnv.New32a()
	_, _ = f.Write([]byte(id))
	return f.Sum32() % uint32(len(h.sessionLocks))
}

// deleteSession removes a stored session with everything it owns, its
// attributes in Options.Attributes included; nothing is written for a
// client id without a stored session. (A session that moves to another
// node is not ending: it must be removed with Persistence.DeleteSession
// alone, keeping its attributes.)
func (h *hook) deleteSession(id string, durable bool) {
	if !h.isStored(id) {
		return
	}
	h.storeErr("delete session", id, h.persist.DeleteSession(id, durable))
	h.setStored(id, false)
	h.dropAttributes(id)
}

// dropAttributes removes every attribute of client id from
// Options.Attributes, if the broker has one: its session ended (or a new
// one starts). Persistence's DeleteSession removes those it holds.
func (h *hook) dropAttributes(id string) {
	if h.attrs != nil {
		h.storeErr("delete attributes", id, h.attrs.AttributeDeleteAll(id))
	}
}

// sessionEnded is the persistence side of OnDisconnect: a session that ends
// with its connection is removed; a persistent one is saved with the time it
// went offline (its expiry counts from then, across restarts). A
// taken-over connection writes nothing: the new connection owns the session
// record now. A session removed from mochi while its connection closed
// (Server.InvalidateSession, or expiry) is removed again after the save:
// the remover deletes after taking the client out of mochi, this checks
// after saving, so one of the two deletes comes last.
func (h *hook) sessionEnded(cl *mqtt.Client, expire bool, now time.Time) {
	if cl.IsTakenOver() {
		return
	}
	if expire {
		h.deleteSession(cl.ID, false)
		return
	}
	h.saveSession(cl, now.Unix(), false)
	if _, ok := h.mochi.Clients.Get(cl.ID); !ok && !cl.IsTakenOver() {
		h.deleteSession(cl.ID, false)
		return
	}
	h.expireLater(cl)
}

// expireLater removes the offline session of cl, an MQTT 3.1.1 client
// whose session expiry was set (Server.SetSessionExpiry, or the
// authenticator's ClientSettings.SessionExpiry), once that expiry has
// passed. mochi's sweep gives such a session mqtt.max_session_expiry: it
// honours the interval of MQTT 5 sessions only. The timer does nothing when
// the session was resumed, removed or changed since (an offline session
// whose expiry is set again is held as an MQTT 5 session, which mochi's
// sweep expires), or the broker is closing; a restart honours the stored
// interval (restore).
func (h *hook) expireLater(cl *mqtt.Client) {
	p := &cl.Properties
	mu := h.sessionLock(cl.ID)
	mu.Lock()
	v4, clean, set, exp := p.ProtocolVersion < 5, p.Clean, p.Props.SessionExpiryIntervalFlag, p.Props.SessionExpiryInterval
	mu.Unlock()
	if !v4 || clean || !set || exp >= h.mochi.Options.Capabilities.MaximumSessionExpiryInterval {
		return // not one, or mochi's sweep does it
	}
	time.AfterFunc(time.Duration(exp)*time.Second, func() {
		mu.Lock()
		v4 := p.ProtocolVersion < 5
		mu.Unlock()
		if h.closed.Load() || !v4 || !cl.Closed() {
			return
		}
		if cur, ok := h.mochi.Clients.Get(cl.ID); !ok || cur != cl {
			return
		}
		_, err := h.removeSession(cl, codeSessionInvalidated) // resumed meanwhile: the new connection keeps it
		h.storeErr("expire session", cl.ID, err)
	})
}

// sessionExpired removes the session mochi expired (on its event loop),
// unless the client reconnected as it expired.
func (h *hook) sessionExpired(cl *mqtt.Client) {
	h.restoredOffline.Delete(cl)
	h.authBy.Delete(cl)
	if cur, ok := h.mochi.Clients.Get(cl.ID); ok && cur != cl {
		return
	}
	h.deleteSession(cl.ID, false)
}

// saveSubscriptions stores the granted filters (codes below 0x80) of a
// SUBSCRIBE of a persistent session, durably, before mochi sends the SUBACK.
// A filter the store refuses for lack of space (store.ErrDiskFull) is
// refused to the client too (codes shares its array with the SUBACK: 0x97
// quota exceeded, 0x80 for MQTT 3.1.1) and taken out of mochi, so that the
// broker never holds a subscription a restart would lose; a filter the
// session already had keeps its stored subscription.
func (h *hook) saveSubscriptions(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !persistent(cl) || cl.Net.Inline {
		return
	}
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		err := h.persist.PutSubscription(subscriptionRecord(cl.ID, f), true)
		h.storeErr("put subscription", cl.ID, err)
		if !errors.Is(err, store.ErrDiskFull) {
			continue
		}
		if st := h.state(cl); st != nil && st.sub.existedBefore(f.Filter) {
			// A re-subscription: the stored subscription (with its old
			// options) stays, and so does the one in memory.
			h.log.Warn("disk full: re-subscription kept with its stored options", "client", cl.ID, "filter", f.Filter)
			continue
		}
		codes[i] = CodeUnspecifiedError
		if cl.Properties.ProtocolVersion >= 5 {
			codes[i] = CodeQuotaExceeded
		}
		cl.State.Subscriptions.Delete(f.Filter)
		if h.mochi.Topics.Unsubscribe(f.Filter, cl.ID) {
			atomic.AddInt64(&h.mochi.Info.Subscriptions, -1)
		}
		h.deleteSubscription(cl.ID, f.Filter)
	}
}

// deleteSubscriptions removes the stored subscriptions of an UNSUBSCRIBE
// (or of mochi unsubscribing a client whose session ends).
func (h *hook) deleteSubscriptions(cl *mqtt.Client, pk packets.Packet) {
	if !h.isStored(cl.ID) {
		return
	}
	for _, f := range pk.Filters {
		h.storeErr("delete subscription", cl.ID, h.persist.DeleteSubscription(cl.ID, f.Filter, false))
	}
}

// deleteSubscription removes one stored subscription of client id, if its
// session is stored (see reauthorizeSession).
func (h *hook) deleteSubscription(id, filter string) {
	if h.isStored(id) {
		h.storeErr("delete subscription", id, h.persist.DeleteSubscription(id, filter, false))
	}
}

// savePending writes a QoS 1/2 PUBLISH as pending, durably, before mochi
// acknowledges it, when it needs to be (needsPending); QoS 0 writes nothing.
// The error (already logged) means the message must be refused: it could be
// lost after its PUBACK.
func (h *hook) savePending(cl *mqtt.Client, pk *packets.Packet) error {
	if pk.FixedHeader.Qos == 0 || !h.needsPending(pk) {
		return nil
	}
	err := h.persist.PutPending(uint64(pk.Created), messageRecord("", pk), true)
	h.storeErr("put pending", cl.ID, err)
	if errors.Is(err, store.ErrDiskFull) {
		h.refusedPublishes.Add(1)
	}
	if err == nil {
		h.pending.Store(pk.Created, cl)
	}
	return err
}

// forgetPending forgets the pending records savePending wrote for cl's
// publishes that OnPublished never saw: mochi stops before queueing a
// message when it cannot write its PUBACK/PUBREC (the connection failed
// meanwhile). The records stay in the store, so a restart re-publishes
// those messages (their publisher was never told they arrived, and
// resends them too: a subscriber may get one twice, none loses it).
// OnDisconnect calls it once cl's goroutine has stopped reading, so none of
// cl's publishes is between savePending and OnPublished any more; it
// costs one pass over the publishes in flight broker-wide.
func (h *hook) forgetPending(cl *mqtt.Client) {
	h.pending.Range(func(k, v any) bool {
		if v == cl {
			h.pending.Delete(k)
		}
		return true
	})
}

// needsPending reports whether a QoS 1/2 publish must be stored as pending
// before its PUBACK: it is retained (mochi stores the retained copy before
// the PUBACK; a refused pending write refuses it on a full disk too), or a
// stored session subscribes to its topic, since only stored sessions get a
// re-published message after a crash. A message that only clean sessions
// (or nobody) receive is lost with them in a crash anyway, so it costs no
// store write: with no stored session at all this is one lock; otherwise
// mochi's topic index is matched (as mochi does again to deliver). A
// stored session subscribing while the message is matched is treated as
// subscribing after it: the copy mochi may still queue for it is stored
// by saveInflight, without a pending record behind it.
func (h *hook) needsPending(pk *packets.Packet) bool {
	if pk.FixedHeader.Retain {
		return true
	}
	h.storedMu.Lock()
	none := len(h.stored) == 0
	h.storedMu.Unlock()
	if none {
		return false
	}
	subs := h.mochi.Topics.Subscribers(pk.TopicName)
	for id := range subs.Subscriptions {
		if h.isStored(id) {
			return true
		}
	}
	for _, group := range subs.Shared {
		for id := range group {
			if h.isStored(id) {
				return true
			}
		}
	}
	return false
}

// deletePending drops the pending record of a client's QoS 1/2 publish, if
// savePending wrote one, once mochi has queued it for every subscriber,
// unless a copy for a persistent session could not be stored
// (saveInflight): then the record stays, so that a restart re-publishes the
// message (a subscriber may get it twice, none loses it), and the copy
// lives in memory meanwhile.
func (h *hook) deletePending(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return
	}
	_, written := h.pending.LoadAndDelete(pk.Created)
	_, kept := h.unsaved.LoadAndDelete(pk.Created)
	if !written {
		return
	}
	if kept {
		h.log.Warn("pending message kept: a queued copy could not be stored", "client", cl.ID, "topic", pk.TopicName)
		return
	}
	h.storeErr("delete pending", cl.ID, h.persist.DeletePending(uint64(pk.Created), false))
}

// saveRetained mirrors one change of mochi's retained-message index: r is 1
// for a new retained message, -1 for a removed one (an empty payload).
// QoS 1/2 changes are durable.
func (h *hook) saveRetained(cl *mqtt.Client, pk packets.Packet, r int64) {
	durable := pk.FixedHeader.Qos > 0
	switch r {
	case 1:
		h.storeErr("put retained", cl.ID, h.persist.PutRetained(messageRecord(cl.ID, &pk), durable))
	case -1:
		h.storeErr("delete retained", cl.ID, h.persist.DeleteRetained(pk.TopicName, durable))
	}
}

// deleteRetained removes the retained message of topic after mochi expired it.
func (h *hook) deleteRetained(topic string) {
	h.storeErr("delete retained", "", h.persist.DeleteRetained(topic, false))
}

// saveInflight stores an in-flight or queued message of a persistent
// session. The PUBACK mochi sends a QoS 1 publisher is passed here too and
// is not kept: it is sent at once; nor is the PUBREC of a QoS 2 flow of the
// client renamed by renameInbound (see renamed).
func (h *hook) saveInflight(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.FixedHeader.Type == packets.Puback || !persistent(cl) || h.renamed(cl, pk) {
		return
	}
	err := h.persist.PutInflight(messageRecord(cl.ID, &pk), false)
	if err == nil {
		return
	}
	h.storeErr("put inflight", cl.ID, err)
	// A resend (Dup) rewrites a record stored before; only a new copy
	// (queued during fan-out, or at restore) is missing from the store.
	// Its pending record stays (see deletePending).
	if pk.FixedHeader.Type == packets.Publish && !pk.FixedHeader.Dup {
		h.unsavedCopies.Add(1)
		h.unsaved.Store(pk.Created, struct{}{})
	}
}

// queueFull handles a copy mochi dropped because cl's queue of pending
// writes was full. For QoS 1/2, right after this call mochi takes the copy
// back out of the session in memory, though saveInflight stored it, and
// may later give its packet id to another message (overwriting the stored
// copy). So the publish's pending record is kept (see deletePending): a
// restart re-publishes it and nothing acknowledged is lost. The client,
// that far behind, is disconnected as a slow consumer; QoS 0 copies are
// dropped (counted by mochi in MessagesDropped).
func (h *hook) queueFull(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.FixedHeader.Qos == 0 {
		return
	}
	if persistent(cl) && pk.Created != 0 {
		h.unsavedCopies.Add(1)
		h.unsaved.Store(pk.Created, struct{}{})
	}
	h.log.Warn("slow consumer: queue of pending writes full, disconnecting; the dropped QoS 1/2 copy is kept for a restart",
		"client", cl.ID, "topic", pk.TopicName)
	cl.Stop(fmt.Errorf("%w: its queue of pending writes is full", ErrSlowConsumer))
}

// inflightAcked removes an in-flight message the subscriber acknowledged.
//
// mochi also reports the PUBACK it sends a QoS 1 publisher, which
// saveInflight never stored: that ack is built by the broker (Created is
// set), while a subscriber's PUBACK comes off the wire (Created is 0).
func (h *hook) inflightAcked(cl *mqtt.Client, pk packets.Packet) {
	ownAck := pk.FixedHeader.Type == packets.Puback && pk.Created != 0
	if !ownAck && !cl.IsTakenOver() {
		h.deleteInflight(cl.ID, pk.PacketID)
	}
}

// inflightDropped removes an expired or discarded in-flight message. A
// taken-over client's messages now belong to the new connection: mochi
// clears the old one's copy, the stored ones stay.
func (h *hook) inflightDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cl.IsTakenOver() {
		h.deleteInflight(cl.ID, pk.PacketID)
	}
}

// deleteInflight removes one stored in-flight message of client id, if its
// session is stored.
func (h *hook) deleteInflight(id string, packetID uint16) {
	if h.isStored(id) {
		h.storeErr("delete inflight", id, h.persist.DeleteInflight(id, packetID, false))
	}
}
