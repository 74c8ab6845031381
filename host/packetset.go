package host

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/api"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/topic"
)

// The host functions of the interceptors (ABI.md section 5, "Changing the
// packet"): packet_set and packet_set_int stage a change of the packet
// being intercepted; at start, add_intercept_filter narrows the publish
// interceptors to topics and add_intercept_client the outbound one to
// subscribers.
//
// Every change is checked when the guest makes it, against the field's row
// of abi.Fields and the packet as the interceptor got it (instance.pkt). A
// refused change answers INVALID_ARGUMENT (TOO_LARGE for a size) and also
// makes the whole call an invalid answer (callOut.bad, turned into
// ErrInvalidAnswer by invokeFor): the instance is discarded, the failure
// counted, and the packet stays as it was before this interceptor. The
// changes are copied out of guest memory and applied (intercept.go) only
// after the call answered validly.

// packetChange is one change an interceptor staged: an int field's n, a
// text field's s, a bytes field's b (nil when empty), or user properties.
type packetChange struct {
	field abi.Field
	n     uint64
	s     string
	b     []byte
	props []broker.UserProperty
}

// packetState is what packet_set checks a change against, from the record
// the interceptor got: the message's QoS (a QoS may only go down), whether
// the CONNECT has a will, whether the subscription is shared.
type packetState struct {
	qos    uint8
	will   bool
	shared bool
}

// packetStateOf reads rec's packetState. Like encode, it type-switches, so
// that a record on the caller's stack stays there.
func packetStateOf(rec record) packetState {
	switch r := rec.(type) {
	case *abi.MessageRecord:
		return packetState{qos: r.QoS}
	case *abi.ConnectRecord:
		return packetState{will: r.Flags&abi.ConnectHasWill != 0}
	case *abi.SubscriptionRecord:
		return packetState{shared: r.Flags&abi.SubscribeShared != 0}
	case *laterMinor:
		return packetStateOf(r.rec)
	}
	return packetState{}
}

// maxMQTTBinary is the most an MQTT string or binary field holds.
const maxMQTTBinary = 65535

// refuse records a refused change (the first one names the call's
// failure) and returns st.
func refuse(in *instance, st int32, fn string, f abi.Field, format string, args ...any) int32 {
	in.out.dirty = true
	if in.out.bad == nil {
		in.out.bad = fmt.Errorf("%s %s: %s", fn, fieldName(f), fmt.Sprintf(format, args...))
	}
	return st
}

// fieldName names a field for errors, known or not.
func fieldName(f abi.Field) string {
	if f > 0 && f < abi.NumFields {
		return f.String()
	}
	return fmt.Sprintf("field %d", uint8(f))
}

// stage adds a checked change.
func stage(in *instance, ch packetChange) int32 {
	in.out.dirty = true
	in.out.packet = append(in.out.packet, ch)
	return abi.StatusOK
}

// checkField checks that field number v exists, may be changed by the
// running interceptor and is of the function's kind (int for
// packet_set_int).
func checkField(in *instance, fn string, v uint64, isInt bool) (abi.Field, int32) {
	if v == 0 || v >= uint64(abi.NumFields) {
		return 0, refuse(in, abi.StatusInvalidArgument, fn, abi.Field(min(v, 255)), "no such field")
	}
	f := abi.Field(v)
	info := &abi.Fields[f]
	if !info.In.Has(in.cb) {
		return 0, refuse(in, abi.StatusInvalidArgument, fn, f, "%s may not change it", abi.Callbacks[in.cb].Name)
	}
	if (info.Type == abi.FieldInt) != isInt {
		want := "packet_set"
		if info.Type == abi.FieldInt {
			want = "packet_set_int"
		}
		return 0, refuse(in, abi.StatusInvalidArgument, fn, f, "wrong function: set it with %s", want)
	}
	return f, abi.StatusOK
}

