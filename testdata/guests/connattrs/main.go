// Command connattrs is a test guest for connection attributes. Start tries
// one and logs the outcome (there is no connection then). Authenticate
// allows every CONNECT after stashing the user name as "user" and the
// number of attributes the connection already held as "before"; a user
// named "fill" also fills the connection up to its size limit and stashes
// the outcome of one put too many as "limit". AuthorizePublish on ca/#
// runs the command in the payload and denies the PUBLISH with the outcome
// as reason string; AuthorizeSubscribe allows a filter under ca/ only when
// it is ca/ followed by the stashed user name:
//
//	get|KEY        ok:VALUE
//	getall         ok:KEY=VALUE,... (sorted by key)
//	put|KEY|VALUE  ok
//	rm|KEY         ok
//
// A failure answers err:ERROR. OnEvent, for a disconnect, writes what the
// ended connection still reads, and what a put on it answers, into the
// session attribute "at_disconnect" of the client:
// "KEY=VALUE,...;put=ERROR".
package main

import (
	"strconv"
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{
		Start: func(propolis.StartInfo) error {
			_, err := propolis.ConnectionAttribute("user")
			propolis.Infof("start: connection attribute: %s", errString(err))
			return nil
		},
		Authenticate:     authenticate,
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict { return propolis.Deny(0x83, run(string(p.Payload))) },
		PublishFilters:   []string{"ca/#"},
		AuthorizeSubscribe: func(s *propolis.Subscribe) propolis.Verdict {
			if !strings.HasPrefix(s.Filter, "ca/") {
				return propolis.Next()
			}
			user, err := propolis.ConnectionAttribute("user")
			if err != nil || s.Filter != "ca/"+string(user) {
				return propolis.Deny(0x87, "not the stashed user's: "+errString(err))
			}
			return propolis.Allow()
		},
		OnEvent: onEvent,
	})
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func authenticate(c *propolis.Connect) propolis.AuthResult {
	before, err := propolis.ConnectionAttributes()
	if err == nil {
		err = propolis.PutConnectionAttribute("before", []byte(strconv.Itoa(len(before))))
	}
	if err == nil {
		err = propolis.PutConnectionAttribute("user", []byte(c.Username))
	}
	if err == nil && c.Username == "fill" {
		v := []byte(strings.Repeat("v", 10240))
		for i := 0; err == nil && i < 6; i++ {
			err = propolis.PutConnectionAttribute(strconv.Itoa(i), v)
		}
		if err == nil {
			err = propolis.PutConnectionAttribute("limit", []byte(errString(propolis.PutConnectionAttribute("6", v))))
		}
	}
	if err != nil {
		return propolis.AuthResult{Verdict: propolis.Deny(0x80, "connection attributes: "+err.Error())}
	}
	return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
}

func all() (string, error) {
	as, err := propolis.ConnectionAttributes()
	var parts []string
	for _, a := range as {
		parts = append(parts, a.Key+"="+string(a.Value))
	}
	return strings.Join(parts, ","), err
}

func run(cmd string) string {
	a := strings.Split(cmd, "|")
	arg := func(i int) string {
		if i < len(a) {
			return a[i]
		}
		return ""
	}
	var out string
	var err error
	switch a[0] {
	case "get":
		var v []byte
		v, err = propolis.ConnectionAttribute(arg(1))
		out = string(v)
	case "getall":
		out, err = all()
	case "put":
		err = propolis.PutConnectionAttribute(arg(1), []byte(arg(2)))
	case "rm":
		err = propolis.RemoveConnectionAttribute(arg(1))
	default:
		return "err:unknown command " + a[0]
	}
	if err != nil {
		return "err:" + err.Error()
	}
	if out == "" {
		return "ok"
	}
	return "ok:" + out
}

func onEvent(e *propolis.Event) {
	if e.Kind != propolis.EventDisconnect {
		return
	}
	got, err := all()
	if err != nil {
		got = "err:" + err.Error()
	}
	got += ";put=" + errString(propolis.PutConnectionAttribute("late", []byte("x")))
	if err := propolis.PutSessionAttribute(e.ClientID, "at_disconnect", []byte(got)); err != nil {
		propolis.Errorf("on_event: %v", err)
	}
}

func main() {}
