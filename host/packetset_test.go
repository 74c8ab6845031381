package host

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// memoryModule instantiates a module that is only an exported memory of
// two pages, for calling host function bodies directly.
func memoryModule(t *testing.T) api.Module {
	t.Helper()
	bin := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00,
		0x05, 0x03, 0x01, 0x00, 0x02, // memory section: one memory, min 2 pages
		0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00} // export "memory"
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	mod, err := rt.Instantiate(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	return mod
}

// TestPacketSetChecks calls packet_set and packet_set_int's bodies with the
// changes ABI.md allows and refuses: a refused one answers its status, names
// the field and why in callOut.bad (which invokeFor makes an invalid
// answer), and stages nothing.
func TestPacketSetChecks(t *testing.T) {
	mod := memoryModule(t)
	const (
		inbound  = abi.CallbackInterceptPublishInbound
		outbound = abi.CallbackInterceptPublishOutbound
		connect  = abi.CallbackInterceptConnect
		sub      = abi.CallbackInterceptSubscribe
		connack  = abi.CallbackInterceptConnack
	)
	props := abi.EncodeProperties(nil, []abi.Pair{{Key: "k", Value: "v"}})
	tests := []struct {
		name  string
		cb    abi.Callback
		pkt   packetState
		field abi.Field
		text  string // packet_set's argument, unless isInt
		n     int64  // packet_set_int's
		isInt bool
		want  int32
		bad   string // the whole error when refused
		ch    packetChange
	}{
		{"topic", inbound, packetState{}, abi.FieldTopic, "a/b", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldTopic, s: "a/b"}},
		{"topic outbound", outbound, packetState{}, abi.FieldTopic, "x", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldTopic, s: "x"}},
		{"topic wildcard", inbound, packetState{}, abi.FieldTopic, "a/+", 0, false, abi.StatusInvalidArgument,
			`packet_set topic: "a/+" has a wildcard`, packetChange{}},
		{"topic $SYS", inbound, packetState{}, abi.FieldTopic, "$SYS/broker/clients/connected", 0, false, abi.StatusInvalidArgument,
			`packet_set topic: "$SYS/broker/clients/connected" starts with $ (topics reserved for the broker)`, packetChange{}},
		{"will topic $", connect, packetState{will: true}, abi.FieldWillTopic, "$x", 0, false, abi.StatusInvalidArgument,
			`packet_set will_topic: "$x" starts with $ (topics reserved for the broker)`, packetChange{}},
		{"topic empty", inbound, packetState{}, abi.FieldTopic, "", 0, false, abi.StatusInvalidArgument,
			"packet_set topic: empty topic name", packetChange{}},
		{"topic NUL", inbound, packetState{}, abi.FieldTopic, "a\x00b", 0, false, abi.StatusInvalidArgument,
			"packet_set topic: contains U+0000", packetChange{}},
		{"topic bad UTF-8", inbound, packetState{}, abi.FieldTopic, "a\xff", 0, false, abi.StatusInvalidArgument,
			"packet_set topic: not valid UTF-8", packetChange{}},
		{"topic too long", inbound, packetState{}, abi.FieldTopic, strings.Repeat("t", 65536), 0, false, abi.StatusInvalidArgument,
			"packet_set topic: 65536 bytes, at most 65535", packetChange{}},
		{"payload", inbound, packetState{}, abi.FieldPayload, "hello", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldPayload, b: []byte("hello")}},
		{"empty payload", outbound, packetState{}, abi.FieldPayload, "", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldPayload}},
		{"response topic removed", inbound, packetState{}, abi.FieldResponseTopic, "", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldResponseTopic}},
		{"response topic wildcard", inbound, packetState{}, abi.FieldResponseTopic, "r/#", 0, false, abi.StatusInvalidArgument,
			`packet_set response_topic: "r/#" has a wildcard`, packetChange{}},
		{"user properties", outbound, packetState{}, abi.FieldUserProperties, string(props), 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldUserProperties, props: []broker.UserProperty{{Key: "k", Value: "v"}}}},
		{"user properties garbage", inbound, packetState{}, abi.FieldUserProperties, "\x05\x00\x00\x00", 0, false, abi.StatusInvalidArgument,
			"packet_set user_properties: not a list<str, str>", packetChange{}},
		{"user property NUL", connack, packetState{}, abi.FieldUserProperties,
			string(abi.EncodeProperties(nil, []abi.Pair{{Key: "k\x00", Value: "v"}})), 0, false, abi.StatusInvalidArgument,
			`packet_set user_properties: key "k\x00": contains U+0000`, packetChange{}},
		{"reason string", connack, packetState{}, abi.FieldReasonString, "hi", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldReasonString, s: "hi"}},
		{"reason string too long", connack, packetState{}, abi.FieldReasonString, strings.Repeat("r", 1025), 0, false, abi.StatusTooLarge,
			"packet_set reason_string: 1025 bytes, at most 1024", packetChange{}},
		{"correlation data too long", inbound, packetState{}, abi.FieldCorrelationData, strings.Repeat("c", 65536), 0, false, abi.StatusTooLarge,
			"packet_set correlation_data: 65536 bytes, at most 65535", packetChange{}},
		{"outbound may not set content type", outbound, packetState{}, abi.FieldContentType, "x", 0, false, abi.StatusInvalidArgument,
			"packet_set content_type: intercept_publish_outbound may not change it", packetChange{}},
		{"unknown field", inbound, packetState{}, abi.Field(99), "x", 0, false, abi.StatusInvalidArgument,
			"packet_set field 99: no such field", packetChange{}},
		{"field 0", inbound, packetState{}, 0, "x", 0, false, abi.StatusInvalidArgument,
			"packet_set field 0: no such field", packetChange{}},
		{"int through packet_set", inbound, packetState{}, abi.FieldQoS, "x", 0, false, abi.StatusInvalidArgument,
			"packet_set qos: wrong function: set it with packet_set_int", packetChange{}},
		{"text through packet_set_int", inbound, packetState{}, abi.FieldTopic, "", 1, true, abi.StatusInvalidArgument,
			"packet_set_int topic: wrong function: set it with packet_set", packetChange{}},

		{"qos down", inbound, packetState{qos: 2}, abi.FieldQoS, "", 1, true, abi.StatusOK, "",
			packetChange{field: abi.FieldQoS, n: 1}},
		{"qos same", inbound, packetState{qos: 1}, abi.FieldQoS, "", 1, true, abi.StatusOK, "",
			packetChange{field: abi.FieldQoS, n: 1}},
		{"qos up", inbound, packetState{qos: 0}, abi.FieldQoS, "", 1, true, abi.StatusInvalidArgument,
			"packet_set_int qos: QoS 1 above the message's 0: a QoS may only go down", packetChange{}},
		{"qos outbound", outbound, packetState{qos: 2}, abi.FieldQoS, "", 0, true, abi.StatusInvalidArgument,
			"packet_set_int qos: intercept_publish_outbound may not change it", packetChange{}},
		{"subscription qos up", sub, packetState{}, abi.FieldQoS, "", 2, true, abi.StatusOK, "",
			packetChange{field: abi.FieldQoS, n: 2}},
		{"qos 3", sub, packetState{}, abi.FieldQoS, "", 3, true, abi.StatusInvalidArgument,
			"packet_set_int qos: 3 out of range 0-2", packetChange{}},
		{"negative", connect, packetState{}, abi.FieldKeepalive, "", -1, true, abi.StatusInvalidArgument,
			"packet_set_int keepalive: -1 out of range 0-65535", packetChange{}},
		{"receive maximum 0", connect, packetState{}, abi.FieldReceiveMaximum, "", 0, true, abi.StatusInvalidArgument,
			"packet_set_int receive_maximum: 0 out of range 1-65535", packetChange{}},
		{"session expiry", connect, packetState{}, abi.FieldSessionExpiry, "", 1<<32 - 1, true, abi.StatusOK, "",
			packetChange{field: abi.FieldSessionExpiry, n: 1<<32 - 1}},
		{"will qos without a will", connect, packetState{}, abi.FieldWillQoS, "", 1, true, abi.StatusInvalidArgument,
			"packet_set_int will_qos: the CONNECT has no will (set will_topic first)", packetChange{}},
		{"will qos", connect, packetState{will: true}, abi.FieldWillQoS, "", 1, true, abi.StatusOK, "",
			packetChange{field: abi.FieldWillQoS, n: 1}},
		{"will payload without a will", connect, packetState{}, abi.FieldWillPayload, "x", 0, false, abi.StatusInvalidArgument,
			"packet_set will_payload: the CONNECT has no will (set will_topic first)", packetChange{}},
		{"will topic removes", connect, packetState{will: true}, abi.FieldWillTopic, "", 0, false, abi.StatusOK, "",
			packetChange{field: abi.FieldWillTopic}},
		{"will topic wildcard", connect, packetState{}, abi.FieldWillTopic, "w/#", 0, false, abi.StatusInvalidArgument,
			`packet_set will_topic: "w/#" has a wildcard`, packetChange{}},
		{"options", sub, packetState{}, abi.FieldSubscriptionOptions, "", 0x0B, true, abi.StatusOK, "",
			packetChange{field: abi.FieldSubscriptionOptions, n: 0x0B}},
		{"retain handling 3", sub, packetState{}, abi.FieldSubscriptionOptions, "", 0x0C, true, abi.StatusInvalidArgument,
			"packet_set_int subscription_options: 12 out of range 0-11", packetChange{}},
		{"retain handling 3 and no local", sub, packetState{}, abi.FieldSubscriptionOptions, "", 0x0D, true, abi.StatusInvalidArgument,
			"packet_set_int subscription_options: 13 out of range 0-11", packetChange{}},
		{"no local on shared", sub, packetState{shared: true}, abi.FieldSubscriptionOptions, "", 1, true, abi.StatusInvalidArgument,
			"packet_set_int subscription_options: no local on a shared subscription", packetChange{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &instance{cb: tt.cb, pkt: tt.pkt}
			var got int32
			if tt.isInt {
				got = hfPacketSetInt(in, mod, []uint64{uint64(tt.field), uint64(tt.n)})
			} else {
				const at = 64
				if !mod.Memory().Write(at, []byte(tt.text)) {
					t.Fatal("text does not fit the test memory")
				}
				got = hfPacketSet(in, mod, []uint64{uint64(tt.field), at, uint64(len(tt.text))})
			}
			if got != tt.want {
				t.Errorf("status %d, want %d (bad: %v)", got, tt.want, in.out.bad)
			}
			if tt.bad != "" {
				if in.out.bad == nil || in.out.bad.Error() != tt.bad {
					t.Errorf("bad = %v, want %q", in.out.bad, tt.bad)
				}
				if len(in.out.packet) != 0 {
					t.Errorf("a refused change was staged: %+v", in.out.packet)
				}
				return
			}
			if in.out.bad != nil || len(in.out.packet) != 1 || !reflect.DeepEqual(in.out.packet[0], tt.ch) {
				t.Errorf("staged %+v (bad %v), want %+v", in.out.packet, in.out.bad, tt.ch)
			}
		})
	}
}

