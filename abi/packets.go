package abi

import "encoding/binary"

// The records of the interceptors (ABI 1.2, ABI.md section 4): CONNACK,
// MESSAGE, SUBSCRIPTION and DISCONNECT. intercept_connect gets the CONNECT
// record of records.go.

// Directions of MESSAGE and DISCONNECT records.
const (
	// Inbound: from the client to the broker.
	Inbound = 1
	// Outbound: from the broker to the client.
	Outbound = 2
)

// ConnackSessionPresent is the flags bit of a CONNACK record.
const ConnackSessionPresent = 1 << 0

// ConnackRecord is a CONNACK record: the CONNACK about to be written.
type ConnackRecord struct {
	ReasonCode      uint8  `json:"reason_code"`
	Flags           uint8  `json:"flags"`
	ProtocolVersion uint8  `json:"protocol_version"`
	ClientID        string `json:"client_id"`
	Username        string `json:"username"`
	ReasonString    string `json:"reason_string"`
	UserProperties  []Pair `json:"user_properties"`
}

// MessageRecord is a MESSAGE record: a PUBLISH arriving from a client
// (Direction Inbound) or about to be delivered to one (Outbound). Its
// fields after Publisher are a Message, laid out as the message argument
// of publish (ABI.md's "Messages").
type MessageRecord struct {
	Direction       uint8 `json:"direction"`
	ProtocolVersion uint8 `json:"protocol_version"`
	// ClientID and Username are the publisher's (inbound) or the
	// subscriber's (outbound).
	ClientID string `json:"client_id"`
	Username string `json:"username"`
	// Publisher is the publishing client's id (outbound; empty for the
	// broker's own messages); inbound it is ClientID.
	Publisher string `json:"publisher"`
	Message
}

// SubscriptionRecord is a SUBSCRIPTION record: one topic filter of a
// SUBSCRIBE, with the SUBSCRIBE's properties.
type SubscriptionRecord struct {
	QoS uint8 `json:"qos"`
	// Options are the subscription options, as subscription_add's
	// (SubscriptionNoLocal, SubscriptionRetainAsPublished, retain
	// handling in bits 2-3).
	Options         uint8 `json:"options"`
	ProtocolVersion uint8 `json:"protocol_version"`
	// Flags: SubscribeShared.
	Flags          uint8  `json:"flags"`
	Identifier     uint32 `json:"identifier"`
	ClientID       string `json:"client_id"`
	Username       string `json:"username"`
	Filter         string `json:"filter"`
	UserProperties []Pair `json:"user_properties"`
}

// DisconnectRecord is a DISCONNECT record: a DISCONNECT the client sent
// (Direction Inbound) or the broker is about to send (Outbound).
type DisconnectRecord struct {
	Direction       uint8  `json:"direction"`
	ReasonCode      uint8  `json:"reason_code"`
	ProtocolVersion uint8  `json:"protocol_version"`
	ClientID        string `json:"client_id"`
	Username        string `json:"username"`
	ReasonString    string `json:"reason_string"`
	UserProperties  []Pair `json:"user_properties"`
}

func (w *Writer) pairs(ps []Pair) {
	w.U32(uint32(len(ps)))
	for _, p := range ps {
		w.Str(p.Key)
		w.Str(p.Value)
	}
}

// pairs reads a list<str, str>. A count the bytes left cannot hold (each
// pair takes at least 8) is refused before anything is read: it may come
// from a guest.
func (r *Reader) pairs() []Pair {
	n := r.U32()
	if uint64(n)*8 > uint64(len(r.b)) {
		if r.Err == nil {
			r.Err = ErrTruncated
		}
		return nil
	}
	var out []Pair
	for ; n > 0 && r.Err == nil; n-- {
		out = append(out, Pair{Key: r.Str(), Value: r.Str()})
	}
	return out
}

// Encode appends the record to buf[:0] and returns it.
func (r *ConnackRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindConnack)
	w.U8(r.ReasonCode)
	w.U8(r.Flags)
	w.U8(r.ProtocolVersion)
	w.U8(0)
	w.Str(r.ClientID)
	w.Str(r.Username)
	w.Str(r.ReasonString)
	w.pairs(r.UserProperties)
	return w.End()
}

// Encode writes the record into buf[:0] when it has the capacity (into a
// new slice otherwise) and returns it. It runs for every intercepted
// message, so it writes by offset (see putStr) rather than with Writer.
func (r *MessageRecord) Encode(buf []byte) []byte {
	m := &r.Message
	n := HeaderSize + 4 + 3*4 + len(r.ClientID) + len(r.Username) + len(r.Publisher) + // up to the publisher
		8 + 5*4 + len(m.Topic) + len(m.Payload) + len(m.ContentType) + len(m.ResponseTopic) + len(m.CorrelationData) +
		4 // the user property count
	for _, p := range m.UserProperties {
		n += 8 + len(p.Key) + len(p.Value)
	}
	b := sized(buf, n)
	putHeader(b, KindMessage)
	b[8], b[9], b[10], b[11] = r.Direction, r.ProtocolVersion, 0, 0
	o := putStr(b, 12, r.ClientID)
	o = putStr(b, o, r.Username)
	o = putStr(b, o, r.Publisher)
	b[o], b[o+1], b[o+2], b[o+3] = m.QoS, m.Flags, m.PayloadFormat, 0
	binary.LittleEndian.PutUint32(b[o+4:], m.MessageExpiry)
	o = putStr(b, o+8, m.Topic)
	o = putStr(b, o, view(m.Payload))
	binary.LittleEndian.PutUint32(b[o:], uint32(len(m.UserProperties)))
	o += 4
	for _, p := range m.UserProperties {
		o = putStr(b, o, p.Key)
		o = putStr(b, o, p.Value)
	}
	o = putStr(b, o, m.ContentType)
	o = putStr(b, o, m.ResponseTopic)
	putStr(b, o, view(m.CorrelationData))
	return b
}

