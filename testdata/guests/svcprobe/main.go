// Command svcprobe is a test guest for host services: it allows every
// CONNECT (except the user "svc", see authenticate), and answers each PUBLISH on svc/# by running the command in its
// payload and denying the PUBLISH with the outcome as reason string, which
// an MQTT 5 client reads from its PUBACK. A command is fields separated by
// "|": the operation, then its arguments.
//
//	get|CID|KEY                  ok:VALUE
//	getall|CID                   ok:KEY=VALUE@UNIXNS,...
//	put|CID|KEY|VALUE            ok
//	putbig|CID|KEY|N             ok (a value of N bytes of 'v')
//	getlen|CID|KEY               ok:LEN (the value's length)
//	ifnewer|CID|KEY|VALUE|NS|EQ  ok:replaced=R,had=H,prev=PREV
//	rm|CID|KEY                   ok
//	hammer|CID|KEY|NS            NEXT, or DENY 0x80 with what broke (see hammer)
//	burst|N|CID|KEY              ok:ok=A,limited=B,other=C (N gets)
//	subs|CID                     ok:FILTER/QOS/NL/RAP/RH/ID,... (sorted by filter)
//	subadd|CID|FILTER|QOS|OPTS|ID  ok (OPTS: n no local, r retain as
//	                             published, 0-3 retain handling, e.g. "nr1")
//	subrm|CID|FILTER             ok
//	retget|TOPIC                 ok:PAYLOAD/qos=Q/retain=R/expiry=E/ct=CT/props=K=V;...
//	retput|TOPIC|PAYLOAD|QOS|EXPIRY|CT|K=V;...  ok
//	retrm|TOPIC                  ok
//	kvget|KEY                    ok:VALUE (storage)
//	kvput|KEY|VALUE              ok
//	kvputbig|KEY|N               ok (a value of N bytes of 'v')
//	kvrm|KEY                     ok
//	kvkeys|PREFIX|AFTER|LIMIT    ok:KEY,KEY,...;more=M
//	kvall|PREFIX|LIMIT           ok:N (keys counted by paging LIMIT at a time)
//	conn|CID                     ok:true or ok:false (client_is_connected)
//	session|CID                  ok:connected=C,proto=P,expiry=S,window=W,queued=Q,max=M,drop=D,user=U,since=B,expires=B (B: whether set)
//	disc|CID|CODE|REASON|PW      ok (client_disconnect; PW 1: prevent the will)
//	inv|CID                      ok (client_invalidate_session)
//	expiry|CID|SECONDS           ok (client_set_session_expiry)
//	window|CID|N                 ok:WINDOW (client_set_inflight_window)
//	pub|QOS|RETAIN|TOPIC|PAYLOAD|EXPIRY|K=V  ok (publish; RETAIN 1 retains)
//	pubto|CID|QOS|RETAIN|TOPIC|PAYLOAD        ok:true or ok:false (publish_to_client)
//	pubraw|WHAT                  status:N (publish with a bad argument: ptr, huge, trunc, flags, reserved)
//
// A failure answers err:ERROR.
package main

import (
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{
		Authenticate: authenticate,
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			if cmd, ok := strings.CutPrefix(string(p.Payload), "hammer|"); ok {
				return hammer(cmd)
			}
			return propolis.Deny(0x83, run(string(p.Payload)))
		},
		PublishFilters: []string{"svc/#"},
	})
}

func arg(a []string, i int) string {
	if i < len(a) {
		return a[i]
	}
	return ""
}

