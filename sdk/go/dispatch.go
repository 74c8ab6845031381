package propolis

// The callback logic behind the exports of ABI.md section 3, independent of
// Wasm so that it is unit-tested natively. The wasip1 glue hands each
// function the record the host wrote and returns its answer.

// Scratch reused from one callback to the next: an instance sees one
// callback at a time, and the per-message path allocates nothing for it.
var (
	pub     Publish
	sub     Subscribe
	permBuf []byte

	conn      Connect
	connSANs  []string
	connProps []UserProperty
	connWill  Will
)

// minBuffer is the smallest record buffer allocated, so that small records
// do not cause a series of reallocations.
const minBuffer = 4096

// bufferSize decides propolis_buffer's answer to a request for size bytes
// with a buffer of cur bytes: the buffer's new length n (cur when it is
// large enough; otherwise size rounded up to a power of two of at least
// minBuffer, but never beyond limit), or ok false when size is negative or
// above limit (the buffer is then left as it is).
func bufferSize(cur int, size int64, limit int) (n int, ok bool) {
	if size < 0 || size > int64(limit) {
		return cur, false
	}
	if int(size) <= cur && cur > 0 {
		return cur, true
	}
	n = max(minBuffer, cur)
	for n < int(size) {
		n *= 2
	}
	return min(n, max(limit, minBuffer)), true
}

// denyUnspecified is the decision returned when the SDK itself cannot
// answer (a malformed record, a host function refusing a setting): deny
// with 0x80, as the host would after a trap.
var denyUnspecified = Deny(CodeUnspecified, "").Encode()

// start runs propolis_start: the author's Start, then declare_callbacks,
// add_publish_filter, add_intercept_filter and add_intercept_client. It
// returns 0 to start, 1 to refuse (with a reason).
func start(h hostAPI, rec []byte) int32 {
	info, err := decodeStart(rec)
	if err != nil {
		return refuseStart(h, "propolis: malformed START record: "+err.Error())
	}
	if ext.Start != nil {
		if err := ext.Start(info); err != nil {
			return refuseStart(h, err.Error())
		}
	}
	if st := h.declareCallbacks(ext.callbackMask()); st < 0 {
		return refuseStart(h, "propolis: declare_callbacks: "+statusName(st))
	}
	if ext.AuthorizePublish != nil {
		for _, f := range ext.PublishFilters {
			if st := h.addPublishFilter(f); st < 0 {
				return refuseStart(h, "propolis: add_publish_filter "+quote(f)+": "+statusName(st))
			}
		}
	}
	for _, t := range [...]struct {
		set     bool
		mask    uint32
		filters []string
	}{
		{ext.InterceptPublishInbound != nil, callbackInterceptPublishInbound, ext.InterceptInboundFilters},
		{ext.InterceptPublishOutbound != nil, callbackInterceptPublishOutbound, ext.InterceptOutboundFilters},
	} {
		if !t.set {
			continue
		}
		for _, f := range t.filters {
			if st := h.addInterceptFilter(t.mask, f); st < 0 {
				return refuseStart(h, "propolis: add_intercept_filter "+quote(f)+": "+statusName(st))
			}
		}
	}
	if ext.InterceptPublishOutbound != nil {
		for _, p := range ext.InterceptOutboundClients {
			if st := h.addInterceptClient(p); st < 0 {
				return refuseStart(h, "propolis: add_intercept_client "+quote(p)+": "+statusName(st))
			}
		}
	}
	return 0
}

// refuseStart sets the reason for refusing to start and returns 1.
func refuseStart(h hostAPI, reason string) int32 {
	h.setReason(truncateReason(reason))
	return 1
}

// stop runs propolis_stop.
func stop() {
	if ext.Stop != nil {
		ext.Stop()
	}
}

// authenticate runs propolis_authenticate and returns the encoded decision.
func authenticate(h hostAPI, rec []byte) uint32 {
	if ext.Authenticate == nil {
		return 0
	}
	c := &conn
	if err := decodeConnect(rec, c); err != nil {
		h.log(LevelError, "propolis: malformed CONNECT record: "+err.Error())
		return denyUnspecified
	}
	// The views in conn stay valid until this function returns: the
	// settings and permissions below may hold them (a filter equal to the
	// client id), and the host reads them during the calls.
	defer clearConnect()
	res := ext.Authenticate(c)
	v := res.Verdict.forAuthenticate()
	switch {
	case v.Decision == DecisionAllow:
		if msg := applyAuthResult(h, &res); msg != "" {
			h.log(LevelError, "propolis: refusing client "+quote(c.ClientID)+": "+msg)
			return denyUnspecified
		}
		if len(res.Permissions) == 0 && !res.Unrestricted && !warnedUnrestricted {
			warnedUnrestricted = true
			h.log(LevelWarn, unrestrictedWarning+quote(c.ClientID))
		}
	case v.refuses():
		sendReason(h, v.Reason)
	}
	return v.Encode()
}

