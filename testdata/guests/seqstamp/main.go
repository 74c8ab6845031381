// Command seqstamp is a broken extension for the conformance kit: its
// inbound interceptor stamps a sequence number kept in a global on every
// message as a user property. Its decision is always NEXT; only the packet
// change differs between instances, so the kit's state check must compare
// packet changes to fail it.
package main

import (
	"strconv"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

var seq int

func init() {
	propolis.Register(propolis.Extension{
		InterceptPublishInbound: func(p *propolis.PublishPacket) {
			seq++
			p.AddUserProperty("seq", strconv.Itoa(seq))
		},
	})
}

func main() {}
