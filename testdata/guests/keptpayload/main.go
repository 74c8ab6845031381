// Command keptpayload is a test guest that misuses the authorization
// cache: its authorize_publish refuses payloads over 16 bytes, yet marks
// every verdict kept with CacheVerdict, so a kept NEXT would let a later,
// larger payload on the same topic through. The conformance kit must fail
// it ("kept verdicts do not depend on the payload").
package main

import (
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			_ = propolis.CacheVerdict(time.Minute)
			if len(p.Payload) > 16 {
				return propolis.Deny(propolis.CodeQuotaExceeded, "payload over 16 bytes")
			}
			return propolis.Next()
		},
	})
}

func main() {}
