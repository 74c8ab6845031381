package store

import (
	"encoding/binary"
	"errors"
	"math"
	"sync"
)

// recordVersion is the version byte that opens every value this build
// writes. Later builds may append fields and bump it; decoders read the
// fields they know and ignore any trailing bytes, and a record shorter than
// its version promises is corrupt.
const recordVersion byte = 1

// Errors from the decoder; callers wrap them with ErrCorrupt and the key.
var (
	errTruncated = errors.New("record truncated")
	errOverflow  = errors.New("field out of range")
	errNoVersion = errors.New("record version 0")
)

// Bit flags of the flags byte of each record kind.
const (
	sessClean            = 1 << 0
	sessExpirySet        = 1 << 1
	sessHasWill          = 1 << 2
	willRetain           = 1 << 0
	subNoLocal           = 1 << 0
	subRetainAsPublished = 1 << 1
	msgRetain            = 1 << 0
	msgDup               = 1 << 1
	propPayloadFormatSet = 1 << 0
)

// scratch holds one key and one value buffer, reused through scratchPool so
// that hot-path writes allocate nothing in steady state. Pebble copies both
// into its batch, so the buffers can go back to the pool once the write
// returns.
type scratch struct {
	key []byte
	val []byte
}

// maxPooledValue bounds the value buffer kept in the pool so that one huge
// payload does not pin its memory forever.
const maxPooledValue = 64 << 10

var scratchPool = sync.Pool{New: func() any {
	return &scratch{key: make([]byte, 0, 64), val: make([]byte, 0, 512)}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	if cap(sc.val) > maxPooledValue {
		return
	}
	sc.key = sc.key[:0]
	sc.val = sc.val[:0]
	scratchPool.Put(sc)
}

// Encoding primitives. Integers are varints (zig-zag for signed), strings
// are a uvarint length and the bytes, and byte slices and lists store
// length+1 so that 0 means nil and 1 means empty.

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

func appendUserProps(b []byte, p []UserProperty) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p))+1)
	for _, u := range p {
		b = appendStr(b, u.Key)
		b = appendStr(b, u.Value)
	}
	return b
}

func appendInts(b []byte, v []int) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	for _, x := range v {
		b = binary.AppendVarint(b, int64(x))
	}
	return b
}

func appendProps(b []byte, p *MessageProperties) []byte {
	var flags byte
	if p.PayloadFormatSet {
		flags |= propPayloadFormatSet
	}
	b = append(b, flags, p.PayloadFormat)
	b = binary.AppendUvarint(b, uint64(p.MessageExpiry))
	b = appendStr(b, p.ContentType)
	b = appendStr(b, p.ResponseTopic)
	b = appendBytes(b, p.CorrelationData)
	b = appendInts(b, p.SubscriptionIDs)
	return appendUserProps(b, p.User)
}

// encodeSession appends the value of a session record to b.
func encodeSession(b []byte, s *Session) []byte {
	var flags byte
	if s.Clean {
		flags |= sessClean
	}
	if s.SessionExpirySet {
		flags |= sessExpirySet
	}
	if s.Will != nil {
		flags |= sessHasWill
	}
	b = append(b, recordVersion, flags, s.ProtocolVersion)
	b = appendStr(b, s.ClientID)
	b = appendBytes(b, s.Username)
	b = appendStr(b, s.Listener)
	b = appendStr(b, s.Remote)
	b = binary.AppendUvarint(b, uint64(s.SessionExpiry))
	b = binary.AppendUvarint(b, uint64(s.ReceiveMaximum))
	b = binary.AppendUvarint(b, uint64(s.TopicAliasMaximum))
	b = binary.AppendUvarint(b, uint64(s.MaximumPacketSize))
	b = appendUserProps(b, s.UserProperties)
	b = binary.AppendVarint(b, s.ConnectedAt)
	b = binary.AppendVarint(b, s.DisconnectedAt)
	if w := s.Will; w != nil {
		var wf byte
		if w.Retain {
			wf |= willRetain
		}
		b = append(b, wf, w.QoS)
		b = appendStr(b, w.Topic)
		b = appendBytes(b, w.Payload)
		b = binary.AppendUvarint(b, uint64(w.DelaySeconds))
		b = appendProps(b, &w.Properties)
	}
	return b
}

// encodeSubscription appends the value of a subscription record to b.
func encodeSubscription(b []byte, s *Subscription) []byte {
	var flags byte
	if s.NoLocal {
		flags |= subNoLocal
	}
	if s.RetainAsPublished {
		flags |= subRetainAsPublished
	}
	b = append(b, recordVersion, flags, s.QoS, s.RetainHandling)
	b = binary.AppendVarint(b, int64(s.Identifier))
	b = appendStr(b, s.ClientID)
	return appendStr(b, s.Filter)
}

