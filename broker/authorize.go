package broker

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// This file authorizes an authenticated client's PUBLISH and SUBSCRIBE
// packets through its ClientAuthorizer, answers mochi's per-delivery read
// checks, re-checks a resumed session's subscriptions, and carries out
// refusals (a refusing PUBACK/PUBREC, or a disconnect).

// subscribeState carries the verdicts of one SUBSCRIBE through the three
// mochi callbacks that process it. mochi v2.7.9 offers no per-SUBSCRIBE
// context: processSubscribe calls, on the subscribing client's goroutine,
//
//  1. OnSubscribe(pk): beginSubscribe asks the ClientAuthorizer about every
//     filter and records the refusals here (begin); the SUBSCRIBE is now in
//     progress.
//  2. OnACLCheck(cl, filter, false) for each valid filter: mayRead answers
//     from the recorded verdicts; a refused filter gets 0x87 from mochi and
//     is not subscribed.
//  3. OnSubscribed(pk, codes), just before mochi writes the SUBACK:
//     finishSubscribe puts the extension's own reason codes into the SUBACK
//     (MQTT 5), carries out a Disconnect verdict, and ends the SUBSCRIBE
//     (end).
//
// OnACLCheck(read) also runs for every delivery to this client, on the
// publishers' goroutines, possibly while a SUBSCRIBE is in progress: active
// is an atomic flag so that a delivery tells the two apart without a lock,
// and verdicts sits under mu. A delivery racing with a SUBSCRIBE on a topic
// spelled exactly like a refused filter is refused too; nothing else is.
type subscribeState struct {
	active   atomic.Bool
	mu       sync.Mutex
	verdicts map[string]Verdict  // refused filter -> its verdict
	existed  map[string]struct{} // filters the session had before this SUBSCRIBE
	filters  map[string]struct{} // every filter of this SUBSCRIBE
}

// begin records the filters of a SUBSCRIBE, the refused ones, and those
// the session already had, and marks it in progress.
func (s *subscribeState) begin(filters map[string]struct{}, verdicts map[string]Verdict, existed map[string]struct{}) {
	s.mu.Lock()
	s.filters, s.verdicts, s.existed = filters, verdicts, existed
	s.mu.Unlock()
	s.active.Store(true)
}

// existedBefore reports whether the session had filter before the SUBSCRIBE
// being (or last) processed: a refused re-subscription keeps the old one.
func (s *subscribeState) existedBefore(filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.existed[filter]
	return ok
}

// inProgress reports whether a SUBSCRIBE is being processed; one atomic load.
func (s *subscribeState) inProgress() bool { return s.active.Load() }

// verdict returns the verdict recorded for filter in the SUBSCRIBE being
// processed; ok is false for a filter that was allowed (or none in progress).
func (s *subscribeState) verdict(filter string) (Verdict, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.verdicts[filter]
	return v, ok
}

// subscribing reports whether name is a filter of the SUBSCRIBE being
// processed (not a topic name of a delivery).
func (s *subscribeState) subscribing(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.filters[name]
	return ok
}

// end marks the SUBSCRIBE finished and forgets its verdicts.
func (s *subscribeState) end() {
	s.active.Store(false)
	s.mu.Lock()
	s.verdicts, s.filters = nil, nil
	s.mu.Unlock()
}

