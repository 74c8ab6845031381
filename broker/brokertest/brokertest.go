// Package brokertest has what tests and benchmarks of the broker share: a
// native allow-everything security implementation (the baseline Wasm
// extensions are measured against) and a rule-based one for authorization
// tests; the paho client helpers of the tests of broker, trace, admin and
// metrics (DialV5, OpCtx, WaitToken). Nothing in the product imports it.
package brokertest

import (
	"context"
	"strings"
	"sync"

	"github.com/propolis-mqtt/propolis/broker"
)

// AllowAll accepts every CONNECT, PUBLISH and SUBSCRIBE. It is the native
// counterpart of the allow-all extension. The zero value is ready to use.
type AllowAll struct{}

var (
	_ broker.Authenticator    = AllowAll{}
	_ broker.ClientAuthorizer = AllowAll{}
)

// Authenticate allows the client, decided by "brokertest-allow-all".
func (AllowAll) Authenticate(context.Context, *broker.Connect) broker.AuthResult {
	return broker.AuthResult{Decision: broker.Allow, Client: AllowAll{}, DecidedBy: "brokertest-allow-all"}
}

// SecurityExtensions names the implementation.
func (AllowAll) SecurityExtensions() []string { return []string{"brokertest-allow-all"} }

// AuthorizePublish allows it.
func (AllowAll) AuthorizePublish(*broker.Publish) broker.Verdict {
	return broker.Verdict{Decision: broker.Allow}
}

// AuthorizeSubscribe allows it.
func (AllowAll) AuthorizeSubscribe(*broker.Subscribe) broker.Verdict {
	return broker.Verdict{Decision: broker.Allow}
}

// Rules is a small rule-based security implementation for tests: usernames
// listed in Refuse are refused with the given code; publishes and
// subscriptions on topics starting with a key of DenyPrefix get that
// verdict. Everything else is allowed.
type Rules struct {
	Refuse     map[string]byte
	DenyPrefix map[string]broker.Verdict
	// UserDenyPrefix denies (0x87) the listed topic prefixes to one user
	// name only.
	UserDenyPrefix map[string][]string

	mu     sync.Mutex
	Events []broker.Event
}

var (
	_ broker.Authenticator = (*Rules)(nil)
	_ broker.EventListener = (*Rules)(nil)
)

// Authenticate refuses listed usernames; DecidedBy is "brokertest-rules".
func (r *Rules) Authenticate(_ context.Context, c *broker.Connect) broker.AuthResult {
	if code, ok := r.Refuse[c.Username]; ok {
		return broker.AuthResult{Decision: broker.Deny, ReasonCode: code, ReasonString: "refused by test rules"}
	}
	return broker.AuthResult{Decision: broker.Allow, Client: rulesClient{r, c.Username}, DecidedBy: "brokertest-rules"}
}

// SecurityExtensions names the implementation.
func (r *Rules) SecurityExtensions() []string { return []string{"brokertest-rules"} }

// OnEvent records the event.
func (r *Rules) OnEvent(e *broker.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Events = append(r.Events, *e)
}

// Recorded returns a copy of the events seen so far.
func (r *Rules) Recorded() []broker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Event(nil), r.Events...)
}

type rulesClient struct {
	r        *Rules
	username string
}

func (c rulesClient) verdict(topic string) broker.Verdict {
	for _, p := range c.r.UserDenyPrefix[c.username] {
		if strings.HasPrefix(topic, p) {
			return broker.Verdict{Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized}
		}
	}
	for p, v := range c.r.DenyPrefix {
		if strings.HasPrefix(topic, p) {
			return v
		}
	}
	return broker.Verdict{Decision: broker.Allow}
}

func (c rulesClient) AuthorizePublish(p *broker.Publish) broker.Verdict { return c.verdict(p.Topic) }

func (c rulesClient) AuthorizeSubscribe(s *broker.Subscribe) broker.Verdict {
	return c.verdict(s.Filter)
}
