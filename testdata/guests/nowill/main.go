// Command nowill is a valid, strict authenticator for the conformance
// kit's --mqtt scenarios: it lets in only user "kit" and refuses every
// CONNECT that carries a will (0x87, not authorized). The kit must drive
// its MQTT 3.1.1 and 5 scenarios without a will, and report the ones it
// refused as not driven rather than passed.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(c *propolis.Connect) propolis.AuthResult {
			switch {
			case c.Username != "kit":
				return propolis.AuthResult{Verdict: propolis.Deny(0x86, "bad user name or password")}
			case c.Will != nil:
				return propolis.AuthResult{Verdict: propolis.Deny(0x87, "no wills here")}
			}
			return propolis.AuthResult{Verdict: propolis.Allow()}
		},
	})
}

func main() {}