// beginSubscribe is OnSubscribe: it authorizes each filter of a SUBSCRIBE
// and records the refusals in cl's subscribeState (step 1 above). A client
// that was never authenticated records nothing.
func (h *hook) beginSubscribe(cl *mqtt.Client, pk packets.Packet, removed map[string]Verdict) {
	st := h.state(cl)
	if st == nil {
		return
	}
	verdicts := make(map[string]Verdict, len(pk.Filters))
	for f, v := range removed { // by an interceptor: refused, not authorized
		verdicts[f] = v
	}
	var existed map[string]struct{}
	filters := make(map[string]struct{}, len(pk.Filters))
	for _, f := range pk.Filters {
		filters[f.Filter] = struct{}{}
		if _, ok := cl.State.Subscriptions.Get(f.Filter); ok {
			if existed == nil {
				existed = map[string]struct{}{}
			}
			existed[f.Filter] = struct{}{}
		}
		if _, gone := removed[f.Filter]; gone {
			continue
		}
		_, _, shared := topic.SplitShared(f.Filter)
		v := h.authorizeSubscribe(st, &Subscribe{Filter: f.Filter, QoS: f.Qos, Shared: shared})
		if v.Decision != Allow {
			if v.ReasonCode < 0x80 {
				v.ReasonCode = CodeNotAuthorized
			}
			verdicts[f.Filter] = v
		}
	}
	h.clusterCheckFilters(pk.Filters, verdicts)
	if h.maxSubscriptions() > 0 {
		filters := make([]string, 0, len(pk.Filters))
		for _, f := range pk.Filters {
			if checkSubscription(&SubscriptionInfo{Filter: f.Filter, QoS: f.Qos, NoLocal: f.NoLocal,
				RetainHandling: f.RetainHandling, Identifier: f.Identifier}) != nil {
				continue // mochi refuses it: it takes no room
			}
			filters = append(filters, f.Filter)
		}
		h.limitSubscriptions(cl, filters, existed, verdicts)
	}
	st.sub.begin(filters, verdicts, existed)
}

// mayRead answers OnACLCheck(read) for a topic filter or name. During a
// SUBSCRIBE it answers from the verdicts beginSubscribe recorded (step 2
// above). Otherwise it is a delivery, on the publisher's goroutine: allowed,
// since the subscription was authorized when it was made, unless the
// client's own MaxQueued limit is reached or the topic matches only a
// subscription revoked from the session it resumed. A client that was
// never authenticated (a restored session) is allowed. Either way, a '$'
// topic none of the client's subscriptions matches is refused (dollar.go).
func (h *hook) mayRead(cl *mqtt.Client, name string) bool {
	st := h.state(cl)
	if st != nil && st.sub.inProgress() && st.sub.subscribing(name) {
		v, ok := st.sub.verdict(name) // a filter being subscribed
		return !ok || v.Decision == Allow
	}
	if dollarUnmatched(cl, name) { // a wildcard's '$' topic (dollar.go)
		return false
	}
	if st == nil || st.sub.inProgress() {
		return true
	}
	if r := st.revoked.Load(); r != nil && cl.State.Subscriptions != nil {
		for _, f := range *r {
			if _, inner, ok := topic.SplitShared(f); ok {
				f = inner
			}
			if topic.Match(f, name) && !coveredBy(cl.State.Subscriptions.GetAll(), name) {
				h.stats.dropped[dropNotAuthorized].Add(1)
				return false
			}
		}
	}
	n := st.settings.MaxQueued
	if n == 0 || cl.State.Inflight.Len() < int(n) {
		return true
	}
	h.stats.dropped[dropQueueFull].Add(1)
	return false
}

// finishSubscribe is step 3 above: it puts the extensions' reason codes
// into the SUBACK (codes shares its array with the packet mochi is about to
// write), ends the SUBSCRIBE in cl's subscribeState and carries out a
// Disconnect verdict. It returns the per-filter results for the event.
func (h *hook) finishSubscribe(cl *mqtt.Client, pk packets.Packet, codes []byte) []FilterResult {
	st := h.state(cl)
	results := make([]FilterResult, len(pk.Filters))
	var (
		disconnect *Verdict
		kicked     string // the filter whose verdict disconnects
	)
	for i, f := range pk.Filters {
		results[i] = FilterResult{Filter: f.Filter, QoS: f.Qos}
		if i >= len(codes) {
			continue
		}
		if st != nil {
			if v, ok := st.sub.verdict(f.Filter); ok {
				if cl.Properties.ProtocolVersion >= 5 {
					codes[i] = v.ReasonCode
				}
				if v.Decision == Disconnect && disconnect == nil {
					disconnect, kicked = &v, f.Filter
				}
				// As refusePublish: which filters were refused, for
				// the operator (a Disconnect is also logged at warn
				// below). The code is the verdict's: MQTT 3.1.1
				// clients get 0x80.
				h.log.Debug("subscribe refused", "client", cl.ID, "filter", f.Filter, "decision", v.Decision, "code", logCode(v.ReasonCode), "reason", v.ReasonString)
			}
		}
		results[i].Code = codes[i]
	}
	if st != nil {
		if cl.Properties.ProtocolVersion >= 5 {
			st.subackReason = subackReason(st, pk)
		}
		st.sub.end()
	}
	if disconnect != nil {
		h.disconnectLogged(cl, disconnect.ReasonCode, disconnect.ReasonString, "subscribe refused", slog.String("filter", kicked))
	}
	return results
}