// unrestrictedWarning is logged, once per instance, for the first client
// an Authenticate allows with no Permissions and without Unrestricted.
const unrestrictedWarning = "propolis: Authenticate allowed a client with no Permissions, so it may publish and subscribe to every topic " +
	"that no AuthorizePublish/AuthorizeSubscribe handler refuses; give AuthResult.Permissions, or set AuthResult.Unrestricted " +
	"if that is meant (this warning is logged once per instance): client "

// warnedUnrestricted is set once unrestrictedWarning has been logged.
var warnedUnrestricted bool

// clearConnect drops the views of the last CONNECT record: its memory is
// the host's again.
func clearConnect() {
	conn, connWill = Connect{}, Will{}
	clear(connSANs)
	clear(connProps)
}

// applyAuthResult sends the settings and permissions of an allowing
// AuthResult to the host. On failure it returns what went wrong; the
// client is then denied rather than let in with less than the extension
// asked for (e.g. missing a deny permission).
func applyAuthResult(h hostAPI, r *AuthResult) string {
	for i := range r.Permissions {
		if err := r.Permissions[i].Validate(); err != nil {
			return err.Error()
		}
	}
	if r.SessionExpiry != nil {
		if st := h.setSessionExpiry(*r.SessionExpiry); st < 0 {
			return "set_session_expiry: " + statusName(st)
		}
	}
	if r.ReceiveMaximum != 0 {
		if st := h.setReceiveMaximum(r.ReceiveMaximum); st < 0 {
			return "set_receive_maximum: " + statusName(st)
		}
	}
	if r.Keepalive != nil {
		if st := h.setKeepalive(*r.Keepalive); st < 0 {
			return "set_keepalive: " + statusName(st)
		}
	}
	if r.MaxQueued != 0 {
		if st := h.setMaxQueued(r.MaxQueued); st < 0 {
			return "set_max_queued: " + statusName(st)
		}
	}
	if r.NoThrottling {
		if st := h.setOverloadThrottling(false); st < 0 {
			return "set_overload_throttling: " + statusName(st)
		}
	}
	for _, p := range r.ConnackUserProperties {
		if st := h.addConnackUserProperty(p.Key, p.Value); st < 0 {
			return "add_connack_user_property " + quote(p.Key) + ": " + statusName(st)
		}
	}
	for _, p := range r.Permissions {
		permBuf = appendPermission(permBuf[:0], p)
		if st := h.addPermission(permBuf); st < 0 {
			return "add_permission " + quote(p.Filter) + ": " + statusName(st)
		}
	}
	return ""
}

// authorizePublish runs propolis_authorize_publish and returns the encoded
// decision.
func authorizePublish(h hostAPI, rec []byte) uint32 {
	if ext.AuthorizePublish == nil {
		return 0
	}
	if !decodePublishFast(rec, &pub) {
		if err := decodePublish(rec, &pub); err != nil {
			h.log(LevelError, "propolis: malformed PUBLISH record: "+err.Error())
			return denyUnspecified
		}
	}
	// pub is not cleared after the handler: every field is overwritten by
	// the next decode, its views point into the SDK's own buffer (never
	// freed memory), and the clear, a typedmemclr call in Go's Wasm, cost
	// 40-150 ns of a ~400 ns call (bench/README.md, "Where the gate's
	// time goes").
	v := ext.AuthorizePublish(&pub)
	if v.refuses() {
		sendReason(h, v.Reason)
	}
	return v.Encode()
}

// authorizeSubscribe runs propolis_authorize_subscribe and returns the
// encoded decision.
func authorizeSubscribe(h hostAPI, rec []byte) uint32 {
	if ext.AuthorizeSubscribe == nil {
		return 0
	}
	if err := decodeSubscribe(rec, &sub); err != nil {
		h.log(LevelError, "propolis: malformed SUBSCRIBE record: "+err.Error())
		return denyUnspecified
	}
	v := ext.AuthorizeSubscribe(&sub)
	if v.refuses() {
		sendReason(h, v.Reason)
	}
	return v.Encode()
}

