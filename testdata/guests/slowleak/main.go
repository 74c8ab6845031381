// Command slowleak is a broken extension for the conformance kit: each
// AuthorizePublish keeps 1 KiB in a global slice it never trims, a
// slow leak that a garbage-collected heap hides for a while (the linear
// memory grows in steps, flat in between). The kit's memory check must
// fail it.
package main

import propolis "github.com/propolis-mqtt/propolis/sdk/go"

var keep [][]byte

func init() {
	propolis.Register(propolis.Extension{
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			keep = append(keep, make([]byte, 1024))
			return propolis.Next()
		},
	})
}

func main() {}
