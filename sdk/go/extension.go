package propolis

// Extension is what an extension implements: a set of optional handlers.
// Pass it to Register from an init function. The host only calls the
// handlers that are set (the SDK declares them at start), so an extension
// without AuthorizePublish costs nothing per message.
//
// Handlers run one at a time per instance, but the host runs several
// instances of the module and sends any client's callbacks to any of them:
// keep per-client state in the broker (settings, permissions), not in
// package variables.
//
// A handler that panics is not recovered: the panic ends the instance, the
// host sees a trap and fails closed (authentication and authorization
// deny, an event is dropped), then replaces the instance. Return Deny
// instead of panicking for expected failures.
type Extension struct {
	// Start, if set, is called once per instance before any other handler
	// (the broker runs several instances, and replaces discarded ones):
	// StartInfo.Instance is 0 for the first, so do what must happen once
	// per load (a start-up log line) only there. Returning an error refuses
	// to start; err.Error() is the reason the broker logs and shows.
	Start func(info StartInfo) error
	// Stop, if set, is called once per instance before it is closed.
	Stop func()
	// Authenticate, if set, decides each CONNECT reaching this extension in
	// the chain. An extension with Authenticate is a security extension.
	Authenticate func(c *Connect) AuthResult
	// AuthorizePublish, if set, decides each PUBLISH (and each will at
	// CONNECT) reaching this extension, restricted to PublishFilters if any.
	AuthorizePublish func(p *Publish) Verdict
	// AuthorizeSubscribe, if set, decides each topic filter of a SUBSCRIBE
	// reaching this extension.
	AuthorizeSubscribe func(s *Subscribe) Verdict
	// OnEvent, if set, receives lifecycle events after the fact.
	OnEvent func(e *Event)
	// Tick, if set, is called every manifest tick interval (the manifest
	// must set tick, e.g. "tick: 10s", or the broker refuses to load the
	// extension), on one instance at a time and never overlapping itself:
	// a tick still running when the next is due makes the broker skip
	// that one. For housekeeping; it may call the host services. Read
	// time.Now for the time.
	Tick func()
	// PublishFilters, if not empty, restricts AuthorizePublish to topics
	// matching one of these MQTT topic filters ("+" and "#" wildcards);
	// other publishes cost no Wasm call. An invalid filter refuses the
	// start. Ignored without AuthorizePublish.
	PublishFilters []string
	// InterceptConnect, if set, may change each CONNECT before the broker
	// validates and authenticates it: the client id, user name, password,
	// session expiry, keepalive, receive maximum, user properties and the
	// will (ABI 1.2; see ConnectPacket).
	InterceptConnect func(c *ConnectPacket)
	// InterceptConnack, if set, may add user properties and a reason
	// string to each CONNACK (see ConnackPacket).
	InterceptConnack func(a *ConnackPacket)
	// InterceptPublishInbound, if set, may change or prevent each PUBLISH
	// a client sends, after its authorization, restricted to
	// InterceptInboundFilters if any (see PublishPacket).
	InterceptPublishInbound func(p *PublishPacket)
	// InterceptPublishOutbound, if set, may change or prevent each
	// delivery of a PUBLISH to a subscriber, for that subscriber only,
	// restricted to InterceptOutboundFilters and InterceptOutboundClients
	// if any. It runs per delivery: give it filters or client patterns
	// unless it really wants every delivery.
	InterceptPublishOutbound func(p *PublishPacket)
	// InterceptSubscribe, if set, may change or remove each topic filter of
	// a SUBSCRIBE before its authorization (see SubscriptionPacket).
	InterceptSubscribe func(s *SubscriptionPacket)
	// InterceptDisconnect, if set, may add user properties and a reason
	// string to each DISCONNECT a client sends or the broker sends (see
	// DisconnectPacket).
	InterceptDisconnect func(d *DisconnectPacket)
	// InterceptInboundFilters and InterceptOutboundFilters, if not empty,
	// restrict InterceptPublishInbound and InterceptPublishOutbound to
	// topics matching one of these MQTT topic filters: other messages
	// cost no Wasm call. The topic matched is the message's as it reaches
	// this extension (after the changes of extensions before it). An
	// invalid filter refuses the start. For filters from the
	// configuration, call AddInterceptFilter from Start.
	InterceptInboundFilters  []string
	InterceptOutboundFilters []string
	// InterceptOutboundClients, if not empty, restricts
	// InterceptPublishOutbound to deliveries to subscribers whose client
	// id matches one of these patterns: an exact client id, or a prefix
	// followed by a final "*" ("sensor-*"; "*" alone matches every
	// client). Other deliveries cost no Wasm call. With
	// InterceptOutboundFilters too, a delivery must match both. An
	// invalid pattern (empty, a "*" before the end) refuses the start.
	// For patterns from the configuration, call AddInterceptClient from
	// Start.
	InterceptOutboundClients []string
	// MaxRecordSize bounds the buffer the SDK keeps for the records the
	// broker passes, in bytes; 0 means DefaultMaxRecordSize, and a value
	// below 4096 (the least the broker asks for) counts as 4096. The buffer
	// grows on request up to it. A larger record (in practice a PUBLISH
	// with a larger payload, or a will) is refused: the broker does not
	// call the handler and fails closed (the PUBLISH or CONNECT is denied
	// with 0x80, an event dropped), without counting it as a crash. Raise
	// it with the manifest's limits.memory: the buffer lives in the
	// instance's memory, and a Go guest that runs out of memory traps.
	MaxRecordSize int
}