// subackReason joins the distinct reason strings of the refused filters of
// a SUBACK (one reason string per SUBACK), before st's verdicts are
// forgotten; "" when none has one.
func subackReason(st *clientState, pk packets.Packet) string {
	var reasons []string
	for _, f := range pk.Filters {
		v, ok := st.sub.verdict(f.Filter)
		if ok && v.ReasonString != "" && !slices.Contains(reasons, v.ReasonString) {
			reasons = append(reasons, v.ReasonString)
		}
	}
	return strings.Join(reasons, "; ")
}

// subscribeAck shapes a SUBACK or UNSUBACK before it is encoded: mochi
// copies the user properties of the SUBSCRIBE or UNSUBSCRIBE into it,
// which are the client's, not the server's (MQTT 5, 3.9.2.1.3), so they
// are dropped; a SUBACK gets the reason string of the extensions' refusals
// (see subackReason). OnPacketEncode calls it on cl's goroutine, right
// after OnSubscribed.
func (h *hook) subscribeAck(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	pk.Properties.User = nil
	if pk.FixedHeader.Type != packets.Suback {
		return pk
	}
	if st := h.state(cl); st != nil && st.subackReason != "" {
		if pk.Properties.ReasonString == "" {
			pk.Properties.ReasonString = st.subackReason
		}
		st.subackReason = ""
	}
	return pk
}

// authorizeSubscribe runs the client's AuthorizeSubscribe with a recover: a
// panic in an implementation denies (fail closed) instead of taking the
// broker down.
func (h *hook) authorizeSubscribe(st *clientState, s *Subscribe) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("authorizer panicked", "filter", s.Filter, "panic", r)
			v = Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError}
		}
	}()
	return st.authz.AuthorizeSubscribe(s)
}

// callAuthorizePublish runs a's AuthorizePublish with a recover: a panic in
// an implementation denies (fail closed) instead of taking the broker down.
// It serves both PUBLISH packets and wills at CONNECT.
func callAuthorizePublish(log *slog.Logger, a ClientAuthorizer, p *Publish) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("authorizer panicked", "topic", p.Topic, "panic", r)
			v = Verdict{Decision: Deny, ReasonCode: CodeUnspecifiedError}
		}
	}()
	return a.AuthorizePublish(p)
}

// authorizePublish runs the client's authorizer on an incoming PUBLISH, on
// the publisher's goroutine. It returns a non-nil error (for mochi's
// OnPublish) when the packet must not be delivered, having already answered
// or disconnected the client.
func (h *hook) authorizePublish(cl *mqtt.Client, pk *packets.Packet) error {
	v := h.publishVerdict(cl, pk)
	if v.Decision == Allow {
		return nil
	}
	h.refusePublish(cl, pk, v)
	return packets.ErrRejectPacket
}

// publishVerdict is the client's authorizer's verdict on pk (a Deny for a
// client that was never authenticated).
func (h *hook) publishVerdict(cl *mqtt.Client, pk *packets.Packet) Verdict {
	st := h.state(cl)
	v := Verdict{Decision: Deny, ReasonString: "client not authenticated"}
	if st != nil {
		// The client's goroutine handles one PUBLISH at a time: reuse one
		// Publish per client rather than allocate one per message.
		st.pub = Publish{Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Payload: pk.Payload}
		v = callAuthorizePublish(h.log, st.authz, &st.pub)
		st.pub = Publish{}
	}
	return v
}

