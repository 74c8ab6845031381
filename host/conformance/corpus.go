package conformance

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/propolis-mqtt/propolis/abi"
)

// input is one generated call: a callback, its record (nil for
// propolis_tick) and, for a record of a later minor version, the extra
// trailing bytes the module must skip.
type input struct {
	n     int // its index in the corpus, from 0
	cb    abi.Callback
	rec   interface{ Encode([]byte) []byte }
	extra []byte
	desc  string
}

// String names the input for a message: "#17 authenticate: CONNECT v5
// client_id=... (+12 bytes of ABI 1.3)".
func (in *input) String() string {
	s := fmt.Sprintf("input #%d %s: %s", in.n, abi.Callbacks[in.cb].Name, in.desc)
	if len(in.extra) > 0 {
		s += fmt.Sprintf(" (+%d trailing bytes of ABI %d.%d)", len(in.extra), abi.Major, abi.Minor+1)
	}
	return s
}

// maxMQTT is the longest MQTT string or binary field, in bytes.
const maxMQTT = 65535

// manyProperties is how many user properties the "many" shape carries.
const manyProperties = 200

// gen makes the corpus, from one seeded source: the same seed gives the
// same inputs.
type gen struct {
	r *rand.Rand
	// pool is the clients the corpus is about: every record of a normal
	// shape names one of them, so that the corpus is sessions (a client's
	// CONNECT, then its PUBLISHes, SUBSCRIBEs, events and messages) and a
	// module keeping per-client state in the instance between callbacks
	// answers differently when the order changes.
	pool []client
}

// client is one client of the pool.
type client struct{ id, username string }

// poolSize is how many clients the corpus is about.
const poolSize = 5

func newGen(seed uint64) *gen {
	g := &gen{r: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	for range poolSize {
		g.pool = append(g.pool, client{id: "kit-" + g.word(1+g.r.IntN(12)), username: "user-" + g.word(4)})
	}
	return g
}

// who draws a client of the pool: its client id and user name.
func (g *gen) who() (string, string) {
	c := g.pool[g.r.IntN(len(g.pool))]
	return c.id, c.username
}

// corpus returns n inputs for each callback in cbs, interleaved in a
// seeded order. Each callback's first inputs are its edge cases, in turn;
// the rest are random mixes of them. Every fifth record is one of a later
// minor version, with extra trailing bytes.
func (g *gen) corpus(cbs []abi.Callback, n int) []*input {
	var all []*input
	for _, cb := range cbs {
		for i := 0; i < n; i++ {
			in := &input{cb: cb}
			in.rec, in.desc = g.record(cb, i)
			if in.rec != nil && i%5 == 4 {
				in.extra = g.bytes(8 + g.r.IntN(25))
			}
			all = append(all, in)
		}
	}
	g.r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for i, in := range all {
		in.n = i
	}
	return all
}

// record makes the i-th record for cb.
func (g *gen) record(cb abi.Callback, i int) (interface{ Encode([]byte) []byte }, string) {
	switch abi.Callbacks[cb].Record {
	case abi.KindConnect:
		return g.connect(i)
	case abi.KindPublish:
		return g.publish(i)
	case abi.KindSubscribe:
		return g.subscribe(i)
	case abi.KindEvent:
		return g.event(i)
	case abi.KindMessage:
		return g.message(cb, i)
	case abi.KindConnack:
		return g.connack(i)
	case abi.KindSubscription:
		return g.subscription(i)
	case abi.KindDisconnect:
		return g.disconnect(i)
	}
	return nil, "no record (a tick)"
}

// shape picks the i-th edge case while i < n, a random one after.
func (g *gen) shape(i, n int) int {
	if i < n {
		return i
	}
	return g.r.IntN(n)
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func (g *gen) word(n int) string {
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(alnum[g.r.IntN(len(alnum))])
	}
	return b.String()
}

func (g *gen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.UintN(256))
	}
	return b
}

