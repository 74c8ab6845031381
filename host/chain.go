package host

import (
	"context"
	"errors"
	"path/filepath"
	"sort"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// chain is an immutable snapshot of the running extensions in priority
// order (higher first, ties by id), split by the callbacks they take. It is
// swapped atomically, so a client's calls always see a whole chain.
type chain struct {
	all, auth, pub, sub, events []*Extension
}

// rebuildChain publishes a new chain from the running extensions.
func (h *Host) rebuildChain() {
	// Built and stored under the lock: two rebuilds racing (the scanner and
	// a crash-loop stop) must not store an older snapshot last.
	h.mu.Lock()
	defer h.mu.Unlock()
	all := make([]*Extension, 0, len(h.exts))
	for _, e := range h.exts {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].manifest.Priority != all[j].manifest.Priority {
			return all[i].manifest.Priority > all[j].manifest.Priority
		}
		return all[i].ID() < all[j].ID()
	})
	c := &chain{all: all}
	for _, e := range all {
		if e.has(abi.CallbackAuthenticate) {
			c.auth = append(c.auth, e)
		}
		if e.has(abi.CallbackAuthorizePublish) {
			c.pub = append(c.pub, e)
		}
		if e.has(abi.CallbackAuthorizeSubscribe) {
			c.sub = append(c.sub, e)
		}
		if e.has(abi.CallbackOnEvent) {
			c.events = append(c.events, e)
		}
	}
	h.chain.Store(c)
}

// SecurityExtensions names the running extensions that authenticate.
func (h *Host) SecurityExtensions() []string {
	c := h.chain.Load()
	out := make([]string, len(c.auth))
	for i, e := range c.auth {
		out[i] = e.ID()
	}
	return out
}

// failClosedCode is the reason code of a decision an extension failed to
// make (trap, deadline, invalid answer).
const failClosedCode = broker.CodeUnspecifiedError

// Authenticate asks each authenticating extension in priority order; the
// first ALLOW or DENY decides. Every failure denies.
func (h *Host) Authenticate(_ context.Context, c *broker.Connect) broker.AuthResult {
	ch := h.chain.Load()
	if len(ch.auth) == 0 {
		return broker.AuthResult{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized, ReasonString: "no security extension is loaded"}
	}
	rec := connectRecord(c)
	for _, e := range ch.auth {
		e, in, err := h.acquire(e)
		if err != nil {
			e.log.Warn("authenticate: no instance", "client", c.ClientID, "error", err)
			return broker.AuthResult{Decision: broker.Deny, ReasonCode: failClosedCode, ReasonString: "extension " + e.ID() + " unavailable"}
		}
		res, err := in.callRecord(cbAuthenticate, rec.Encode(in.scratch()))
		var d abi.Decision
		var code byte
		if err == nil {
			d, code, err = decision(cbAuthenticate, res)
		}
		if err != nil {
			e.release(in, cbAuthenticate, err)
			return broker.AuthResult{Decision: broker.Deny, ReasonCode: failClosedCode, ReasonString: "extension " + e.ID() + " failed"}
		}
		out := in.out
		e.release(in, cbAuthenticate, nil)
		switch d {
		case abi.DecisionNext:
			continue
		case abi.DecisionDeny:
			if code == 0 {
				code = broker.CodeNotAuthorized
			}
			return broker.AuthResult{Decision: broker.Deny, ReasonCode: code, ReasonString: out.reason}
		case abi.DecisionAllow:
			return broker.AuthResult{
				Decision: broker.Allow,
				Settings: broker.ClientSettings{ReceiveMaximum: out.receiveMax, SessionExpiry: out.sessionExpiry,
					Keepalive: out.keepalive, MaxQueued: out.maxQueued},
				ConnackUserProperties: out.connack,
				Client:                &client{host: h, id: c.ClientID, username: c.Username, perms: compilePermissions(out.perms, c.ClientID, c.Username)},
			}
		}
	}
	return broker.AuthResult{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized, ReasonString: "no extension accepted the client"}
}

