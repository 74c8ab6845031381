// Command guard is the source of guard.wasm, a Go extension built with the
// Go SDK as it was at ABI 1.0 (see testdata/README.md): it proves that a
// module built for 1.0 loads and behaves the same in every later 1.x host.
//
//   - Authenticate: user "alice" with password "secret" is allowed, with
//     the default permission to publish and subscribe under
//     devices/<client id>/# only; user "mallory" is denied with 0x86 and
//     the reason "bad user name or password"; anyone else gets NEXT.
//   - AuthorizePublish, asked only for guard/#: a payload "bad" is denied
//     with 0x99 and the reason "bad payload", anything else allowed.
//   - AuthorizeSubscribe: secret/# is denied with 0x87, anything else NEXT
//     (the client's permissions decide).
//
// It is kept here, outside any Go module's package list, as the record of
// what guard.wasm is: it is not rebuilt by make testdata, because a build
// with today's SDK would be a 1.1 module.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(c *propolis.Connect) propolis.AuthResult {
			switch {
			case c.Username == "alice" && string(c.Password) == "secret":
				return propolis.AuthResult{Verdict: propolis.Allow(),
					Permissions: []propolis.Permission{propolis.AllowTopic("devices/{clientid}/#")}}
			case c.Username == "mallory":
				return propolis.AuthResult{Verdict: propolis.Deny(0x86, "bad user name or password")}
			}
			return propolis.AuthResult{Verdict: propolis.Next()}
		},
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			if string(p.Payload) == "bad" {
				return propolis.Deny(0x99, "bad payload")
			}
			return propolis.Allow()
		},
		PublishFilters: []string{"guard/#"},
		AuthorizeSubscribe: func(s *propolis.Subscribe) propolis.Verdict {
			if s.Filter == "secret/#" {
				return propolis.Deny(0x87, "")
			}
			return propolis.Next()
		},
	})
}

func main() {}