func run(cmd string) string {
	a := strings.Split(cmd, "|")
	cid, key := arg(a, 1), arg(a, 2)
	var out string
	var err error
	switch a[0] {
	case "get":
		var v []byte
		v, err = propolis.SessionAttribute(cid, key)
		out = string(v)
	case "getlen":
		var v []byte
		v, err = propolis.SessionAttribute(cid, key)
		out = strconv.Itoa(len(v))
	case "getall":
		var as []propolis.Attribute
		as, err = propolis.SessionAttributes(cid)
		var parts []string
		for _, at := range as {
			parts = append(parts, at.Key+"="+string(at.Value)+"@"+strconv.FormatInt(at.Time.UnixNano(), 10))
		}
		out = strings.Join(parts, ",")
	case "put":
		err = propolis.PutSessionAttribute(cid, key, []byte(arg(a, 3)))
	case "putbig":
		n, _ := strconv.Atoi(arg(a, 3))
		err = propolis.PutSessionAttribute(cid, key, []byte(strings.Repeat("v", n)))
	case "ifnewer":
		ns, _ := strconv.ParseInt(arg(a, 4), 10, 64)
		var prev []byte
		var replaced bool
		prev, replaced, err = propolis.PutSessionAttributeIfNewer(cid, key, []byte(arg(a, 3)), time.Unix(0, ns), arg(a, 5) == "1")
		out = "replaced=" + strconv.FormatBool(replaced) + ",had=" + strconv.FormatBool(prev != nil) + ",prev=" + string(prev)
	case "rm":
		err = propolis.RemoveSessionAttribute(cid, key)
	case "burst":
		n, _ := strconv.Atoi(arg(a, 1))
		var ok, limited, other int
		for i := 0; i < n; i++ {
			_, e := propolis.SessionAttribute(arg(a, 2), arg(a, 3))
			switch {
			case e == nil || errors.Is(e, propolis.ErrNotFound):
				ok++
			case errors.Is(e, propolis.ErrRateLimited):
				limited++
			default:
				other++
			}
		}
		out = "ok=" + strconv.Itoa(ok) + ",limited=" + strconv.Itoa(limited) + ",other=" + strconv.Itoa(other)
	case "subs", "subadd", "subrm", "retget", "retput", "retrm":
		out, err = runSubsRetained(a)
	// storage
	case "kvget":
		var v []byte
		v, err = propolis.StoredValue(arg(a, 1))
		out = string(v)
	case "kvput":
		err = propolis.PutStoredValue(arg(a, 1), []byte(arg(a, 2)))
	case "kvputbig":
		n, _ := strconv.Atoi(arg(a, 2))
		err = propolis.PutStoredValue(arg(a, 1), []byte(strings.Repeat("v", n)))
	case "kvrm":
		err = propolis.RemoveStoredValue(arg(a, 1))
	case "kvkeys":
		limit, _ := strconv.Atoi(arg(a, 3))
		var keys []string
		var more bool
		keys, more, err = propolis.StoredKeys(arg(a, 1), arg(a, 2), limit)
		out = strings.Join(keys, ",") + ";more=" + strconv.FormatBool(more)
	case "kvall":
		limit, _ := strconv.Atoi(arg(a, 2))
		n, after := 0, ""
		for pages := 0; pages < 10000; pages++ {
			keys, more, e := propolis.StoredKeys(arg(a, 1), after, limit)
			if e != nil {
				err = e
				break
			}
			n += len(keys)
			if !more {
				break
			}
			after = keys[len(keys)-1]
		}
		out = strconv.Itoa(n)
	// The client and publish services.
	case "conn":
		var c bool
		c, err = propolis.ClientConnected(cid)
		out = strconv.FormatBool(c)
	case "session":
		var s propolis.SessionInfo
		s, err = propolis.ClientSession(cid)
		out = "connected=" + strconv.FormatBool(s.Connected) + ",proto=" + strconv.Itoa(int(s.Protocol)) +
			",expiry=" + strconv.FormatUint(uint64(s.SessionExpiry), 10) + ",window=" + strconv.FormatUint(uint64(s.InflightWindow), 10) +
			",queued=" + strconv.FormatUint(uint64(s.Queued), 10) + ",max=" + strconv.FormatUint(uint64(s.MaxQueued), 10) +
			",drop=" + strconv.Itoa(int(s.DropStrategy)) + ",user=" + s.Username +
			",since=" + strconv.FormatBool(!s.ConnectedSince.IsZero()) + ",expires=" + strconv.FormatBool(!s.ExpiresAt.IsZero())
	case "disc":
		code, _ := strconv.ParseUint(arg(a, 2), 0, 8)
		err = propolis.DisconnectClient(cid, byte(code), arg(a, 3), arg(a, 4) == "1")
	case "inv":
		err = propolis.InvalidateSession(cid)
	case "expiry":
		n, _ := strconv.ParseUint(arg(a, 2), 10, 32)
		err = propolis.SetSessionExpiry(cid, uint32(n))
	case "window":
		n, _ := strconv.ParseUint(arg(a, 2), 10, 16)
		var got uint16
		got, err = propolis.SetInflightWindow(cid, uint16(n))
		out = strconv.Itoa(int(got))
	case "pub":
		qos, _ := strconv.Atoi(arg(a, 1))
		exp, _ := strconv.ParseUint(arg(a, 5), 10, 32)
		m := propolis.Message{QoS: byte(qos), Retain: arg(a, 2) == "1", Topic: arg(a, 3), Payload: []byte(arg(a, 4)), MessageExpiry: uint32(exp)}
		if k, v, ok := strings.Cut(arg(a, 6), "="); ok {
			m.UserProperties = []propolis.UserProperty{{Key: k, Value: v}}
		}
		err = propolis.PublishMessage(m)
	case "pubto":
		qos, _ := strconv.Atoi(arg(a, 2))
		var sent bool
		sent, err = propolis.PublishToClient(cid, propolis.Message{QoS: byte(qos), Retain: arg(a, 3) == "1", Topic: arg(a, 4), Payload: []byte(arg(a, 5))})
		out = strconv.FormatBool(sent)
	case "pubraw":
		return "status:" + strconv.Itoa(int(pubRaw(arg(a, 1))))
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

// runSubsRetained runs the subscription and retained message commands.
func runSubsRetained(a []string) (string, error) {
	switch a[0] {
	case "subs":
		subs, err := propolis.Subscriptions(arg(a, 1))
		var parts []string
		for _, s := range subs {
			parts = append(parts, s.Filter+"/"+strconv.Itoa(int(s.QoS))+"/"+strconv.FormatBool(s.NoLocal)+"/"+
				strconv.FormatBool(s.RetainAsPublished)+"/"+strconv.Itoa(int(s.RetainHandling))+"/"+strconv.FormatUint(uint64(s.Identifier), 10))
		}
		return strings.Join(parts, ","), err
	case "subadd":
		qos, _ := strconv.Atoi(arg(a, 3))
		id, _ := strconv.ParseUint(arg(a, 5), 10, 32)
		s := propolis.Subscription{Filter: arg(a, 2), QoS: byte(qos), Identifier: uint32(id)}
		for _, o := range arg(a, 4) {
			switch {
			case o == 'n':
				s.NoLocal = true
			case o == 'r':
				s.RetainAsPublished = true
			case o >= '0' && o <= '9':
				s.RetainHandling = byte(o - '0')
			}
		}
		return "", propolis.AddSubscription(arg(a, 1), s)
	case "subrm":
		return "", propolis.RemoveSubscription(arg(a, 1), arg(a, 2))
	case "retget":
		m, err := propolis.RetainedMessage(arg(a, 1))
		var props []string
		for _, p := range m.UserProperties {
			props = append(props, p.Key+"="+p.Value)
		}
		return string(m.Payload) + "/qos=" + strconv.Itoa(int(m.QoS)) + "/retain=" + strconv.FormatBool(m.Retain) +
			"/expiry=" + strconv.FormatUint(uint64(m.MessageExpiry), 10) + "/ct=" + m.ContentType + "/props=" + strings.Join(props, ";"), err
	case "retput":
		qos, _ := strconv.Atoi(arg(a, 3))
		exp, _ := strconv.ParseUint(arg(a, 4), 10, 32)
		m := propolis.Message{Topic: arg(a, 1), Payload: []byte(arg(a, 2)), QoS: byte(qos), MessageExpiry: uint32(exp), ContentType: arg(a, 5)}
		if kv := arg(a, 6); kv != "" {
			for _, p := range strings.Split(kv, ";") {
				k, v, _ := strings.Cut(p, "=")
				m.UserProperties = append(m.UserProperties, propolis.UserProperty{Key: k, Value: v})
			}
		}
		return "", propolis.PutRetainedMessage(m)
	default: // retrm
		return "", propolis.RemoveRetainedMessage(arg(a, 1))
	}
}

// authenticate allows every CONNECT, except one with the user name "svc":
// that one runs the command in its password and is denied with the outcome
// as reason string (the CONNACK's, for an MQTT 5 client).
func authenticate(c *propolis.Connect) propolis.AuthResult {
	if c.HasUsername && c.Username == "svc" {
		return propolis.AuthResult{Verdict: propolis.Deny(0x87, run(string(c.Password)))}
	}
	return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
}

// rawPublish is the publish import itself, to pass arguments the SDK never
// writes.
//
//go:wasmimport propolis_v1 publish
func rawPublish(ptr, n uint32) int32

// pubRaw calls publish with a bad argument: a pointer outside memory
// (ptr), a length beyond 16 MiB (huge), a message cut in its topic
// (trunc), unknown flags (flags), a reserved byte set (reserved).
func pubRaw(what string) int32 {
	msg := []byte{0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 'a', '/', 'b', 0, 0, 0, 0}
	switch what {
	case "ptr":
		return rawPublish(0xfffffff0, 64)
	case "huge":
		return rawPublish(addr(msg), 16<<20+1)
	case "trunc":
		msg = msg[:14]
	case "flags":
		msg[1] = 2
	case "reserved":
		msg[3] = 1
	}
	return rawPublish(addr(msg), uint32(len(msg)))
}

// addr is the address of b's first byte in the guest's memory; b stays
// reachable through the call (the caller still holds it).
func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(&b[0]))) }

