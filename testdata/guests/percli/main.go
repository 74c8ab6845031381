// Command percli is a broken extension for the conformance kit: it keeps
// per-client state in the instance. Authenticate remembers each client id
// in a global map, and AuthorizePublish allows only clients it remembers,
// so its answer depends on which CONNECTs this instance saw before (ABI.md
// section 1: each instance of a pool sees its own share of the calls).
// The kit's state check must fail it.
package main

import (
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

var known = map[string]bool{}

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(c *propolis.Connect) propolis.AuthResult {
			if c.ClientID != "" {
				known[strings.Clone(c.ClientID)] = true
			}
			return propolis.AuthResult{Verdict: propolis.Allow()}
		},
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			if known[p.ClientID] {
				return propolis.Allow()
			}
			return propolis.Deny(0x87, "unknown client")
		},
	})
}

func main() {}