// connectRecord is the ABI view of a CONNECT.
func connectRecord(c *broker.Connect) *abi.ConnectRecord {
	r := &abi.ConnectRecord{ProtocolVersion: c.ProtocolVersion, Keepalive: c.Keepalive, SessionExpiry: c.SessionExpiry,
		ClientID: c.ClientID, Username: c.Username, Password: c.Password, RemoteAddr: c.RemoteAddr, Listener: c.Listener}
	if c.CleanStart {
		r.Flags |= abi.ConnectCleanStart
	}
	if c.HasUsername {
		r.Flags |= abi.ConnectHasUsername
	}
	if c.Password != nil {
		r.Flags |= abi.ConnectHasPassword
	}
	if w := c.Will; w != nil {
		r.Flags |= abi.ConnectHasWill
		if w.Retain {
			r.Flags |= abi.ConnectWillRetain
		}
		r.WillQoS, r.WillTopic, r.WillPayload = w.QoS, w.Topic, w.Payload
	}
	if t := c.TLS; t != nil {
		r.Flags |= abi.ConnectTLS
		r.TLSSubject, r.TLSSANs = t.PeerSubject, t.PeerSANs
	}
	for _, p := range c.UserProperties {
		r.UserProperties = append(r.UserProperties, abi.Pair{Key: p.Key, Value: p.Value})
	}
	return r
}

// client authorizes one connected client: first the extensions that asked
// for authorize callbacks (in the current chain, so a reload applies to
// connected clients), then the default permissions its authenticator set,
// evaluated here without a Wasm call.
type client struct {
	host         *Host
	id, username string
	perms        []permission
}

var _ broker.ClientAuthorizer = (*client)(nil)

var (
	allow      = broker.Verdict{Decision: broker.Allow}
	permDenied = broker.Verdict{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized, ReasonString: "not permitted"}
)

// AuthorizePublish implements broker.ClientAuthorizer.
func (c *client) AuthorizePublish(p *broker.Publish) broker.Verdict {
	for _, e := range c.host.chain.Load().pub {
		if !e.wantsTopic(p.Topic) {
			continue
		}
		rec := abi.PublishRecord{QoS: p.QoS, ClientID: c.id, Username: c.username, Topic: p.Topic, Payload: p.Payload}
		if p.Retain {
			rec.Flags |= abi.PublishRetain
		}
		if p.Will {
			rec.Flags |= abi.PublishWill
		}
		if v, decided := c.host.authorizePublish(e, &rec); decided {
			return v
		}
	}
	if publishAllowed(c.perms, p.Topic, p.QoS, p.Retain) {
		return allow
	}
	return permDenied
}

// AuthorizeSubscribe implements broker.ClientAuthorizer.
func (c *client) AuthorizeSubscribe(s *broker.Subscribe) broker.Verdict {
	for _, e := range c.host.chain.Load().sub {
		rec := abi.SubscribeRecord{QoS: s.QoS, ClientID: c.id, Username: c.username, Filter: s.Filter}
		if s.Shared {
			rec.Flags |= abi.SubscribeShared
		}
		e, in, err := c.host.acquire(e)
		if err != nil {
			return failVerdict(e)
		}
		res, err := in.callRecord(cbAuthorizeSubscribe, rec.Encode(in.scratch()))
		if v, decided := e.finishAuthorize(in, cbAuthorizeSubscribe, res, err); decided {
			return v
		}
	}
	if subscribeAllowed(c.perms, s.Filter, s.QoS) {
		return allow
	}
	return permDenied
}

// wantsTopic reports whether authorize_publish is asked for topic.
func (e *Extension) wantsTopic(name string) bool {
	if len(e.filters) == 0 {
		return true
	}
	for _, f := range e.filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}

// authorizePublish calls the extension's authorize_publish. This is the
// per-PUBLISH hot path: the record is encoded straight into guest memory
// and nothing is allocated.
func (h *Host) authorizePublish(e *Extension, rec *abi.PublishRecord) (broker.Verdict, bool) {
	e, in, err := h.acquire(e)
	if err != nil {
		return failVerdict(e), true
	}
	res, err := in.callRecord(cbAuthorizePublish, rec.Encode(in.scratch()))
	return e.finishAuthorize(in, cbAuthorizePublish, res, err)
}