// hasWill reports whether the CONNECT being intercepted has a will, after
// the changes staged so far (will_topic adds or removes one).
func hasWill(in *instance) bool {
	will := in.pkt.will
	for i := range in.out.packet {
		if ch := &in.out.packet[i]; ch.field == abi.FieldWillTopic {
			will = ch.s != ""
		}
	}
	return will
}

// mqttString says what keeps s from being an MQTT UTF-8 string, "" if
// nothing.
func mqttString(s string) string {
	switch {
	case len(s) > maxMQTTBinary:
		return fmt.Sprintf("%d bytes, at most %d", len(s), maxMQTTBinary)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "contains U+0000"
	}
	return ""
}

// topicName says what keeps s from being a topic name, "" if nothing.
func topicName(s string) string {
	switch {
	case s == "":
		return "empty topic name"
	case strings.ContainsAny(s, "+#"):
		return fmt.Sprintf("%q has a wildcard", s)
	}
	return mqttString(s)
}

// clientTopicName is topicName for the topic of a client's message: one
// starting with "$" is the broker's own ($SYS/...), which no client
// publishes to, nor an interceptor on a client's behalf.
func clientTopicName(s string) string {
	if strings.HasPrefix(s, "$") {
		return fmt.Sprintf("%q starts with $ (topics reserved for the broker)", s)
	}
	return topicName(s)
}

func hfPacketSet(in *instance, mod api.Module, stack []uint64) int32 {
	const fn = "packet_set"
	f, st := checkField(in, fn, uint64(uint32(stack[0])), false)
	if st != abi.StatusOK {
		return st
	}
	ptr, n := uint32(stack[1]), uint32(stack[2])
	limit := uint32(abi.MaxString)
	switch {
	case f == abi.FieldReasonString:
		limit = abi.MaxReason
	case f == abi.FieldPayload, abi.Fields[f].Type == abi.FieldProperties:
		limit = abi.MaxMessage
	case abi.Fields[f].Type == abi.FieldBytes:
		limit = maxMQTTBinary
	}
	if n > limit {
		return refuse(in, abi.StatusTooLarge, fn, f, "%d bytes, at most %d", n, limit)
	}
	v, ok := mod.Memory().Read(ptr, n)
	if !ok { // a guest bug: trap, as read does
		panic(fmt.Errorf("host function %s: memory [%d, %d) outside the guest's %d bytes", fn, ptr, uint64(ptr)+uint64(n), mod.Memory().Size()))
	}
	switch abi.Fields[f].Type {
	case abi.FieldBytes:
		if f == abi.FieldWillPayload && !hasWill(in) {
			return refuse(in, abi.StatusInvalidArgument, fn, f, "the CONNECT has no will (set will_topic first)")
		}
		ch := packetChange{field: f}
		if len(v) > 0 {
			ch.b = append([]byte(nil), v...) // the one copy of a changed payload
		}
		return stage(in, ch)
	case abi.FieldProperties:
		ps, err := abi.DecodeProperties(v)
		if err != nil {
			return refuse(in, abi.StatusInvalidArgument, fn, f, "not a list<str, str>")
		}
		for _, p := range ps {
			if why := mqttString(p.Key); why != "" {
				return refuse(in, abi.StatusInvalidArgument, fn, f, "key %q: %s", p.Key, why)
			}
			if why := mqttString(p.Value); why != "" {
				return refuse(in, abi.StatusInvalidArgument, fn, f, "value of %q: %s", p.Key, why)
			}
		}
		var props []broker.UserProperty
		if len(ps) > 0 {
			props = brokerProps(ps)
		}
		return stage(in, packetChange{field: f, props: props})
	}
	s := string(v)
	why := mqttString(s)
	switch {
	case why != "":
	case f == abi.FieldTopic, f == abi.FieldWillTopic && s != "":
		why = clientTopicName(s)
	case f == abi.FieldResponseTopic && s != "":
		why = topicName(s)
	}
	if why != "" {
		return refuse(in, abi.StatusInvalidArgument, fn, f, "%s", why)
	}
	return stage(in, packetChange{field: f, s: s})
}

