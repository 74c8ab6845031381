package propolis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fieldNames names the packet_set fields for the recorder's log.
var fieldNames = map[uint32]string{
	fieldClientId: "client_id", fieldUsername: "username", fieldPassword: "password",
	fieldSessionExpiry: "session_expiry", fieldKeepalive: "keepalive", fieldReceiveMaximum: "receive_maximum",
	fieldUserProperties: "user_properties", fieldWillTopic: "will_topic", fieldWillPayload: "will_payload",
	fieldWillQos: "will_qos", fieldWillRetain: "will_retain", fieldWillDelay: "will_delay",
	fieldReasonString: "reason_string", fieldTopic: "topic", fieldPayload: "payload", fieldQos: "qos",
	fieldRetain: "retain", fieldMessageExpiry: "message_expiry", fieldContentType: "content_type",
	fieldPayloadFormat: "payload_format", fieldResponseTopic: "response_topic",
	fieldCorrelationData: "correlation_data", fieldSubscriptionOptions: "subscription_options",
}

func fieldName(f uint32) string {
	if n, ok := fieldNames[f]; ok {
		return n
	}
	return "field?"
}

// u32 encodes a u32 field.
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// propsField encodes a list<str, str>.
func propsField(kv ...string) []byte {
	b := u32(uint32(len(kv) / 2))
	for _, s := range kv {
		b = append(b, str(s)...)
	}
	return b
}

// messageRecord builds a MESSAGE record.
func messageRecord(direction, qos, flags byte, topic, payload string, props ...string) []byte {
	return makeRecord(kindMessage, []byte{direction, 5, 0, 0}, str("sub-1"), str("user"), str("pub-1"),
		[]byte{qos, flags, 1, 0}, u32(60), str(topic), str(payload), propsField(props...),
		str("text/plain"), str("replies/1"), str("corr"))
}

func TestDecodeMessageRecord(t *testing.T) {
	var p PublishPacket
	if err := decodeMessageRecord(messageRecord(2, 1, 1, "a/b", "hello", "k", "v"), &p); err != nil {
		t.Fatal(err)
	}
	want := PublishPacket{Outbound: true, ProtocolVersion: 5, ClientID: "sub-1", Username: "user", Publisher: "pub-1",
		QoS: 1, Retain: true, PayloadFormat: 1, MessageExpiry: 60, Topic: "a/b", Payload: []byte("hello"),
		UserProperties: []UserProperty{{"k", "v"}}, ContentType: "text/plain", ResponseTopic: "replies/1",
		CorrelationData: []byte("corr")}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", p, want)
	}
	// Every shorter length decodes (an older record) or fails cleanly.
	rec := messageRecord(1, 0, 0, "t", "x")
	for n := headerSize; n < len(rec); n++ {
		short := append([]byte(nil), rec[:n]...)
		binary.LittleEndian.PutUint32(short, uint32(n))
		_ = decodeMessageRecord(short, &p)
	}
	if err := decodeMessageRecord(makeRecord(kindPublish), &p); !errors.Is(err, errKind) {
		t.Errorf("wrong kind: %v", err)
	}
}

