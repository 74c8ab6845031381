package host

import (
	"context"
	"slices"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// failClosedCode is the reason code of a decision an extension failed to
// make (trap, deadline, invalid answer).
const failClosedCode = broker.CodeUnspecifiedError

// Authenticate asks each authenticating extension in priority order; the
// first ALLOW or DENY decides. Every failure denies, and so does ctx
// ending before a decision (the broker's deadline for the CONNECT): no
// instance is waited for, and no call runs, past it.
func (h *Host) Authenticate(ctx context.Context, c *broker.Connect) broker.AuthResult {
	auth := h.chain.Load().callers(abi.CallbackAuthenticate)
	if len(auth) == 0 {
		return broker.AuthResult{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized, ReasonString: "no security extension is loaded"}
	}
	var props [8]abi.Pair
	rec := connectRecord(c, props[:0])
	var key *authKey
	for _, e := range auth {
		if !e.authCache.empty() && !e.stopped.Load() {
			if key == nil {
				k := h.authKeys.key(c)
				key = &k
			}
			if ans, ok := e.authCache.get(key); ok {
				if ans.decision == abi.DecisionNext {
					continue
				}
				return ans.result(c.Conn)
			}
		}
		// Taken before the call: a flush while it runs (on_event, another
		// call) drops its answer instead of being undone by it.
		gen := e.authCache.generation()
		a, err := h.invokeFor(ctx, e, abi.CallbackAuthenticate, &rec, c.Conn)
		if err != nil { // counted (and the failure logged) by invoke
			a.ext.log.Debug("client refused: extension did not decide", "client", c.ClientID, "error", err)
			return broker.AuthResult{Decision: broker.Deny, ReasonCode: failClosedCode, ReasonString: failReason(a.ext, err)}
		}
		ans := &cachedAnswer{decision: a.decision, host: h, clientID: c.ClientID, username: c.Username}
		switch a.decision {
		case abi.DecisionDeny:
			code := a.code
			if code == 0 {
				code = broker.CodeNotAuthorized
			}
			ans.res = broker.AuthResult{Decision: broker.Deny, ReasonCode: code, ReasonString: a.out.reason}
		case abi.DecisionAllow:
			out := &a.out
			ans.perms = compilePermissions(out.perms, c.ClientID, c.Username)
			ans.res = broker.AuthResult{
				Decision: broker.Allow,
				Settings: broker.ClientSettings{ReceiveMaximum: out.receiveMax, SessionExpiry: out.sessionExpiry,
					Keepalive: out.keepalive, MaxQueued: out.maxQueued, NoThrottling: out.noThrottling},
				ConnackUserProperties: slices.Clip(out.connack), // shared by cache hits: an append copies
			}
		}
		ans.res.DecidedBy = a.ext.ID()
		// An answer of a successor (the chain was taken before a reload)
		// is not kept: the generation taken was the old version's.
		if a.out.cacheFor > 0 && a.ext == e {
			if key == nil {
				k := h.authKeys.key(c)
				key = &k
			}
			e.authCache.put(key, ans, time.Duration(a.out.cacheFor)*time.Second, gen)
		}
		if a.decision != abi.DecisionNext {
			return ans.result(c.Conn)
		}
	}
	return broker.AuthResult{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized, ReasonString: "no extension accepted the client"}
}

// result is the broker's view of a kept answer for the connection conn;
// an ALLOW gets a client authorizer of its own, acting on conn's
// attributes.
func (a *cachedAnswer) result(conn broker.Conn) broker.AuthResult {
	res := a.res
	if res.Decision == broker.Allow {
		res.Client = &client{host: a.host, id: a.clientID, username: a.username, conn: conn, perms: a.perms}
	}
	return res
}

// connectRecord is the ABI view of a CONNECT. The user properties are
// appended to props, so that a caller's array keeps a CONNECT with a few
// of them from allocating.
func connectRecord(c *broker.Connect, props []abi.Pair) abi.ConnectRecord {
	r := abi.ConnectRecord{ProtocolVersion: c.ProtocolVersion, Keepalive: c.Keepalive, SessionExpiry: c.SessionExpiry,
		ClientID: c.ClientID, Username: c.Username, Password: c.Password, RemoteAddr: c.RemoteAddr, Listener: c.Listener,
		ReceiveMaximum: c.ReceiveMaximum}
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
		r.WillQoS, r.WillTopic, r.WillPayload, r.WillDelay = w.QoS, w.Topic, w.Payload, w.Delay
	}
	if t := c.TLS; t != nil {
		r.Flags |= abi.ConnectTLS
		r.TLSSubject, r.TLSSANs = t.PeerSubject, t.PeerSANs
	}
	for _, p := range c.UserProperties {
		props = append(props, abi.Pair{Key: p.Key, Value: p.Value})
	}
	if len(props) > 0 {
		r.UserProperties = props
	}
	return r
}