// Encode appends the record to buf[:0] and returns it.
func (r *SubscriptionRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindSubscription)
	w.U8(r.QoS)
	w.U8(r.Options)
	w.U8(r.ProtocolVersion)
	w.U8(r.Flags)
	w.U32(r.Identifier)
	w.Str(r.ClientID)
	w.Str(r.Username)
	w.Str(r.Filter)
	w.pairs(r.UserProperties)
	return w.End()
}

// Encode appends the record to buf[:0] and returns it.
func (r *DisconnectRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindDisconnect)
	w.U8(r.Direction)
	w.U8(r.ReasonCode)
	w.U8(r.ProtocolVersion)
	w.U8(0)
	w.Str(r.ClientID)
	w.Str(r.Username)
	w.Str(r.ReasonString)
	w.pairs(r.UserProperties)
	return w.End()
}

// DecodeConnack decodes a CONNACK record.
func DecodeConnack(rec []byte) (*ConnackRecord, error) {
	r, err := expect(rec, KindConnack)
	if err != nil {
		return nil, err
	}
	c := &ConnackRecord{ReasonCode: r.U8(), Flags: r.U8(), ProtocolVersion: r.U8()}
	r.U8()
	c.ClientID, c.Username, c.ReasonString = r.Str(), r.Str(), r.Str()
	c.UserProperties = r.pairs()
	return c, r.Err
}

// DecodeMessageRecord decodes a MESSAGE record.
func DecodeMessageRecord(rec []byte) (*MessageRecord, error) {
	r, err := expect(rec, KindMessage)
	if err != nil {
		return nil, err
	}
	m := &MessageRecord{Direction: r.U8(), ProtocolVersion: r.U8()}
	r.U16()
	m.ClientID, m.Username, m.Publisher = r.Str(), r.Str(), r.Str()
	m.Message = r.message()
	return m, r.Err
}

// DecodeSubscription decodes a SUBSCRIPTION record.
func DecodeSubscription(rec []byte) (*SubscriptionRecord, error) {
	r, err := expect(rec, KindSubscription)
	if err != nil {
		return nil, err
	}
	s := &SubscriptionRecord{QoS: r.U8(), Options: r.U8(), ProtocolVersion: r.U8(), Flags: r.U8(), Identifier: r.U32()}
	s.ClientID, s.Username, s.Filter = r.Str(), r.Str(), r.Str()
	s.UserProperties = r.pairs()
	return s, r.Err
}

// DecodeDisconnect decodes a DISCONNECT record.
func DecodeDisconnect(rec []byte) (*DisconnectRecord, error) {
	r, err := expect(rec, KindDisconnect)
	if err != nil {
		return nil, err
	}
	d := &DisconnectRecord{Direction: r.U8(), ReasonCode: r.U8(), ProtocolVersion: r.U8()}
	r.U8()
	d.ClientID, d.Username, d.ReasonString = r.Str(), r.Str(), r.Str()
	d.UserProperties = r.pairs()
	return d, r.Err
}

// EncodeProperties writes a packet_set argument for user_properties (a
// list<str, str>) into buf[:0] and returns it.
func EncodeProperties(buf []byte, ps []Pair) []byte {
	var w Writer
	w.Reset(buf)
	w.pairs(ps)
	return w.Fields()
}

// DecodeProperties parses a packet_set argument for user_properties. It
// is strict, unlike a Reader: the list must hold every pair its count
// promises, and bytes after the list are refused. Strings are copies.
func DecodeProperties(b []byte) ([]Pair, error) {
	if len(b) < 4 {
		return nil, ErrMessage
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n)*8 > uint64(len(b)) { // each pair takes at least 8 bytes
		return nil, ErrMessage
	}
	ps := make([]Pair, 0, n)
	for i := uint32(0); i < n; i++ {
		k, rest, ok := strictStr(b)
		if !ok {
			return nil, ErrMessage
		}
		v, rest, ok := strictStr(rest)
		if !ok {
			return nil, ErrMessage
		}
		ps, b = append(ps, Pair{Key: k, Value: v}), rest
	}
	if len(b) != 0 {
		return nil, ErrMessage
	}
	return ps, nil
}

// strictStr reads a length-prefixed string that must be whole.
func strictStr(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}
