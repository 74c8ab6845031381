package broker

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/topic"
)

// This file is the Subscriptions service. It changes mochi's topic index
// and the session's subscription map the way mochi's processSubscribe and
// processUnsubscribe do, without their SUBACK/UNSUBACK (the client asked for
// nothing), and stores like the hook does for a client's SUBSCRIBE.

// maxSubscriptionID is the largest MQTT 5 subscription identifier.
const maxSubscriptionID = 268_435_455

// Subscriptions implements Subscriptions.
func (s *Server) Subscriptions(clientID string) ([]SubscriptionInfo, error) {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return nil, fmt.Errorf("subscriptions of %q: %w", clientID, ErrNoSession)
	}
	all := cl.State.Subscriptions.GetAll()
	out := make([]SubscriptionInfo, 0, len(all))
	for _, sub := range all {
		out = append(out, SubscriptionInfo{Filter: sub.Filter, QoS: sub.Qos, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: sub.Identifier})
	}
	slices.SortFunc(out, func(a, b SubscriptionInfo) int { return strings.Compare(a.Filter, b.Filter) })
	return out, nil
}

// Subscribe implements Subscriptions.
func (s *Server) Subscribe(clientID string, sub SubscriptionInfo) error {
	if err := checkSubscription(&sub); err != nil {
		return fmt.Errorf("subscribe %q to %q: %w", clientID, sub.Filter, err)
	}
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return fmt.Errorf("subscribe %q to %q: %w", clientID, sub.Filter, ErrNoSession)
	}
	if cs := s.hook.cluster; cs != nil {
		if err := cs.checkFilter(sub.Filter); err != nil {
			return fmt.Errorf("subscribe %q to %q: %w: %w", clientID, sub.Filter, ErrInvalidArgument, err)
		}
	}
	if limit := s.hook.maxSubscriptions(); limit > 0 {
		if _, held := cl.State.Subscriptions.Get(sub.Filter); !held && cl.State.Subscriptions.Len() >= limit {
			s.throttler.HitSubscriptions()
			return fmt.Errorf("subscribe %q to %q: %w: the session holds client_limits.max_subscriptions (%d) already", clientID, sub.Filter, ErrTooLarge, limit)
		}
	}
	pk := packets.Subscription{Filter: sub.Filter, Qos: sub.QoS, NoLocal: sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: sub.Identifier}
	s.addSubscription(cl, pk)
	if persistent(cl) { // as hook.saveSubscriptions
		if err := s.persist.PutSubscription(subscriptionRecord(clientID, pk), true); err != nil {
			return fmt.Errorf("subscribe %q to %q: %w", clientID, sub.Filter, err)
		}
	}
	if s.sessionGone(cl, pk.Filter) {
		return fmt.Errorf("subscribe %q to %q: %w (it ended meanwhile)", clientID, sub.Filter, ErrNoSession)
	}
	s.hook.clusterReport(clientID, []string{pk.Filter}, true) // as a SUBSCRIBE's (OnSubscribed)
	return nil
}

// sessionGone undoes a Subscribe that raced the end of cl's session (its
// expiry, InvalidateSession) or a take-over that did not copy the new
// subscription: mochi's index and the store must not keep a subscription
// the id's current session (if any) does not hold. It reports whether cl's
// session is gone.
func (s *Server) sessionGone(cl *mqtt.Client, filter string) bool {
	cur, ok := s.mochi.Clients.Get(cl.ID)
	if ok && cur == cl {
		return false
	}
	if ok {
		if _, held := cur.State.Subscriptions.Get(filter); held {
			return false // the take-over copied it
		}
	}
	cl.State.Subscriptions.Delete(filter)
	if s.mochi.Topics.Unsubscribe(filter, cl.ID) {
		atomic.AddInt64(&s.mochi.Info.Subscriptions, -1)
	}
	s.hook.storeErr("delete subscription", cl.ID, s.persist.DeleteSubscription(cl.ID, filter, false))
	return true
}

// Unsubscribe implements Subscriptions.
func (s *Server) Unsubscribe(clientID, filter string) error {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return fmt.Errorf("unsubscribe %q from %q: %w", clientID, filter, ErrNoSession)
	}
	if _, held := cl.State.Subscriptions.Get(filter); !held {
		return nil
	}
	cl.State.Subscriptions.Delete(filter)
	if s.mochi.Topics.Unsubscribe(filter, clientID) {
		atomic.AddInt64(&s.mochi.Info.Subscriptions, -1)
	}
	// As an UNSUBSCRIBE's (OnUnsubscribed).
	s.hook.clusterReport(clientID, []string{filter}, false)
	if s.hook.isStored(clientID) { // as hook.deleteSubscriptions
		if err := s.persist.DeleteSubscription(clientID, filter, true); err != nil {
			return fmt.Errorf("unsubscribe %q from %q: %w", clientID, filter, err)
		}
	}
	return nil
}

// checkSubscription refuses a subscription a client could not make; the
// error wraps ErrInvalidArgument.
func checkSubscription(sub *SubscriptionInfo) error {
	if err := checkString("filter", sub.Filter); err != nil {
		return err
	}
	_, inner, shared := topic.SplitShared(sub.Filter)
	// mochi's check covers the $share/<group>/ prefix, topic's the filter.
	if !mqtt.IsValidFilter(sub.Filter, false) || !topic.ValidFilter(inner) {
		return fmt.Errorf("%w: %q is not a topic filter", ErrInvalidArgument, sub.Filter)
	}
	switch {
	case sub.QoS > 2:
		return fmt.Errorf("%w: QoS %d, want 0, 1 or 2", ErrInvalidArgument, sub.QoS)
	case sub.RetainHandling > 2:
		return fmt.Errorf("%w: retain handling %d, want 0, 1 or 2", ErrInvalidArgument, sub.RetainHandling)
	case sub.Identifier < 0 || sub.Identifier > maxSubscriptionID:
		return fmt.Errorf("%w: subscription identifier %d, want 0 to %d", ErrInvalidArgument, sub.Identifier, maxSubscriptionID)
	case sub.NoLocal && shared:
		return fmt.Errorf("%w: no-local on a shared subscription", ErrInvalidArgument)
	}
	return nil
}