// refusePublish answers a PUBLISH its authorizer refused with verdict v
// (see failPublish), logged at debug.
func (h *hook) refusePublish(cl *mqtt.Client, pk *packets.Packet, v Verdict) {
	if v.ReasonCode < 0x80 {
		v.ReasonCode = CodeNotAuthorized
	}
	if h.log.Enabled(context.Background(), slog.LevelDebug) { // a flood of refused QoS 0 PUBLISHes boxes nothing
		h.log.Debug("publish refused", "client", cl.ID, "topic", pk.TopicName, "decision", v.Decision, "code", logCode(v.ReasonCode), "reason", v.ReasonString)
	}
	h.stats.dropped[dropNotAuthorized].Add(1)
	h.failPublish(cl, pk, v)
}

// failPublish answers a PUBLISH that will not be delivered: MQTT 5 QoS 1/2
// gets a PUBACK/PUBREC with the reason code; MQTT 3.1.1 cannot be told, so a
// QoS 1/2 sender is disconnected (MQTT-3.3.5-2); QoS 0 is dropped; a
// Disconnect verdict disconnects.
func (h *hook) failPublish(cl *mqtt.Client, pk *packets.Packet, v Verdict) {
	switch {
	case v.Decision == Disconnect:
		h.disconnectLogged(cl, v.ReasonCode, v.ReasonString, "publish refused", slog.String("topic", pk.TopicName))
	case pk.FixedHeader.Qos == 0:
	case cl.Properties.ProtocolVersion < 5:
		h.disconnectLogged(cl, v.ReasonCode, v.ReasonString, "publish refused", slog.String("topic", pk.TopicName))
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

// disconnect closes cl's connection, telling an MQTT 5 client why (0x87
// "not authorized" when code or reason is missing).
func (h *hook) disconnect(cl *mqtt.Client, code byte, reason string) {
	if code < 0x80 {
		code = CodeNotAuthorized
	}
	if reason == "" {
		reason = "not authorized"
	}
	_ = h.mochi.DisconnectClient(cl, packets.Code{Code: code, Reason: reason})
}

// reauthorizeSession checks the subscriptions of the session cl is about to
// resume against cl's own authorizer: the session may have been made by
// another user, or under rules that changed. Refused subscriptions are
// removed (from mochi and from persistence), with the queued messages no
// remaining subscription covers. OnSessionEstablish calls it on the
// connecting client's goroutine, before mochi inherits the session.
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
		h.deleteSubscription(cl.ID, filter)
		revoked = append(revoked, filter)
	}
	if len(revoked) == 0 {
		return
	}
	st.revoked.Store(&revoked)
	dropped := h.dropUncovered(existing, cl.ID)
	h.log.Info("resumed session: subscriptions not authorized for this client removed", "client", cl.ID,
		"username", string(cl.Properties.Username), "filters", revoked, "queued_dropped", dropped)
}

// dropUncovered removes from from's in-flight messages (stored under the
// client id id) every PUBLISH no subscription of from covers any more, and
// returns how many. reauthorizeSession runs it on the old session; a
// delivery to that session can still land between then and mochi's copy
// of its in-flight messages to the new client (mochi acknowledges a
// publish before it delivers it, and the old session has no clientState
// for mayRead to refuse it), so dropRevokedInflight runs it again on the
// copy before it is resent.
func (h *hook) dropUncovered(from *mqtt.Client, id string) int {
	remaining := from.State.Subscriptions.GetAll()
	dropped := 0
	for _, m := range from.State.Inflight.GetAll(false) {
		if m.FixedHeader.Type != packets.Publish || coveredBy(remaining, m.TopicName) {
			continue
		}
		if from.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&h.mochi.Info.Inflight, -1)
			dropped++
			h.deleteInflight(id, m.PacketID)
		}
	}
	return dropped
}

// dropRevokedInflight is the second sweep of dropUncovered, on the
// in-flight messages a resumed session handed to cl, when subscriptions
// were revoked at resume. OnPacketEncode calls it on cl's goroutine for the
// accepting CONNACK, just before mochi resends them.
func (h *hook) dropRevokedInflight(cl *mqtt.Client) {
	if st := h.state(cl); st == nil || st.revoked.Load() == nil {
		return
	}
	if n := h.dropUncovered(cl, cl.ID); n > 0 {
		h.log.Info("resumed session: queued messages of revoked subscriptions dropped", "client", cl.ID, "queued_dropped", n)
	}
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
