// Command bigrecord is a test guest with a bounded record buffer: it
// allows every client and every publish (checking, in AuthorizePublish,
// both ends of the payload), and sets Extension.MaxRecordSize to
// 128 KiB, so that the broker's records beyond that are refused by its
// propolis_buffer rather than given to a handler.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(*propolis.Connect) propolis.AuthResult {
			return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
		},
		AuthorizePublish: authorizePublish,
		MaxRecordSize:    128 << 10,
	})
}

func main() {}

// authorizePublish allows a payload whose first and last bytes are 'x', as
// the test sends, and denies anything else with 0x99: a record cut short or
// mangled in the buffer is caught. It does not loop over the payload: with
// the host's deadline guard every loop iteration of a guest exits to Go,
// and 128 KiB of iterations would take longer than a call deadline.
func authorizePublish(p *propolis.Publish) propolis.Verdict {
	n := len(p.Payload)
	if n == 0 || p.Payload[0] != 'x' || p.Payload[n-1] != 'x' {
		return propolis.Deny(0x99, "payload is not all x") // payload format invalid
	}
	return propolis.Allow()
}