// The shapes of a string field.
const (
	strNormal = iota
	strEmpty
	strMax
	strUTF8
	numStrShapes
)

// str makes a client id, user name or similar of a shape.
func (g *gen) str(shape int) string {
	switch shape {
	case strEmpty:
		return ""
	case strMax:
		return g.word(maxMQTT)
	case strUTF8:
		return "bée-日本-" + g.word(4)
	}
	return "kit-" + g.word(1+g.r.IntN(12))
}

// topic makes a topic name of a shape.
func (g *gen) topic(shape int) string {
	switch shape {
	case strEmpty:
		return ""
	case strMax:
		return "kit/" + g.word(maxMQTT-4)
	case strUTF8:
		return "bée/日本/" + g.word(3)
	}
	topics := []string{"kit/a", "sensors/" + g.word(4) + "/temp", "a", "/leading", "trailing/", "$SYS/broker/x", "kit/" + g.word(6) + "/cmd"}
	return topics[g.r.IntN(len(topics))]
}

// filter makes a topic filter of a shape; shared is true for a shared
// subscription's.
func (g *gen) filter(shape int) (string, bool) {
	switch shape {
	case strEmpty:
		return "#", false
	case strMax:
		return "kit/" + g.word(maxMQTT-6) + "/#", false
	case strUTF8:
		return "bée/+/日本", false
	}
	filters := []string{"kit/#", "+", "kit/+/x", "sensors/+/temp", "#", "$share/kit/kit/#", "$share/g/+", "$SYS/#"}
	f := filters[g.r.IntN(len(filters))]
	return f, strings.HasPrefix(f, "$share/")
}

func (g *gen) props(shape int) []abi.Pair {
	switch shape {
	case 0:
		return nil
	case 1:
		return []abi.Pair{{Key: "k", Value: "v"}, {Key: "k", Value: "again"}, {Key: "", Value: ""}}
	}
	ps := make([]abi.Pair, manyProperties)
	for i := range ps {
		ps[i] = abi.Pair{Key: "key-" + g.word(3), Value: g.word(g.r.IntN(40))}
	}
	return ps
}

func (g *gen) proto() uint8 {
	if g.r.IntN(2) == 0 {
		return 4
	}
	return 5
}