// DefaultMaxRecordSize is the largest record the SDK's buffer takes when
// Extension.MaxRecordSize is 0: 4 MiB, four times the broker's default
// mqtt.max_packet_size, and a sixteenth of the default 64 MiB memory
// limit.
const DefaultMaxRecordSize = 4 << 20

// maxRecordSize returns e's MaxRecordSize, or its default, and at least
// minBuffer.
func (e *Extension) maxRecordSize() int {
	if e.MaxRecordSize > 0 {
		return max(e.MaxRecordSize, minBuffer)
	}
	return DefaultMaxRecordSize
}

// The registered extension and whether Register was called.
var (
	ext        Extension
	registered bool
)

// Register registers the extension's handlers. Call it exactly once, from
// an init function of the main package: with -buildmode=c-shared the main
// function never runs. Register panics if called twice.
func Register(e Extension) {
	if registered {
		panic("propolis: Register called twice")
	}
	e.PublishFilters = append([]string(nil), e.PublishFilters...)
	e.InterceptInboundFilters = append([]string(nil), e.InterceptInboundFilters...)
	e.InterceptOutboundFilters = append([]string(nil), e.InterceptOutboundFilters...)
	e.InterceptOutboundClients = append([]string(nil), e.InterceptOutboundClients...)
	ext, registered = e, true
}

// callbackMask returns the declare_callbacks mask of e's handlers.
func (e *Extension) callbackMask() uint32 {
	var m uint32
	if e.Authenticate != nil {
		m |= callbackAuthenticate
	}
	if e.AuthorizePublish != nil {
		m |= callbackAuthorizePublish
	}
	if e.AuthorizeSubscribe != nil {
		m |= callbackAuthorizeSubscribe
	}
	if e.OnEvent != nil {
		m |= callbackOnEvent
	}
	if e.Tick != nil {
		m |= callbackTick
	}
	for _, h := range [...]struct {
		set bool
		bit uint32
	}{
		{e.InterceptConnect != nil, callbackInterceptConnect},
		{e.InterceptConnack != nil, callbackInterceptConnack},
		{e.InterceptPublishInbound != nil, callbackInterceptPublishInbound},
		{e.InterceptPublishOutbound != nil, callbackInterceptPublishOutbound},
		{e.InterceptSubscribe != nil, callbackInterceptSubscribe},
		{e.InterceptDisconnect != nil, callbackInterceptDisconnect},
	} {
		if h.set {
			m |= h.bit
		}
	}
	return m
}