// finishAuthorize turns an authorize callback's result into a verdict and
// gives the instance back (or discards it). decided is false for NEXT.
func (e *Extension) finishAuthorize(in *instance, cb callback, res uint64, err error) (broker.Verdict, bool) {
	var d abi.Decision
	var code byte
	if err == nil {
		d, code, err = decision(cb, res)
	}
	if err != nil {
		e.release(in, cb, err)
		return failVerdict(e), true
	}
	reason := in.out.reason
	e.release(in, cb, nil)
	if code == 0 {
		code = broker.CodeNotAuthorized
	}
	switch d {
	case abi.DecisionAllow:
		return allow, true
	case abi.DecisionDeny:
		return broker.Verdict{Decision: broker.Deny, ReasonCode: code, ReasonString: reason}, true
	case abi.DecisionDisconnect:
		return broker.Verdict{Decision: broker.Disconnect, ReasonCode: code, ReasonString: reason}, true
	}
	return broker.Verdict{}, false
}

// acquire takes an instance of e. A client may hold a chain from before a
// reload: when e was replaced meanwhile, the call goes to its successor,
// so a reload refuses nothing. A failed acquire counts as a failure (an
// extension whose instances all hang empties its pool).
func (h *Host) acquire(e *Extension) (*Extension, *instance, error) {
	in, err := e.acquire()
	if errors.Is(err, ErrStopped) {
		h.mu.Lock()
		next := h.exts[filepath.Base(e.dir)]
		h.mu.Unlock()
		if next != nil && next != e {
			e = next
			in, err = e.acquire()
		}
	}
	if err != nil && !errors.Is(err, ErrStopped) {
		e.errors.Add(1)
		e.log.Warn("no instance for a call", "error", err)
		e.noteFailure(err)
	}
	return e, in, err
}

// failVerdict is the fail-closed answer when an extension cannot decide.
func failVerdict(e *Extension) broker.Verdict {
	return broker.Verdict{Decision: broker.Deny, ReasonCode: failClosedCode, ReasonString: "extension " + e.ID() + " failed"}
}

// Fail-closed answers are the rule even after an extension is stopped for
// crash-looping: it stays in the chain, stopped, so every decision that
// would have consulted it is denied until the operator replaces, disables
// or removes it (see Host.fail).

// eventKinds maps broker events to ABI event kinds.
var eventKinds = map[broker.EventKind]uint8{
	broker.EventConnectionStart: abi.EventConnectionStart,
	broker.EventAuthSucceeded:   abi.EventAuthSucceeded,
	broker.EventAuthFailed:      abi.EventAuthFailed,
	broker.EventDisconnect:      abi.EventDisconnect,
	broker.EventSubscribe:       abi.EventSubscribe,
	broker.EventUnsubscribe:     abi.EventUnsubscribe,
}

// OnEvent queues the event for every extension that takes events. It never
// blocks: an extension whose queue is full loses the event (counted and
// logged).
func (h *Host) OnEvent(ev *broker.Event) {
	exts := h.chain.Load().events
	if len(exts) == 0 {
		return
	}
	rec := &abi.EventRecord{Event: eventKinds[ev.Kind], DisconnectKind: uint8(ev.Disconnect), ReasonCode: ev.ReasonCode,
		ProtocolVersion: ev.ProtocolVersion, Time: uint64(ev.Time.UnixNano()), ClientID: ev.ClientID, Username: ev.Username,
		Listener: ev.Listener, RemoteAddr: ev.RemoteAddr, ReasonString: ev.ReasonString}
	for _, f := range ev.Filters {
		rec.Filters = append(rec.Filters, abi.FilterResult{Filter: f.Filter, QoS: f.QoS, Code: f.Code})
	}
	for _, e := range exts {
		e.queueEvent(rec)
	}
}

// eventQueue is how many events wait per extension before new ones drop.
const eventQueue = 4096

func (e *Extension) queueEvent(rec *abi.EventRecord) {
	defer func() { _ = recover() }() // the queue closed under us: the extension stopped
	select {
	case e.events <- rec:
	default:
		if n := e.dropped.Add(1); n == 1 || n%1000 == 0 {
			e.log.Warn("event queue full, events dropped", "dropped", n)
		}
	}
}

// deliverEvents calls on_event for each queued event, one at a time.
func (e *Extension) deliverEvents() {
	for rec := range e.events {
		in, err := e.acquire()
		if err != nil {
			if n := e.dropped.Add(1); n == 1 || n%1000 == 0 {
				e.log.Warn("event dropped: no instance", "dropped", n, "error", err)
			}
			continue
		}
		_, err = in.callRecord(cbOnEvent, rec.Encode(in.scratch()))
		e.release(in, cbOnEvent, err)
	}
}