// The empty MQTT 5 tail (16 zero bytes) and a missing one clear what a
// previous message's tail left in the reused packet; a tail with only one
// field set is decoded in full.
func TestDecodeMessageRecordTails(t *testing.T) {
	head := [][]byte{{1, 4, 0, 0}, str("pub-1"), str("user"), str("pub-1"), {0, 0, 0, 0}, u32(0), str("a/b"), str("x")}
	rec := func(tail ...[]byte) []byte {
		return makeRecord(kindMessage, append(append([][]byte{}, head...), tail...)...)
	}
	var p PublishPacket
	for _, tc := range []struct {
		name string
		rec  []byte
		want PublishPacket
	}{
		{"empty tail", rec(u32(0), str(""), str(""), str("")), PublishPacket{}},
		{"no tail", rec(), PublishPacket{}},
		{"only correlation data", rec(u32(0), str(""), str(""), str("c")), PublishPacket{CorrelationData: []byte("c")}},
		{"only a property", rec(propsField("k", "v"), str(""), str(""), str("")), PublishPacket{UserProperties: []UserProperty{{"k", "v"}}}},
		{"only content type", rec(u32(0), str("ct"), str(""), str("")), PublishPacket{ContentType: "ct"}},
		{"tail cut short", rec(u32(0), str("")[:2]), PublishPacket{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A previous message with everything set.
			if err := decodeMessageRecord(messageRecord(1, 1, 0, "p/q", "old", "old", "prop"), &p); err != nil {
				t.Fatal(err)
			}
			err := decodeMessageRecord(tc.rec, &p)
			if tc.name == "tail cut short" {
				if !errors.Is(err, errTruncated) {
					t.Fatalf("error %v, want errTruncated", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Topic != "a/b" || string(p.Payload) != "x" || p.ClientID != "pub-1" {
				t.Errorf("head decoded as %+v", p)
			}
			got := PublishPacket{UserProperties: p.UserProperties, ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("tail decoded as %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestInterceptPublishChanges(t *testing.T) {
	var seen PublishPacket
	with(t, Extension{InterceptPublishInbound: func(p *PublishPacket) {
		if err := p.SetTopic("new/" + p.Topic); err != nil {
			t.Error(err)
		}
		if err := p.SetPayload([]byte(`{"v":"` + string(p.Payload) + `"}`)); err != nil {
			t.Error(err)
		}
		p.AddUserProperty("a", "1")
		p.AddUserProperty("b", "2")
		p.SetQoS(0)
		p.SetRetain(false)
		p.SetMessageExpiry(5)
		p.SetContentType("application/json")
		p.SetPayloadFormat(1)
		p.SetResponseTopic("")
		p.SetCorrelationData(nil)
		seen = *p
	}})
	h := &recorder{}
	if got := interceptPublishInbound(h, messageRecord(1, 1, 1, "a/b", "hi", "k", "v")); got != 0 {
		t.Errorf("answer %#x, want NEXT", got)
	}
	props := "\x02\x00\x00\x00" + "\x01\x00\x00\x00k\x01\x00\x00\x00v" + "\x01\x00\x00\x00a\x01\x00\x00\x001"
	props3 := "\x03\x00\x00\x00" + props[4:] + "\x01\x00\x00\x00b\x01\x00\x00\x002"
	want := []string{
		`packet_set(topic, "new/a/b")`,
		`packet_set(payload, "{\"v\":\"hi\"}")`,
		fmt.Sprintf("packet_set(user_properties, %q)", props),
		fmt.Sprintf("packet_set(user_properties, %q)", props3),
		"packet_set_int(qos, 0)", "packet_set_int(retain, 0)", "packet_set_int(message_expiry, 5)",
		`packet_set(content_type, "application/json")`, "packet_set_int(payload_format, 1)",
		`packet_set(response_topic, "")`, `packet_set(correlation_data, "")`,
	}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", h.calls, want)
	}
	wantProps := []UserProperty{{"k", "v"}, {"a", "1"}, {"b", "2"}}
	if seen.Topic != "new/a/b" || string(seen.Payload) != `{"v":"hi"}` || !reflect.DeepEqual(seen.UserProperties, wantProps) ||
		seen.QoS != 0 || seen.Retain || seen.ContentType != "application/json" || seen.ResponseTopic != "" || seen.CorrelationData != nil {
		t.Errorf("the packet does not show the changes: %+v", seen)
	}
}

func TestInterceptPublishPrevent(t *testing.T) {
	tests := []struct {
		name   string
		code   byte
		reason string
		want   uint32
		calls  []string
	}{
		{"code and reason", 0x99, "schema", 0x9902, []string{"set_reason(schema)"}},
		{"code 0 means 0x83 (the host's)", 0, "", 0x0002, nil},
		{"code below 0x80", 0x10, "", 0x8002, nil},
		{"long reason", 0x97, strings.Repeat("é", 600), 0x9702, []string{"set_reason(" + strings.Repeat("é", 512) + ")"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			with(t, Extension{InterceptPublishOutbound: func(p *PublishPacket) {
				if !p.Outbound {
					t.Error("outbound record decoded as inbound")
				}
				p.Prevent(tt.code, tt.reason)
			}})
			h := &recorder{}
			if got := interceptPublishOutbound(h, messageRecord(2, 0, 0, "t", "x")); got != tt.want {
				t.Errorf("answer %#x, want %#x", got, tt.want)
			}
			if !reflect.DeepEqual(h.calls, tt.calls) {
				t.Errorf("calls %q, want %q", h.calls, tt.calls)
			}
			// The next call starts unprevented.
			with(t, Extension{InterceptPublishOutbound: func(p *PublishPacket) {
				if p.Prevented() {
					t.Error("prevention carried over to the next message")
				}
			}})
			if got := interceptPublishOutbound(h, messageRecord(2, 0, 0, "t", "x")); got != 0 {
				t.Errorf("next answer %#x", got)
			}
		})
	}
}

func TestInterceptSetRefused(t *testing.T) {
	var err error
	var topic string
	with(t, Extension{InterceptPublishInbound: func(p *PublishPacket) {
		err = p.SetTopic("a/+")
		topic = p.Topic
	}})
	h := &recorder{fail: map[string]int32{"packet_set": statusInvalidArgument}}
	interceptPublishInbound(h, messageRecord(1, 0, 0, "a/b", ""))
	if !errors.Is(err, ErrInvalidArgument) || topic != "a/b" {
		t.Errorf("refused SetTopic: %v, topic %q", err, topic)
	}
}

func TestInterceptMalformedRecordIsNext(t *testing.T) {
	called := false
	with(t, Extension{InterceptPublishInbound: func(*PublishPacket) { called = true },
		InterceptSubscribe: func(*SubscriptionPacket) { called = true }})
	h := &recorder{}
	if got := interceptPublishInbound(h, []byte{1, 2, 3}); got != 0 || called {
		t.Errorf("answer %#x, handler called %v", got, called)
	}
	if got := interceptSubscribe(h, makeRecord(kindSubscription, make([]byte, 8), str("c1")[:5])); got != 0 || called {
		t.Errorf("answer %#x, handler called %v", got, called)
	}
	if len(h.calls) != 2 || !strings.HasPrefix(h.calls[0], "log(error, propolis: malformed MESSAGE record") {
		t.Errorf("calls %q", h.calls)
	}
	// Without handlers, the exports answer NEXT.
	with(t, Extension{})
	rec := messageRecord(1, 0, 0, "t", "")
	if interceptPublishInbound(h, rec)|interceptPublishOutbound(h, rec)|interceptConnect(h, rec)|
		interceptConnack(h, rec)|interceptSubscribe(h, rec)|interceptDisconnect(h, rec) != 0 {
		t.Error("a missing handler answered other than NEXT")
	}
}

func connectRecord(will bool, props ...string) []byte {
	flags := byte(connectCleanStart | connectHasUsername)
	if will {
		flags |= connectHasWill
	}
	return makeRecord(kindConnect, []byte{5, flags, 1, 0, 30, 0, 0, 0}, u32(0), str("c1"), str("u"), str(""),
		str("127.0.0.1:1"), str("tcp"), str(""), u32(0), str("will/t"), str("bye"), propsField(props...),
		[]byte{10, 0, 0, 0}, u32(7))
}

func TestInterceptConnect(t *testing.T) {
	var got *Will
	var rm uint16
	with(t, Extension{InterceptConnect: func(c *ConnectPacket) {
		rm = c.ReceiveMaximum
		c.SetClientID("c2")
		c.SetUsername("v")
		c.SetPassword([]byte("pw"))
		c.SetSessionExpiry(3600)
		c.SetKeepalive(60)
		c.SetReceiveMaximum(10)
		if c.Will != nil {
			t.Error("will without the flag")
		}
		c.SetWillTopic("added/will")
		c.SetWillPayload([]byte("gone"))
		c.SetWillQoS(1)
		c.SetWillRetain(true)
		c.SetWillDelay(9)
		c.AddUserProperty("x", "y")
		w := *c.Will
		w.Payload = append([]byte(nil), w.Payload...)
		got = &w
	}})
	h := &recorder{}
	if a := interceptConnect(h, connectRecord(false)); a != 0 {
		t.Errorf("answer %#x", a)
	}
	want := []string{`packet_set(client_id, "c2")`, `packet_set(username, "v")`, `packet_set(password, "pw")`,
		"packet_set_int(session_expiry, 3600)", "packet_set_int(keepalive, 60)", "packet_set_int(receive_maximum, 10)",
		`packet_set(will_topic, "added/will")`, `packet_set(will_payload, "gone")`, "packet_set_int(will_qos, 1)",
		"packet_set_int(will_retain, 1)", "packet_set_int(will_delay, 9)",
		`packet_set(user_properties, "\x01\x00\x00\x00\x01\x00\x00\x00x\x01\x00\x00\x00y")`}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", h.calls, want)
	}
	if rm != 10 {
		t.Errorf("receive maximum decoded as %d", rm)
	}
	if !reflect.DeepEqual(got, &Will{Topic: "added/will", Payload: []byte("gone"), QoS: 1, Retain: true, Delay: 9}) {
		t.Errorf("will %+v", got)
	}
	if connPkt.ClientID != "" || connWill.Topic != "" {
		t.Error("the CONNECT's views outlived the call")
	}

	// A will sent is seen with its delay, and removed.
	with(t, Extension{InterceptConnect: func(c *ConnectPacket) {
		if c.Will == nil || c.Will.Topic != "will/t" || c.Will.Delay != 7 || string(c.Will.Payload) != "bye" {
			t.Errorf("will %+v", c.Will)
		}
		if err := c.RemoveWill(); err != nil || c.Will != nil {
			t.Errorf("RemoveWill: %v, %+v", err, c.Will)
		}
	}})
	h = &recorder{}
	interceptConnect(h, connectRecord(true))
	if !reflect.DeepEqual(h.calls, []string{`packet_set(will_topic, "")`}) {
		t.Errorf("calls %q", h.calls)
	}
}

func TestInterceptSubscribe(t *testing.T) {
	rec := makeRecord(kindSubscription, []byte{2, subNoLocal | 2<<subRetainHandling, 5, subscribeShared}, u32(4),
		str("c1"), str("u"), str("$share/g/a/#"), propsField("k", "v"))
	with(t, Extension{InterceptSubscribe: func(s *SubscriptionPacket) {
		want := SubscriptionPacket{Filter: "$share/g/a/#", QoS: 2, NoLocal: true, RetainHandling: 2, Shared: true,
			ProtocolVersion: 5, Identifier: 4, ClientID: "c1", Username: "u", UserProperties: []UserProperty{{"k", "v"}}, h: s.h}
		// The reused packet keeps the last Prevent's code and reason; only
		// the flag is cleared per call (interceptSubscribe), and it rules.
		want.prevention.code, want.prevention.reason = s.prevention.code, s.prevention.reason
		if !reflect.DeepEqual(*s, want) {
			t.Errorf("decoded\n%+v\nwant\n%+v", *s, want)
		}
		s.SetQoS(1)
		s.SetNoLocal(false)
		s.SetRetainAsPublished(true)
		s.SetRetainHandling(0)
		if s.QoS != 1 || s.NoLocal || !s.RetainAsPublished || s.RetainHandling != 0 {
			t.Errorf("after the changes: %+v", *s)
		}
		s.Prevent(0x8F, "no wildcards")
	}})
	h := &recorder{}
	if a := interceptSubscribe(h, rec); a != 0x8F02 {
		t.Errorf("answer %#x", a)
	}
	want := []string{"packet_set_int(qos, 1)", "packet_set_int(subscription_options, 8)",
		"packet_set_int(subscription_options, 10)", "packet_set_int(subscription_options, 2)", "set_reason(no wildcards)"}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}
}

func TestInterceptConnackAndDisconnect(t *testing.T) {
	with(t, Extension{
		InterceptConnack: func(a *ConnackPacket) {
			if a.ReasonCode != 0 || !a.SessionPresent || a.ClientID != "c1" || len(a.UserProperties) != 1 {
				t.Errorf("connack %+v", *a)
			}
			a.AddUserProperty("region", "eu")
			a.SetReasonString("welcome")
		},
		InterceptDisconnect: func(d *DisconnectPacket) {
			if !d.Outbound || d.ReasonCode != 0x8E || d.ReasonString != "taken over" {
				t.Errorf("disconnect %+v", *d)
			}
			d.SetUserProperties([]UserProperty{{"why", "dup"}})
			d.SetReasonString("")
		},
	})
	h := &recorder{}
	interceptConnack(h, makeRecord(kindConnack, []byte{0, 1, 5, 0}, str("c1"), str("u"), str(""), propsField("k", "v")))
	interceptDisconnect(h, makeRecord(kindDisconnect, []byte{2, 0x8E, 5, 0}, str("c1"), str("u"), str("taken over"), u32(0)))
	want := []string{
		`packet_set(user_properties, "\x02\x00\x00\x00\x01\x00\x00\x00k\x01\x00\x00\x00v\x06\x00\x00\x00region\x02\x00\x00\x00eu")`,
		`packet_set(reason_string, "welcome")`,
		`packet_set(user_properties, "\x01\x00\x00\x00\x03\x00\x00\x00why\x03\x00\x00\x00dup")`,
		`packet_set(reason_string, "")`,
	}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", h.calls, want)
	}
}

func TestStartInterceptors(t *testing.T) {
	noop := func(*PublishPacket) {}
	with(t, Extension{
		InterceptConnect:         func(*ConnectPacket) {},
		InterceptPublishInbound:  noop,
		InterceptPublishOutbound: noop,
		InterceptInboundFilters:  []string{"legacy/#"},
		InterceptOutboundFilters: []string{"alerts/+", "x"},
		InterceptOutboundClients: []string{"app-*", "dashboard"},
		InterceptSubscribe:       func(*SubscriptionPacket) {},
	})
	h := &recorder{}
	if got := start(h, vector(t, "start")); got != 0 {
		t.Fatalf("start answered %d: %q", got, h.calls)
	}
	want := []string{"declare_callbacks(928)", "add_intercept_filter(128, legacy/#)",
		"add_intercept_filter(256, alerts/+)", "add_intercept_filter(256, x)",
		"add_intercept_client(app-*)", "add_intercept_client(dashboard)"}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}

	// Filters without their handler are not sent; a refused filter refuses
	// the start.
	with(t, Extension{InterceptInboundFilters: []string{"a"}, InterceptPublishOutbound: noop, InterceptOutboundFilters: []string{"a#"}})
	h = &recorder{fail: map[string]int32{"add_intercept_filter": statusInvalidArgument}}
	if got := start(h, vector(t, "start")); got != 1 {
		t.Fatalf("start answered %d", got)
	}
	want = []string{"declare_callbacks(256)", "add_intercept_filter(256, a#)", `set_reason(propolis: add_intercept_filter "a#": INVALID_ARGUMENT)`}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}
}

// TestStartInterceptClients: client patterns are sent only with an
// outbound interceptor, after the topic filters; a refused pattern
// refuses the start, naming it and the status.
func TestStartInterceptClients(t *testing.T) {
	noop := func(*PublishPacket) {}
	with(t, Extension{InterceptPublishInbound: noop, InterceptOutboundClients: []string{"app-*"}})
	h := &recorder{}
	if got := start(h, vector(t, "start")); got != 0 {
		t.Fatalf("start answered %d: %q", got, h.calls)
	}
	if want := []string{"declare_callbacks(128)"}; !reflect.DeepEqual(h.calls, want) {
		t.Errorf("without an outbound interceptor: calls %q, want %q", h.calls, want)
	}

	with(t, Extension{InterceptPublishOutbound: noop, InterceptOutboundClients: []string{"a*b", "c"}})
	h = &recorder{fail: map[string]int32{"add_intercept_client": statusInvalidArgument}}
	if got := start(h, vector(t, "start")); got != 1 {
		t.Fatalf("start answered %d", got)
	}
	want := []string{"declare_callbacks(256)", "add_intercept_client(a*b)", `set_reason(propolis: add_intercept_client "a*b": INVALID_ARGUMENT)`}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}

	// AddInterceptClient from Start reaches the host; its error is the
	// status's.
	old := host
	t.Cleanup(func() { host = old })
	rec := &recorder{fail: map[string]int32{"add_intercept_client": statusTooLarge}}
	host = rec
	with(t, Extension{InterceptPublishOutbound: noop, Start: func(StartInfo) error { return AddInterceptClient("sensor-*") }})
	if got := start(rec, vector(t, "start")); got != 1 {
		t.Fatalf("start answered %d: %q", got, rec.calls)
	}
	want = []string{"add_intercept_client(sensor-*)", "set_reason(" + ErrTooLarge.Error() + ")"}
	if !reflect.DeepEqual(rec.calls, want) {
		t.Errorf("calls %q, want %q", rec.calls, want)
	}
}

func TestAddInterceptClientOutsideWasm(t *testing.T) {
	if err := AddInterceptClient("app-*"); !errors.Is(err, ErrNotAvailable) {
		t.Errorf("got %v", err)
	}
}

func TestAddInterceptFilterOutsideWasm(t *testing.T) {
	if err := AddInterceptFilter(FilterPublishInbound|FilterPublishOutbound, "a/#"); !errors.Is(err, ErrNotAvailable) {
		t.Errorf("got %v", err)
	}
}

// TestInterceptPublishAllocations: the per-message path allocates nothing,
// neither for a no-op interceptor nor for one stamping a user property and
// replacing the payload.
func TestInterceptPublishAllocations(t *testing.T) {
	rec := messageRecord(1, 1, 0, "a/b", "payload", "k", "v")
	var h hostAPI = nopHost{}
	out := make([]byte, 0, 64)
	for _, tt := range []struct {
		name string
		fn   func(*PublishPacket)
	}{
		{"no-op", func(p *PublishPacket) {}},
		{"changes", func(p *PublishPacket) {
			p.AddUserProperty("stamp", p.ClientID)
			out = append(append(out[:0], p.Payload...), '!')
			p.SetPayload(out)
		}},
	} {
		with(t, Extension{InterceptPublishInbound: tt.fn})
		interceptPublishInbound(h, rec) // the scratch grows once
		if n := testing.AllocsPerRun(1000, func() { interceptPublishInbound(h, rec) }); n != 0 {
			t.Errorf("%s: %v allocations per message", tt.name, n)
		}
	}
}

func BenchmarkInterceptPublish(b *testing.B) {
	rec := messageRecord(1, 1, 0, "devices/d1/temp", strings.Repeat("x", 1024), "k", "v")
	var h hostAPI = nopHost{}
	payload := make([]byte, 1024)
	for _, bb := range []struct {
		name string
		fn   func(*PublishPacket)
	}{
		{"noop", func(*PublishPacket) {}},
		{"payload1KiB", func(p *PublishPacket) { p.SetPayload(payload) }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			old := ext
			ext = Extension{InterceptPublishInbound: bb.fn}
			defer func() { ext = old }()
			for i := 0; i < b.N; i++ {
				if interceptPublishInbound(h, rec) != 0 {
					b.Fatal("not NEXT")
				}
			}
		})
	}
}

