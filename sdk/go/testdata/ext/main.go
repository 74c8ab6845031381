// Command ext is a tiny extension used by the SDK's tests to check that the
// wasip1 glue builds and exports/imports what ABI.md says.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Start: func(info propolis.StartInfo) error {
			propolis.Infof("starting %s %s", info.ID, info.Version)
			return nil
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
	})
}

func main() {}