// TestPacketSetWillTopicAddsWill: a will field is accepted after will_topic
// added a will, refused again after will_topic removed it; the first
// refusal is the one the call's error names; several changes of a field
// are applied in order, so the last wins.
func TestPacketSetWillTopicAddsWill(t *testing.T) {
	mod := memoryModule(t)
	in := &instance{cb: abi.CallbackInterceptConnect}
	set := func(f abi.Field, s string) int32 {
		mod.Memory().Write(0, []byte(s))
		return hfPacketSet(in, mod, []uint64{uint64(f), 0, uint64(len(s))})
	}
	if st := set(abi.FieldWillTopic, "will/a"); st != abi.StatusOK {
		t.Fatal(st)
	}
	if st := hfPacketSetInt(in, mod, []uint64{uint64(abi.FieldWillRetain), 1}); st != abi.StatusOK {
		t.Fatalf("will_retain after will_topic: %d (%v)", st, in.out.bad)
	}
	set(abi.FieldKeepalive, "x") // refused first: named by the error
	set(abi.FieldWillTopic, "")
	if st := set(abi.FieldWillPayload, "p"); st != abi.StatusInvalidArgument {
		t.Errorf("will_payload after the will was removed: %d", st)
	}
	if in.out.bad == nil || !strings.HasPrefix(in.out.bad.Error(), "packet_set keepalive:") {
		t.Errorf("bad = %v", in.out.bad)
	}
	c := &broker.Connect{ClientID: "c"}
	applyConnect(c, in.out.packet)
	if c.Will != nil {
		t.Errorf("will %+v: the last will_topic removed it", c.Will)
	}
	applyConnect(c, in.out.packet[:2])
	if c.Will == nil || c.Will.Topic != "will/a" || !c.Will.Retain {
		t.Errorf("will %+v", c.Will)
	}
}