// TestDecodeInterceptRecordsCutShort: every record cut at every length
// decodes (as an older, shorter record) or fails cleanly, never panics.
func TestDecodeInterceptRecordsCutShort(t *testing.T) {
	recs := map[string][]byte{
		"message": messageRecord(2, 1, 1, "a/b", "hello", "k", "v"),
		"connack": makeRecord(kindConnack, []byte{0, 1, 5, 0}, str("c1"), str("u"), str("r"), propsField("k", "v")),
		"subscription": makeRecord(kindSubscription, []byte{1, 2, 5, 1}, u32(7), str("c1"), str("u"), str("f/#"),
			propsField("k", "v")),
		"disconnect": makeRecord(kindDisconnect, []byte{1, 0x8E, 5, 0}, str("c1"), str("u"), str("r"), propsField("k", "v")),
	}
	for name, rec := range recs {
		if _, err := decodeAny(rec); err != nil {
			t.Fatalf("%s: whole record: %v", name, err)
		}
		for n := headerSize; n < len(rec); n++ {
			short := append([]byte(nil), rec[:n]...)
			binary.LittleEndian.PutUint32(short, uint32(n))
			_, _ = decodeAny(short)
		}
		// A property count larger than the record fails without allocating.
		bad := append([]byte(nil), rec...)
		binary.LittleEndian.PutUint32(bad[len(bad)-len(propsField("k", "v")):], 0x7fffffff)
		if name != "message" {
			if _, err := decodeAny(bad); err == nil {
				t.Errorf("%s: impossible property count decoded", name)
			}
		}
	}
}