// onEvent runs propolis_on_event.
func onEvent(h hostAPI, rec []byte) {
	if ext.OnEvent == nil {
		return
	}
	e, err := decodeEvent(rec)
	if err != nil {
		h.log(LevelError, "propolis: malformed EVENT record, event dropped: "+err.Error())
		return
	}
	ext.OnEvent(e)
}

// tick runs propolis_tick: the author's Tick.
func tick() {
	if ext.Tick != nil {
		ext.Tick()
	}
}

// sendReason passes a deny or disconnect reason string to the host. The
// reason is informative only, so a failure is ignored.
func sendReason(h hostAPI, reason string) {
	if reason != "" {
		h.setReason(truncateReason(reason))
	}
}

// quote returns s in double quotes (for log messages, without fmt).
func quote(s string) string { return `"` + s + `"` }

// Scratch of the interceptors, reused from one call to the next like pub.
var (
	connPkt    ConnectPacket
	connackPkt ConnackPacket
	pubPkt     PublishPacket
	subPkt     SubscriptionPacket
	discPkt    DisconnectPacket
	msgProps   []UserProperty
	replyProps []UserProperty
)

// The interceptors never fail closed: a malformed record is logged and
// answered NEXT, which leaves the packet as it was.

// interceptConnect runs propolis_intercept_connect.
func interceptConnect(h hostAPI, rec []byte) uint32 {
	if ext.InterceptConnect == nil {
		return 0
	}
	c := &connPkt
	if err := decodeConnect(rec, &c.Connect); err != nil {
		h.log(LevelError, "propolis: malformed CONNECT record: "+err.Error())
		return 0
	}
	defer func() { connPkt, connWill = ConnectPacket{}, Will{} }()
	c.h = h
	ext.InterceptConnect(c)
	return uint32(DecisionNext)
}

// interceptConnack runs propolis_intercept_connack.
func interceptConnack(h hostAPI, rec []byte) uint32 {
	if ext.InterceptConnack == nil {
		return 0
	}
	a := &connackPkt
	if err := decodeConnack(rec, a); err != nil {
		h.log(LevelError, "propolis: malformed CONNACK record: "+err.Error())
		return 0
	}
	a.h = h
	ext.InterceptConnack(a)
	return uint32(DecisionNext)
}

// interceptPublishInbound runs propolis_intercept_publish_inbound.
func interceptPublishInbound(h hostAPI, rec []byte) uint32 {
	return interceptPublish(h, rec, ext.InterceptPublishInbound)
}

// interceptPublishOutbound runs propolis_intercept_publish_outbound.
func interceptPublishOutbound(h hostAPI, rec []byte) uint32 {
	return interceptPublish(h, rec, ext.InterceptPublishOutbound)
}

// interceptPublish decodes a MESSAGE record into pubPkt's views, runs fn
// and returns NEXT, or DENY when fn prevented the message. pubPkt is not
// cleared afterwards, as pub is not (authorizePublish).
func interceptPublish(h hostAPI, rec []byte, fn func(*PublishPacket)) uint32 {
	if fn == nil {
		return 0
	}
	p := &pubPkt
	if !decodeMessageFast(rec, p) {
		if err := decodeMessageRecord(rec, p); err != nil {
			h.log(LevelError, "propolis: malformed MESSAGE record: "+err.Error())
			return 0
		}
	}
	// Only the flag: assigning a whole prevention{} (it holds a string)
	// to the package variable costs a typedmemclr call in Go's Wasm.
	p.prevention.set, p.h = false, h
	fn(p)
	return p.answer(h)
}

// interceptSubscribe runs propolis_intercept_subscribe.
func interceptSubscribe(h hostAPI, rec []byte) uint32 {
	if ext.InterceptSubscribe == nil {
		return 0
	}
	s := &subPkt
	if err := decodeSubscription(rec, s); err != nil {
		h.log(LevelError, "propolis: malformed SUBSCRIPTION record: "+err.Error())
		return 0
	}
	s.prevention.set, s.h = false, h
	ext.InterceptSubscribe(s)
	return s.answer(h)
}

// interceptDisconnect runs propolis_intercept_disconnect.
func interceptDisconnect(h hostAPI, rec []byte) uint32 {
	if ext.InterceptDisconnect == nil {
		return 0
	}
	d := &discPkt
	if err := decodeDisconnect(rec, d); err != nil {
		h.log(LevelError, "propolis: malformed DISCONNECT record: "+err.Error())
		return 0
	}
	d.h = h
	ext.InterceptDisconnect(d)
	return uint32(DecisionNext)
}
