package host

import (
	"context"
	"errors"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// client authorizes one connected client: first the extensions that asked
// for authorize callbacks (in the current chain, so a reload applies to
// connected clients), then the default permissions its authenticator set,
// evaluated here without a Wasm call.
type client struct {
	host         *Host
	id, username string
	perms        []permission
	// conn is the client's connection (connection attributes).
	conn broker.Conn
	// kept are the authorize answers extensions marked with cache_result
	// (decisions.go).
	kept decisionCache
}

var _ broker.ClientAuthorizer = (*client)(nil)

var (
	allow      = broker.Verdict{Decision: broker.Allow}
	permDenied = broker.Verdict{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized, ReasonString: "not permitted"}
)

// AuthorizePublish implements broker.ClientAuthorizer. This is the
// per-PUBLISH hot path: the record is encoded straight into guest memory
// and nothing is allocated. An answer an extension marked with
// cache_result is taken from the connection's kept answers
// (decisions.go) without a call.
func (c *client) AuthorizePublish(p *broker.Publish) broker.Verdict {
	for _, e := range c.host.chain.Load().callers(abi.CallbackAuthorizePublish) {
		if !e.wantsTopic(p.Topic) {
			continue
		}
		flags := publishFlags(p)
		k := decisionKey{name: p.Topic, cb: abi.CallbackAuthorizePublish, flags: keyFlags(p.QoS, flags)}
		if c.kept.used.Load() { // before the record is built: a hit costs ~20 ns
			if d, ok := c.kept.get(e, &k, c.host.coarseNow()); ok {
				if d.decided {
					return d.v
				}
				continue
			}
		}
		// The call is made here, not in a helper shared with
		// AuthorizeSubscribe: a helper taking the answer cost 15-25 ns
		// more per PUBLISH (bench/README.md, "Kept verdicts").
		rec := abi.PublishRecord{QoS: p.QoS, ClientID: c.id, Username: c.username, Topic: p.Topic, Payload: p.Payload, Flags: flags}
		gen := e.authCache.generation() // before the call: a flush while it runs drops its answer
		a, err := c.host.invokeFor(context.Background(), e, abi.CallbackAuthorizePublish, &rec, c.conn)
		if err != nil {
			return failVerdict(a.ext, err)
		}
		v, decided := verdictOf(&a)
		if a.out.cacheFor > 0 {
			c.keep(e, &a, k, v, decided, gen)
		}
		if decided {
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
	for _, e := range c.host.chain.Load().callers(abi.CallbackAuthorizeSubscribe) {
		rec := abi.SubscribeRecord{QoS: s.QoS, ClientID: c.id, Username: c.username, Filter: s.Filter}
		if s.Shared {
			rec.Flags |= abi.SubscribeShared
		}
		k := decisionKey{name: s.Filter, cb: abi.CallbackAuthorizeSubscribe, flags: keyFlags(s.QoS, rec.Flags)}
		if d, ok := c.kept.get(e, &k, c.host.coarseNow()); ok {
			if d.decided {
				return d.v
			}
			continue
		}
		gen := e.authCache.generation()
		a, err := c.host.invokeFor(context.Background(), e, abi.CallbackAuthorizeSubscribe, &rec, c.conn)
		if err != nil {
			return failVerdict(a.ext, err)
		}
		v, decided := verdictOf(&a)
		if a.out.cacheFor > 0 {
			c.keep(e, &a, k, v, decided, gen)
		}
		if decided {
			return v
		}
	}
	if subscribeAllowed(c.perms, s.Filter, s.QoS) {
		return allow
	}
	return permDenied
}

// publishFlags are the PUBLISH record's flags for p.
func publishFlags(p *broker.Publish) uint8 {
	var f uint8
	if p.Retain {
		f |= abi.PublishRetain
	}
	if p.Will {
		f |= abi.PublishWill
	}
	return f
}

// wantsTopic reports whether authorize_publish is asked for topic.
func (e *extension) wantsTopic(name string) bool {
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

// verdictOf turns an authorize callback's answer into a verdict; decided
// is false for NEXT.
func verdictOf(a *answer) (broker.Verdict, bool) {
	code := a.code
	if code == 0 {
		code = broker.CodeNotAuthorized
	}
	switch a.decision {
	case abi.DecisionAllow:
		return allow, true
	case abi.DecisionDeny:
		return broker.Verdict{Decision: broker.Deny, ReasonCode: code, ReasonString: a.out.reason}, true
	case abi.DecisionDisconnect:
		return broker.Verdict{Decision: broker.Disconnect, ReasonCode: code, ReasonString: a.out.reason}, true
	}
	return broker.Verdict{}, false
}

// failVerdict is the fail-closed answer when an extension cannot decide.
func failVerdict(e *extension, err error) broker.Verdict {
	return broker.Verdict{Decision: broker.Deny, ReasonCode: failClosedCode, ReasonString: failReason(e, err)}
}

// failReason is the reason string of a decision an extension did not make
// (ABI.md section 7): "extension ID failed", "... unavailable" when it
// could not be reached, "... cannot take a record this large" when its
// buffer refused the record.
func failReason(e *extension, err error) string {
	switch {
	case errors.Is(err, ErrRecordTooLarge):
		return "extension " + e.ID() + " cannot take a record this large"
	case errors.Is(err, ErrBusy), errors.Is(err, ErrStopped), errors.Is(err, ErrCanceled):
		return "extension " + e.ID() + " unavailable"
	}
	return "extension " + e.ID() + " failed"
}
