// Command ext is a tiny extension used by the SDK's tests to check that the
// wasip1 glue builds and exports/imports what ABI.md says.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Start: func(info propolis.StartInfo) error {
			propolis.Infof("starting %s %s", info.ID, info.Version)
			return propolis.AddInterceptFilter(propolis.FilterPublishInbound, "devices/#")
		},
		Authenticate: func(c *propolis.Connect) propolis.AuthResult {
			if c.Username == "" {
				return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "user name required")}
			}
			ka := uint16(30)
			return propolis.AuthResult{
				Verdict:               propolis.Allow(),
				Keepalive:             &ka,
				ConnackUserProperties: []propolis.UserProperty{{Key: "tier", Value: "free"}},
				Permissions:           []propolis.Permission{propolis.AllowTopic("devices/{clientid}/#")},
			}
		},
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			if len(p.Payload) > 1024 {
				return propolis.Disconnect(propolis.CodeQuotaExceeded, "payload too large")
			}
			return propolis.Next()
		},
		AuthorizeSubscribe: func(s *propolis.Subscribe) propolis.Verdict { return propolis.Next() },
		OnEvent:            func(e *propolis.Event) {},
		Stop:               func() {},
		PublishFilters:     []string{"devices/#"},
		InterceptConnect: func(c *propolis.ConnectPacket) {
			if c.ClientID == "" {
				c.SetClientID("anonymous")
			}
		},
		InterceptConnack: func(a *propolis.ConnackPacket) { a.AddUserProperty("region", "eu") },
		InterceptPublishInbound: func(p *propolis.PublishPacket) {
			if len(p.Payload) == 0 {
				p.Prevent(0x99, "empty payload")
				return
			}
			p.SetPayload(append([]byte("v1:"), p.Payload...))
		},
		InterceptPublishOutbound: func(p *propolis.PublishPacket) { p.AddUserProperty("to", p.ClientID) },
		InterceptSubscribe:       func(s *propolis.SubscriptionPacket) { s.SetNoLocal(true) },
		InterceptDisconnect:      func(d *propolis.DisconnectPacket) { d.SetReasonString("bye") },
		InterceptOutboundFilters: []string{"alerts/#"},
		InterceptOutboundClients: []string{"dashboard-*"},
	})
}

func main() {}
