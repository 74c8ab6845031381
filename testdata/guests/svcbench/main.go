// Command svcbench is a benchmark guest for host services: it allows every
// CONNECT, and each PUBLISH runs the operation named by its topic N times,
// N being the payload (a decimal number; 0 runs none, the baseline), then
// answers ALLOW, or DENY with the error as reason string when a call
// failed. Operations:
//
//	attr-get   SessionAttribute(client id, "k")
//	attr-put   PutSessionAttribute(client id, "k", 16 bytes)
//	kv-get     StoredValue("k")
//	kv-put     PutStoredValue("k", 16 bytes)
//	none       nothing: the cost of the call into the guest alone
package main

import (
	"errors"
	"strconv"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

var value = []byte("0123456789abcdef")

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: func(*propolis.Connect) propolis.AuthResult {
			return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
		},
		AuthorizePublish: authorizePublish,
	})
}

func authorizePublish(p *propolis.Publish) propolis.Verdict {
	n, _ := strconv.Atoi(string(p.Payload))
	var err error
	for i := 0; i < n && err == nil; i++ {
		switch p.Topic {
		case "attr-get":
			_, err = propolis.SessionAttribute(p.ClientID, "k")
		case "attr-put":
			err = propolis.PutSessionAttribute(p.ClientID, "k", value)
		case "kv-get":
			_, err = propolis.StoredValue("k")
		case "kv-put":
			err = propolis.PutStoredValue("k", value)
		case "none":
		default:
			err = errors.New("unknown operation " + p.Topic)
		}
	}
	if err != nil {
		return propolis.Deny(0x80, err.Error())
	}
	return propolis.Allow()
}

func main() {}