func TestAddInterceptFilterChecks(t *testing.T) {
	mod := memoryModule(t)
	in := &instance{cb: abi.CallbackStart}
	add := func(mask uint32, f string) int32 {
		mod.Memory().Write(0, []byte(f))
		return hfAddInterceptFilter(in, mod, []uint64{uint64(mask), 0, uint64(len(f))})
	}
	inb, outb := filterBits[filterInbound], filterBits[filterOutbound]
	for _, tt := range []struct {
		mask uint32
		f    string
		want int32
	}{
		{inb, "legacy/#", abi.StatusOK},
		{inb | outb, "both/+", abi.StatusOK},
		{outb, "a/#/b", abi.StatusInvalidArgument},
		{outb, "", abi.StatusInvalidArgument},
		{0, "a", abi.StatusInvalidArgument},
		{abi.Callbacks[abi.CallbackInterceptSubscribe].Bit, "a", abi.StatusInvalidArgument},
		{inb | abi.Callbacks[abi.CallbackAuthorizePublish].Bit, "a", abi.StatusInvalidArgument},
	} {
		if got := add(tt.mask, tt.f); got != tt.want {
			t.Errorf("add_intercept_filter(%#x, %q) = %d, want %d", tt.mask, tt.f, got, tt.want)
		}
	}
	want := [2][]string{{"legacy/#", "both/+"}, {"both/+"}}
	if !reflect.DeepEqual(in.out.interceptFilters, want) {
		t.Errorf("filters %q, want %q", in.out.interceptFilters, want)
	}
	for i := len(in.out.interceptFilters[filterOutbound]); i < abi.MaxPublishFilters; i++ {
		if add(outb, "f") != abi.StatusOK {
			t.Fatal(i)
		}
	}
	if got := add(inb|outb, "g"); got != abi.StatusTooLarge {
		t.Errorf("filter %d: %d, want TOO_LARGE", abi.MaxPublishFilters+1, got)
	}
	if n := len(in.out.interceptFilters[filterInbound]); n != 2 {
		t.Errorf("a refused filter was added to the inbound list: %d", n)
	}
}

