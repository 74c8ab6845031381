// Command bigrecord is a test guest with a bounded record buffer: it
// allows every client and every publish (checking, in AuthorizePublish,
// that it saw the whole payload), and sets Extension.MaxRecordSize to
// 128 KiB, so that the broker's records beyond that are refused by its
// propolis_buffer rather than given to a handler.
package main

import (
	"bytes"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{
		Authenticate:     func(*propolis.Connect) propolis.AuthResult { return propolis.AuthResult{Verdict: propolis.Allow()} },
		AuthorizePublish: authorizePublish,
		MaxRecordSize:    128 << 10,
	})
}

func main() {}

// authorizePublish allows a payload made only of 'x' bytes, as the test
// sends, and denies anything else with 0x99 (payload format invalid): a
// record cut short or mangled in the buffer is caught.
func authorizePublish(p *propolis.Publish) propolis.Verdict {
	if len(p.Payload) == 0 || bytes.Count(p.Payload, []byte{'x'}) != len(p.Payload) {
		return propolis.Deny(0x99, "payload is not all x") // payload format invalid
	}
	return propolis.Allow()
}