// encodeMessage appends the value of an in-flight, retained or pending
// record to b.
func encodeMessage(b []byte, m *Message) []byte {
	var flags byte
	if m.Retain {
		flags |= msgRetain
	}
	if m.Dup {
		flags |= msgDup
	}
	b = append(b, recordVersion, flags, m.Type, m.QoS)
	b = binary.AppendUvarint(b, uint64(m.PacketID))
	b = appendStr(b, m.ClientID)
	b = appendStr(b, m.Topic)
	b = appendBytes(b, m.Payload)
	b = appendStr(b, m.Origin)
	b = binary.AppendVarint(b, m.Created)
	b = binary.AppendVarint(b, m.Expiry)
	b = binary.AppendVarint(b, m.Sent)
	return appendProps(b, &m.Properties)
}

// decoder reads the primitives written above. The first error sticks; all
// later reads return zero values, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) u8() byte {
	if len(d.b) == 0 {
		d.fail(errTruncated)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(max uint64) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	if v > max {
		d.fail(errOverflow)
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail(errTruncated)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	return string(d.raw(d.uvarint(math.MaxInt32)))
}

// bytes returns a copy, so the result outlives pebble's iterator buffers.
func (d *decoder) bytes() []byte {
	n := d.uvarint(math.MaxInt32)
	if n == 0 || d.err != nil {
		return nil
	}
	r := d.raw(n - 1)
	if d.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(r)), r...)
}

// count reads a length+1 list header: -1 means nil. Each element takes at
// least one byte, which bounds the count by what is left.
func (d *decoder) count() int {
	n := d.uvarint(uint64(len(d.b)) + 1)
	if n == 0 || d.err != nil {
		return -1
	}
	return int(n - 1)
}

func (d *decoder) userProps() []UserProperty {
	n := d.count()
	if n < 0 {
		return nil
	}
	p := make([]UserProperty, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str()
		v := d.str()
		p = append(p, UserProperty{Key: k, Value: v})
	}
	return p
}

func (d *decoder) ints() []int {
	n := d.count()
	if n < 0 {
		return nil
	}
	v := make([]int, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		x := d.varint()
		if int64(int(x)) != x {
			d.fail(errOverflow)
		}
		v = append(v, int(x))
	}
	return v
}

func (d *decoder) props(p *MessageProperties) {
	flags := d.u8()
	p.PayloadFormatSet = flags&propPayloadFormatSet != 0
	p.PayloadFormat = d.u8()
	p.MessageExpiry = uint32(d.uvarint(math.MaxUint32))
	p.ContentType = d.str()
	p.ResponseTopic = d.str()
	p.CorrelationData = d.bytes()
	p.SubscriptionIDs = d.ints()
	p.User = d.userProps()
}

func (d *decoder) version() {
	if d.u8() == 0 && d.err == nil {
		d.fail(errNoVersion)
	}
}

// decodeSession decodes a session record value into s.
func decodeSession(b []byte, s *Session) error {
	d := decoder{b: b}
	d.version()
	flags := d.u8()
	s.Clean = flags&sessClean != 0
	s.SessionExpirySet = flags&sessExpirySet != 0
	s.ProtocolVersion = d.u8()
	s.ClientID = d.str()
	s.Username = d.bytes()
	s.Listener = d.str()
	s.Remote = d.str()
	s.SessionExpiry = uint32(d.uvarint(math.MaxUint32))
	s.ReceiveMaximum = uint16(d.uvarint(math.MaxUint16))
	s.TopicAliasMaximum = uint16(d.uvarint(math.MaxUint16))
	s.MaximumPacketSize = uint32(d.uvarint(math.MaxUint32))
	s.UserProperties = d.userProps()
	s.ConnectedAt = d.varint()
	s.DisconnectedAt = d.varint()
	s.Will = nil
	if flags&sessHasWill != 0 {
		w := &Will{}
		wf := d.u8()
		w.Retain = wf&willRetain != 0
		w.QoS = d.u8()
		w.Topic = d.str()
		w.Payload = d.bytes()
		w.DelaySeconds = uint32(d.uvarint(math.MaxUint32))
		d.props(&w.Properties)
		s.Will = w
	}
	return d.err
}

// decodeSubscription decodes a subscription record value into s.
func decodeSubscription(b []byte, s *Subscription) error {
	d := decoder{b: b}
	d.version()
	flags := d.u8()
	s.NoLocal = flags&subNoLocal != 0
	s.RetainAsPublished = flags&subRetainAsPublished != 0
	s.QoS = d.u8()
	s.RetainHandling = d.u8()
	id := d.varint()
	if int64(int(id)) != id {
		d.fail(errOverflow)
	}
	s.Identifier = int(id)
	s.ClientID = d.str()
	s.Filter = d.str()
	return d.err
}

// decodeMessage decodes an in-flight, retained or pending record value
// into m.
func decodeMessage(b []byte, m *Message) error {
	d := decoder{b: b}
	d.version()
	flags := d.u8()
	m.Retain = flags&msgRetain != 0
	m.Dup = flags&msgDup != 0
	m.Type = d.u8()
	m.QoS = d.u8()
	m.PacketID = uint16(d.uvarint(math.MaxUint16))
	m.ClientID = d.str()
	m.Topic = d.str()
	m.Payload = d.bytes()
	m.Origin = d.str()
	m.Created = d.varint()
	m.Expiry = d.varint()
	m.Sent = d.varint()
	d.props(&m.Properties)
	return d.err
}