func main() {}

// hammer runs "hammer|CID|KEY|NS": PutSessionAttributeIfNewer of the
// decimal NS at time NS, and checks the answer against the rule: a value
// it replaced was older, one it did not replace is at least as new. It
// answers NEXT when the rule held (so that the next extension in the chain
// runs the same command), DENY 0x80 with what went wrong otherwise.
func hammer(cmd string) propolis.Verdict {
	a := strings.Split(cmd, "|")
	ns, err := strconv.ParseInt(arg(a, 2), 10, 64)
	if err != nil {
		return propolis.Deny(0x80, "bad time "+arg(a, 2))
	}
	prev, replaced, err := propolis.PutSessionAttributeIfNewer(arg(a, 0), arg(a, 1), []byte(arg(a, 2)), time.Unix(0, ns), false)
	if err != nil {
		return propolis.Deny(0x80, "err:"+err.Error())
	}
	var was int64 = -1
	if prev != nil {
		if was, err = strconv.ParseInt(string(prev), 10, 64); err != nil {
			return propolis.Deny(0x80, "previous value "+string(prev)+" is not a time")
		}
	}
	switch {
	case replaced && was >= ns:
		return propolis.Deny(0x80, "violation: "+arg(a, 2)+" replaced the newer "+string(prev))
	case !replaced && was < ns:
		return propolis.Deny(0x80, "violation: "+arg(a, 2)+" did not replace the older "+string(prev))
	}
	return propolis.Next()
}