// quote shows a string for a description, shortening a long one.
func quote(s string) string {
	if len(s) > 24 {
		return fmt.Sprintf("%q... (%d bytes)", s[:16], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// The edge cases of a CONNECT, in order.
const (
	connNormal = iota
	connEmptyID
	connMaxID
	connMaxUser
	connMaxPassword
	connNonUTF8Password
	connEmptyPassword
	connNoCredentials
	connWill
	connManyProps
	connV311
	connTLS
	connUTF8
	numConnShapes
)

func (g *gen) connect(i int) (*abi.ConnectRecord, string) {
	shape := g.shape(i, numConnShapes)
	c := &abi.ConnectRecord{ProtocolVersion: g.proto(), Flags: abi.ConnectCleanStart | abi.ConnectHasUsername | abi.ConnectHasPassword,
		Keepalive: uint16(g.r.IntN(300)), Password: []byte("pw-" + g.word(8)),
		RemoteAddr: fmt.Sprintf("127.0.0.1:%d", 1024+g.r.IntN(60000)), Listener: "tcp"}
	c.ClientID, c.Username = g.who()
	switch shape {
	case connEmptyID:
		c.ClientID = ""
	case connMaxID:
		c.ClientID = g.str(strMax)
	case connMaxUser:
		c.Username = g.str(strMax)
	case connMaxPassword:
		c.Password = g.bytes(maxMQTT)
	case connNonUTF8Password:
		c.Password = []byte{0xff, 0xfe, 0xc3, 0x28, 0x00, 0xa0, 0xa1, 0xed, 0xa0, 0x80}
	case connEmptyPassword:
		c.Password = []byte{}
	case connNoCredentials:
		c.Flags &^= abi.ConnectHasUsername | abi.ConnectHasPassword
		c.Username, c.Password = "", nil
	case connWill:
		c.Flags |= abi.ConnectHasWill
		if g.r.IntN(2) == 0 {
			c.Flags |= abi.ConnectWillRetain
		}
		c.WillQoS = uint8(g.r.IntN(3))
		c.WillTopic, c.WillPayload = g.topic(strNormal), g.bytes(g.r.IntN(64))
	case connManyProps:
		c.ProtocolVersion = 5
		c.UserProperties = g.props(2)
	case connV311:
		c.ProtocolVersion = 4
	case connTLS:
		c.Flags |= abi.ConnectTLS
		c.Listener = "tls"
		c.TLSSubject = "CN=" + c.Username + ",O=kit"
		c.TLSSANs = []string{c.Username + ".example", "127.0.0.1"}
	case connUTF8:
		c.ClientID, c.Username = g.str(strUTF8), g.str(strUTF8)
	}
	if c.ProtocolVersion == 5 {
		c.SessionExpiry = uint32(g.r.IntN(3600))
		c.ReceiveMaximum = uint16(g.r.IntN(100))
		if c.Flags&abi.ConnectHasWill != 0 {
			c.WillDelay = uint32(g.r.IntN(60))
		}
		if shape != connManyProps && c.UserProperties == nil {
			c.UserProperties = g.props(g.r.IntN(2))
		}
	} else {
		c.UserProperties = nil
	}
	d := fmt.Sprintf("CONNECT %s client_id=%s", protoName(c.ProtocolVersion), quote(c.ClientID))
	if c.Flags&abi.ConnectHasUsername != 0 {
		d += " username=" + quote(c.Username)
	}
	if c.Flags&abi.ConnectHasPassword != 0 {
		d += " password=" + describeBytes(c.Password)
	}
	if c.Flags&abi.ConnectHasWill != 0 {
		d += fmt.Sprintf(" will on %s qos %d", quote(c.WillTopic), c.WillQoS)
	}
	if c.Flags&abi.ConnectTLS != 0 {
		d += " over TLS"
	}
	if n := len(c.UserProperties); n > 0 {
		d += fmt.Sprintf(" %d user properties", n)
	}
	return c, d
}

func protoName(v uint8) string {
	if v == 5 {
		return "MQTT 5"
	}
	return "MQTT 3.1.1"
}

// describeBytes shows a password or payload: its text when short and
// UTF-8, else its length and first bytes.
func describeBytes(b []byte) string {
	if b == nil {
		return "<none>"
	}
	if len(b) <= 24 && isText(b) {
		return fmt.Sprintf("%q", b)
	}
	if !isText(b) && len(b) <= 24 {
		return fmt.Sprintf("% x (not UTF-8)", b)
	}
	return fmt.Sprintf("<%d bytes>", len(b))
}

func isText(b []byte) bool {
	for _, r := range string(b) {
		if r == 0xfffd || r < 0x20 {
			return false
		}
	}
	return true
}

func (g *gen) publish(i int) (*abi.PublishRecord, string) {
	shape := g.shape(i, numStrShapes+3)
	p := &abi.PublishRecord{QoS: uint8(g.r.IntN(3)), Topic: g.topic(strNormal),
		Payload: []byte("payload-" + g.word(8))}
	p.ClientID, p.Username = g.who()
	switch shape {
	case strEmpty:
		p.ClientID, p.Username, p.Topic, p.Payload = "", "", "", nil
	case strMax:
		p.ClientID, p.Topic = g.str(strMax), g.topic(strMax)
	case strUTF8:
		p.ClientID, p.Username, p.Topic = g.str(strUTF8), g.str(strUTF8), g.topic(strUTF8)
	case numStrShapes:
		p.Flags |= abi.PublishRetain
	case numStrShapes + 1:
		p.Flags |= abi.PublishWill
	case numStrShapes + 2:
		p.Payload = g.bytes(64 << 10)
	}
	d := fmt.Sprintf("PUBLISH qos %d client_id=%s topic=%s payload=%s", p.QoS, quote(p.ClientID), quote(p.Topic), describeBytes(p.Payload))
	if p.Flags&abi.PublishRetain != 0 {
		d += " retained"
	}
	if p.Flags&abi.PublishWill != 0 {
		d += " (a will)"
	}
	return p, d
}

func (g *gen) subscribe(i int) (*abi.SubscribeRecord, string) {
	shape := g.shape(i, numStrShapes+1)
	s := &abi.SubscribeRecord{QoS: uint8(g.r.IntN(3))}
	s.ClientID, s.Username = g.who()
	var shared bool
	switch shape {
	case numStrShapes:
		s.Filter, shared = "$share/kit/sensors/+/temp", true
	default:
		s.Filter, shared = g.filter(shape)
		if shape == strEmpty {
			s.ClientID, s.Username = "", ""
		}
		if shape == strMax {
			s.ClientID = g.str(strMax)
		}
	}
	if shared {
		s.Flags |= abi.SubscribeShared
	}
	d := fmt.Sprintf("SUBSCRIBE qos %d client_id=%s filter=%s", s.QoS, quote(s.ClientID), quote(s.Filter))
	if shared {
		d += " (shared)"
	}
	return s, d
}

func (g *gen) event(i int) (*abi.EventRecord, string) {
	kind := abi.EventKinds[g.shape(i, len(abi.EventKinds))]
	e := &abi.EventRecord{Event: uint8(kind.Value), ProtocolVersion: g.proto(), Time: uint64(1_700_000_000_000 + g.r.IntN(1_000_000)),
		Listener: "tcp", RemoteAddr: "127.0.0.1:1883"}
	e.ClientID, e.Username = g.who()
	switch kind.Value {
	case abi.EventDisconnect:
		e.DisconnectKind = uint8(abi.DisconnectKinds[g.r.IntN(len(abi.DisconnectKinds))].Value)
		e.ReasonCode, e.ReasonString = 0x8e, "session taken over"
	case abi.EventAuthFailed:
		e.ReasonCode = 0x87
	case abi.EventSubscribe, abi.EventUnsubscribe:
		n := 1 + g.r.IntN(3)
		if i%7 == 6 {
			n = manyProperties
		}
		for range n {
			f, _ := g.filter(strNormal)
			e.Filters = append(e.Filters, abi.FilterResult{Filter: f, QoS: uint8(g.r.IntN(3))})
		}
	}
	if i%11 == 10 {
		e.ClientID = g.str(strMax)
	}
	return e, fmt.Sprintf("EVENT %s client_id=%s %d filters", kind.Name, quote(e.ClientID), len(e.Filters))
}

func (g *gen) message(cb abi.Callback, i int) (*abi.MessageRecord, string) {
	shape := g.shape(i, numStrShapes+2)
	m := &abi.MessageRecord{Direction: abi.Inbound, ProtocolVersion: g.proto()}
	m.ClientID, m.Username = g.who()
	if cb == abi.CallbackInterceptPublishOutbound {
		m.Direction = abi.Outbound
		m.Publisher, _ = g.who()
	} else {
		m.Publisher = m.ClientID
	}
	m.Message = abi.Message{QoS: uint8(g.r.IntN(3)), Topic: g.topic(strNormal), Payload: []byte("payload-" + g.word(6))}
	switch shape {
	case strEmpty:
		m.Topic, m.Payload = "kit/empty", nil
	case strMax:
		m.Topic = g.topic(strMax)
		m.Payload = g.bytes(64 << 10)
	case strUTF8:
		m.Topic = g.topic(strUTF8)
	case numStrShapes:
		m.ProtocolVersion = 5
		m.UserProperties = g.props(2)
		m.ContentType, m.ResponseTopic, m.CorrelationData = "application/json", "kit/reply", g.bytes(16)
		m.PayloadFormat, m.MessageExpiry = 1, 60
	case numStrShapes + 1:
		m.Flags |= abi.MessageRetain
	}
	d := fmt.Sprintf("MESSAGE %s qos %d client_id=%s topic=%s payload=%s", protoName(m.ProtocolVersion), m.QoS, quote(m.ClientID),
		quote(m.Topic), describeBytes(m.Payload))
	if n := len(m.UserProperties); n > 0 {
		d += fmt.Sprintf(" %d user properties", n)
	}
	return m, d
}

func (g *gen) connack(i int) (*abi.ConnackRecord, string) {
	c := &abi.ConnackRecord{ProtocolVersion: g.proto()}
	c.ClientID, c.Username = g.who()
	switch g.shape(i, 4) {
	case 1:
		c.ReasonCode, c.ReasonString = 0x87, "not authorized"
		if c.ProtocolVersion == 4 {
			c.ReasonCode = 0x05
		}
	case 2:
		c.ProtocolVersion, c.UserProperties = 5, g.props(2)
	case 3:
		c.Flags = abi.ConnackSessionPresent
		c.ClientID = ""
	}
	return c, fmt.Sprintf("CONNACK %s code %#x client_id=%s %d user properties", protoName(c.ProtocolVersion), c.ReasonCode, quote(c.ClientID),
		len(c.UserProperties))
}

func (g *gen) subscription(i int) (*abi.SubscriptionRecord, string) {
	shape := g.shape(i, numStrShapes+1)
	s := &abi.SubscriptionRecord{QoS: uint8(g.r.IntN(3)), ProtocolVersion: g.proto()}
	s.ClientID, s.Username = g.who()
	var shared bool
	if shape == numStrShapes {
		s.ProtocolVersion = 5
		s.UserProperties, s.Identifier = g.props(2), uint32(1+g.r.IntN(1000))
		s.Options = abi.SubscriptionNoLocal | abi.SubscriptionRetainAsPublished | 2<<abi.SubscriptionRetainHandlingShift
		s.Filter = "kit/#"
	} else {
		s.Filter, shared = g.filter(shape)
	}
	if s.ProtocolVersion == 4 {
		s.Options, s.Identifier, s.UserProperties = 0, 0, nil
	}
	if shared {
		s.Flags |= abi.SubscribeShared
	}
	d := fmt.Sprintf("SUBSCRIPTION %s qos %d client_id=%s filter=%s", protoName(s.ProtocolVersion), s.QoS, quote(s.ClientID), quote(s.Filter))
	if shared {
		d += " (shared)"
	}
	return s, d
}

func (g *gen) disconnect(i int) (*abi.DisconnectRecord, string) {
	d := &abi.DisconnectRecord{Direction: abi.Inbound, ProtocolVersion: g.proto()}
	d.ClientID, d.Username = g.who()
	switch g.shape(i, 4) {
	case 1:
		d.Direction, d.ReasonCode, d.ReasonString = abi.Outbound, 0x8e, "session taken over"
	case 2:
		d.ProtocolVersion, d.ReasonCode, d.UserProperties = 5, 0x04, g.props(2)
	case 3:
		d.ClientID = g.str(strMax)
	}
	if d.ProtocolVersion == 4 {
		d.ReasonCode, d.ReasonString, d.UserProperties = 0, "", nil
		d.Direction = abi.Inbound // a 3.1.1 server sends no DISCONNECT
	}
	dir := "from the client"
	if d.Direction == abi.Outbound {
		dir = "from the broker"
	}
	return d, fmt.Sprintf("DISCONNECT %s %s code %#x client_id=%s", protoName(d.ProtocolVersion), dir, d.ReasonCode, quote(d.ClientID))
}