func TestAddInterceptClientChecks(t *testing.T) {
	mod := memoryModule(t)
	in := &instance{cb: abi.CallbackStart}
	add := func(p string) int32 {
		mod.Memory().Write(0, []byte(p))
		return hfAddInterceptClient(in, mod, []uint64{0, uint64(len(p))})
	}
	for _, tt := range []struct {
		name string
		p    string
		want int32
	}{
		{"exact", "dashboard", abi.StatusOK},
		{"prefix", "sensor-*", abi.StatusOK},
		{"every client", "*", abi.StatusOK},
		{"empty", "", abi.StatusInvalidArgument},
		{"star inside", "a*b", abi.StatusInvalidArgument},
		{"star first", "*-x", abi.StatusInvalidArgument},
		{"two stars", "a**", abi.StatusInvalidArgument},
		{"not UTF-8", "a\xff", abi.StatusInvalidArgument},
		{"U+0000", "a\x00b", abi.StatusInvalidArgument},
		{"65,535 bytes", strings.Repeat("c", 65535), abi.StatusOK},
		{"65,536 bytes", strings.Repeat("c", 65536), abi.StatusInvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := add(tt.p); got != tt.want {
				t.Errorf("add_intercept_client(%.20q) = %d, want %d", tt.p, got, tt.want)
			}
		})
	}
	// Longer than the guest's memory: refused before reading, no trap.
	if got := hfAddInterceptClient(in, mod, []uint64{0, 1 << 20}); got != abi.StatusInvalidArgument {
		t.Errorf("1 MiB pattern: %d, want INVALID_ARGUMENT", got)
	}
	want := []string{"dashboard", "sensor-*", "*", strings.Repeat("c", 65535)}
	if !reflect.DeepEqual(in.out.interceptClients, want) {
		t.Errorf("patterns %.40q, want %.40q", in.out.interceptClients, want)
	}
	for i := len(in.out.interceptClients); i < abi.MaxPublishFilters; i++ {
		if add("c") != abi.StatusOK {
			t.Fatal(i)
		}
	}
	if got := add("d"); got != abi.StatusTooLarge {
		t.Errorf("pattern %d: %d, want TOO_LARGE", abi.MaxPublishFilters+1, got)
	}
	if n := len(in.out.interceptClients); n != abi.MaxPublishFilters {
		t.Errorf("%d patterns kept, want %d", n, abi.MaxPublishFilters)
	}
}

func TestClientPatterns(t *testing.T) {
	for _, tt := range []struct {
		name     string
		patterns []string
		match    []string
		miss     []string
	}{
		{"none: every client", nil, []string{"a", ""}, nil},
		{"exact", []string{"dashboard"}, []string{"dashboard"}, []string{"dashboard-2", "dash", ""}},
		{"prefix", []string{"sensor-*"}, []string{"sensor-", "sensor-1"}, []string{"sensor", "x-sensor-1"}},
		{"star: every client", []string{"app-*", "*"}, []string{"x", ""}, nil},
		{"several", []string{"a-*", "b", "c-*"}, []string{"a-1", "b", "c-"}, []string{"b-1", "a", "c"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClientPatterns(tt.patterns)
			for _, id := range tt.match {
				if !c.match(id) {
					t.Errorf("%q does not match %q", id, tt.patterns)
				}
			}
			for _, id := range tt.miss {
				if c.match(id) {
					t.Errorf("%q matches %q", id, tt.patterns)
				}
			}
			if n := testing.AllocsPerRun(100, func() { c.match("sensor-42") }); n != 0 {
				t.Errorf("match allocates %v times", n)
			}
		})
	}
	var zero clientPatterns
	if !zero.match("anyone") {
		t.Error("the zero clientPatterns matches no client")
	}
}
