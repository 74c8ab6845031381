// Command svcprobe is a test guest for host services: it allows every
// CONNECT, and answers each PUBLISH on svc/# by running the command in its
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
//
// A failure answers err:ERROR.
package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{
		Authenticate:     func(*propolis.Connect) propolis.AuthResult { return propolis.AuthResult{Verdict: propolis.Allow()} },
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict { return propolis.Deny(0x83, run(string(p.Payload))) },
		PublishFilters:   []string{"svc/#"},
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

func main() {}
