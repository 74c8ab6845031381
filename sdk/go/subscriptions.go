package propolis

// Subscriptions (ABI.md section 5, service "subscriptions"): read and
// change the subscriptions of any session, connected or offline, as if the
// client had subscribed or unsubscribed. No authorizer is asked and no
// SUBACK or retained message is sent; a persistent session keeps what is
// added across restarts and, while offline, queues QoS 1/2 messages for it.

// Subscription is one subscription of a session.
type Subscription struct {
	// Filter is a topic filter, or $share/<group>/<filter>.
	Filter string
	// QoS is the subscription's maximum QoS: 0, 1 or 2.
	QoS byte
	// NoLocal: messages the client publishes itself are not sent back to
	// it (not allowed on a shared subscription).
	NoLocal bool
	// RetainAsPublished: messages keep the retain flag they were
	// published with.
	RetainAsPublished bool
	// RetainHandling is the MQTT 5 retain handling option (0, 1 or 2). It
	// is kept and reported; adding a subscription sends no retained
	// message whatever its value.
	RetainHandling byte
	// Identifier is the MQTT 5 subscription identifier sent with matching
	// messages (1 to 268,435,455), 0 for none.
	Identifier uint32
}

// Bits of the options byte (ABI.md, subscription_add).
const (
	subNoLocal           = 1 << 0
	subRetainAsPublished = 1 << 1
	subRetainHandling    = 2 // shift
)

// options encodes s's options byte.
func (s Subscription) options() uint32 {
	o := uint32(s.RetainHandling) << subRetainHandling
	if s.NoLocal {
		o |= subNoLocal
	}
	if s.RetainAsPublished {
		o |= subRetainAsPublished
	}
	return o
}

// Subscriptions returns the subscriptions of the session of clientID,
// sorted by filter. ErrNotFound: no such session.
func Subscriptions(clientID string) ([]Subscription, error) {
	res, err := withResult(func(out []byte) int32 { return svcSubscriptionList(clientID, out) })
	if err != nil {
		return nil, err
	}
	r := resultReader(res)
	n := r.count(10)
	out := make([]Subscription, 0, n)
	for i := 0; i < n; i++ {
		s := Subscription{Filter: r.str(), QoS: r.u8()}
		o := r.u8()
		s.NoLocal, s.RetainAsPublished = o&subNoLocal != 0, o&subRetainAsPublished != 0
		s.RetainHandling = o >> subRetainHandling & 3
		s.Identifier = r.u32()
		out = append(out, s)
	}
	if r.err != nil {
		return nil, ErrInternal
	}
	return out, nil
}

// AddSubscription adds s to the session of clientID, or replaces its
// subscription with the same filter, and returns once it is stored.
// Matching messages reach the client from then on. ErrNotFound: no such
// session; ErrInvalidArgument: a filter a client could not subscribe to,
// QoS or RetainHandling above 2, an identifier out of range, NoLocal on a
// shared subscription; ErrTooLarge: the session holds the broker's
// client_limits.max_subscriptions already and s.Filter is not one of them.
func AddSubscription(clientID string, s Subscription) error {
	return statusErr(svcSubscriptionAdd(clientID, s.Filter, uint32(s.QoS), s.options(), s.Identifier))
}

// RemoveSubscription removes the subscription of clientID to filter
// (spelled exactly as subscribed); one the session does not hold is not an
// error. ErrNotFound: no such session.
func RemoveSubscription(clientID, filter string) error {
	return statusErr(svcSubscriptionRemove(clientID, filter))
}