func hfPacketSetInt(in *instance, _ api.Module, stack []uint64) int32 {
	const fn = "packet_set_int"
	f, st := checkField(in, fn, uint64(uint32(stack[0])), true)
	if st != abi.StatusOK {
		return st
	}
	v, info := stack[1], &abi.Fields[f]
	if v < info.Min || v > info.Max {
		return refuse(in, abi.StatusInvalidArgument, fn, f, "%d out of range %d-%d", int64(v), info.Min, info.Max)
	}
	switch f {
	case abi.FieldQoS:
		if in.cb == abi.CallbackInterceptPublishInbound && v > uint64(in.pkt.qos) {
			return refuse(in, abi.StatusInvalidArgument, fn, f, "QoS %d above the message's %d: a QoS may only go down", v, in.pkt.qos)
		}
	case abi.FieldWillQoS, abi.FieldWillRetain, abi.FieldWillDelay:
		if !hasWill(in) {
			return refuse(in, abi.StatusInvalidArgument, fn, f, "the CONNECT has no will (set will_topic first)")
		}
	case abi.FieldSubscriptionOptions: // its Max, 0x0B, keeps retain handling below 3
		if in.pkt.shared && v&abi.SubscriptionNoLocal != 0 {
			return refuse(in, abi.StatusInvalidArgument, fn, f, "no local on a shared subscription")
		}
	}
	return stage(in, packetChange{field: f, n: v})
}

func hfAddInterceptFilter(in *instance, mod api.Module, stack []uint64) int32 {
	mask, n := uint32(stack[0]), uint32(stack[2])
	if mask == 0 || mask&^(filterBits[filterInbound]|filterBits[filterOutbound]) != 0 {
		return abi.StatusInvalidArgument
	}
	if n > abi.MaxString {
		return abi.StatusTooLarge
	}
	for i, bit := range filterBits {
		if mask&bit != 0 && len(in.out.interceptFilters[i]) >= abi.MaxPublishFilters {
			return abi.StatusTooLarge
		}
	}
	f := string(read(mod, uint32(stack[1]), n))
	if !topic.ValidFilter(f) || mqttString(f) != "" {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	for i, bit := range filterBits {
		if mask&bit != 0 {
			in.out.interceptFilters[i] = append(in.out.interceptFilters[i], f)
		}
	}
	return abi.StatusOK
}

// hfAddInterceptClient is add_intercept_client (ABI.md section 5): it
// stages one client id pattern narrowing intercept_publish_outbound, an
// exact client id or a prefix followed by a final "*". A pattern that is
// empty, has a "*" before its end, or is no MQTT string (longer than
// 65,535 bytes, not UTF-8, U+0000) is INVALID_ARGUMENT; a pattern beyond
// abi.MaxPublishFilters is TOO_LARGE. Called in propolis_start only.
func hfAddInterceptClient(in *instance, mod api.Module, stack []uint64) int32 {
	n := uint32(stack[1])
	if n == 0 || n > maxMQTTBinary {
		return abi.StatusInvalidArgument
	}
	if len(in.out.interceptClients) >= abi.MaxPublishFilters {
		return abi.StatusTooLarge
	}
	p := string(read(mod, uint32(stack[0]), n))
	if clientPattern(p) != "" {
		return abi.StatusInvalidArgument
	}
	in.out.dirty = true
	in.out.interceptClients = append(in.out.interceptClients, p)
	return abi.StatusOK
}

// clientPattern says what keeps p from being an add_intercept_client
// pattern, "" if nothing.
func clientPattern(p string) string {
	if p == "" {
		return "empty pattern"
	}
	if i := strings.IndexByte(p, '*'); i >= 0 && i != len(p)-1 {
		return fmt.Sprintf("%q has a * before its end", p)
	}
	return mqttString(p)
}
