// Command bench is a test guest: it allows every client and answers ALLOW
// to every publish through AuthorizePublish, so that each PUBLISH costs one
// Wasm call.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(*propolis.Connect) propolis.AuthResult {
			return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
		},
		AuthorizePublish: func(*propolis.Publish) propolis.Verdict { return propolis.Allow() },
	})
}

func main() {}
