package propolis

import (
	"encoding/binary"
	"errors"
	"time"
	"unsafe"
)

// headerSize is the size of the record header.
const headerSize = 8

// CONNECT record flags.
const (
	connectCleanStart  = 1 << 0
	connectHasUsername = 1 << 1
	connectHasPassword = 1 << 2
	connectHasWill     = 1 << 3
	connectWillRetain  = 1 << 4
	connectTLS         = 1 << 5
)

// PUBLISH and SUBSCRIBE record flags.
const (
	publishRetain   = 1 << 0
	publishWill     = 1 << 1
	subscribeShared = 1 << 0
)

var (
	errTruncated = errors.New("propolis: record truncated")
	errKind      = errors.New("propolis: unexpected record kind")
)

// reader reads the fields of one record in order. A field entirely past the
// end of the record reads as its zero value (the host wrote the record for
// an older minor version); a field cut short sets err, and every later
// read returns zero values.
type reader struct {
	b   []byte
	err error
}

// newReader checks rec's header and returns a reader on its fields. Bytes
// of rec beyond the header's length are ignored.
func newReader(rec []byte, kind uint16) (reader, error) {
	if len(rec) < headerSize {
		return reader{}, errTruncated
	}
	n := binary.LittleEndian.Uint32(rec)
	if n < headerSize || uint64(n) > uint64(len(rec)) {
		return reader{}, errTruncated
	}
	if binary.LittleEndian.Uint16(rec[4:]) != kind {
		return reader{}, errKind
	}
	return reader{b: rec[headerSize:n]}, nil
}

// take returns the next n bytes, or nil at the end of the record.
func (r *reader) take(n uint32) []byte {
	if len(r.b) == 0 || r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < uint64(n) {
		r.err, r.b = errTruncated, nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// view reads a str field as a view into the record (nil when empty).
func (r *reader) view() []byte {
	n := r.u32()
	if n == 0 {
		return nil
	}
	return r.take(n)
}

// str reads a str field as a new string.
func (r *reader) str() string { return string(r.view()) }

// bytes reads a str field as a new byte slice (nil when empty).
func (r *reader) bytes() []byte {
	v := r.view()
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// count reads a list count, bounded by the bytes left so that a corrupt
// count cannot make the decoder allocate much (every element takes at least
// min bytes).
func (r *reader) count(min int) int {
	n := r.u32()
	if uint64(n)*uint64(min) > uint64(len(r.b)) {
		r.err, r.b = errTruncated, nil
		return 0
	}
	return int(n)
}

// view returns b as a string without copying; the string is valid as long
// as b's memory is not reused.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decodeStart decodes a START record.
func decodeStart(rec []byte) (StartInfo, error) {
	r, err := newReader(rec, kindStart)
	if err != nil {
		return StartInfo{}, err
	}
	s := StartInfo{ID: r.str(), Version: r.str(), BrokerVersion: r.str(), PreviousVersion: r.str(), Config: r.bytes(), Instance: r.u32()}
	return s, r.err
}

// decodeConnect decodes a CONNECT record into c, as views of rec (see
// Connect): nothing is copied, and the lists and the will reuse the SDK's
// scratch (connSANs, connProps, connWill), so a CONNECT without lists
// allocates nothing.
func decodeConnect(rec []byte, c *Connect) error {
	r, err := newReader(rec, kindConnect)
	if err != nil {
		return err
	}
	*c = Connect{ProtocolVersion: r.u8()}
	flags := r.u8()
	willQoS := r.u8()
	r.u8() // reserved
	c.Keepalive = r.u16()
	r.u16() // reserved
	c.SessionExpiry = r.u32()
	c.ClientID, c.Username, c.Password = view(r.view()), view(r.view()), r.view()
	c.RemoteAddr, c.Listener, c.TLSSubject = view(r.view()), view(r.view()), view(r.view())
	if n := r.count(4); n > 0 {
		connSANs = connSANs[:0]
		for i := 0; i < n; i++ {
			connSANs = append(connSANs, view(r.view()))
		}
		c.TLSSANs = connSANs
	}
	willTopic, willPayload := view(r.view()), r.view()
	if n := r.count(8); n > 0 {
		connProps = connProps[:0]
		for i := 0; i < n; i++ {
			connProps = append(connProps, UserProperty{Key: view(r.view()), Value: view(r.view())})
		}
		c.UserProperties = connProps
	}
	c.ReceiveMaximum = r.u16() // ABI 1.2
	r.u16()                    // reserved
	willDelay := r.u32()
	c.CleanStart = flags&connectCleanStart != 0
	c.HasUsername = flags&connectHasUsername != 0
	c.HasPassword = flags&connectHasPassword != 0
	c.TLS = flags&connectTLS != 0
	if flags&connectHasWill != 0 {
		connWill = Will{Topic: willTopic, Payload: willPayload, QoS: willQoS, Retain: flags&connectWillRetain != 0, Delay: willDelay}
		c.Will = &connWill
	}
	if r.err != nil {
		*c = Connect{}
		return r.err
	}
	return nil
}

// decodePublish decodes a PUBLISH record into p, as views of rec (see
// Publish). It is the per-message path of AuthorizePublish: a record the
// host wrote whole takes decodePublishFast, one branch and no loop; any
// other (an older, shorter record, a malformed one) the careful
// decodePublishFields.
func decodePublish(rec []byte, p *Publish) error {
	if decodePublishFast(rec, p) {
		return nil
	}
	// newReader's header check, by hand.
	if len(rec) < headerSize {
		return errTruncated
	}
	n := binary.LittleEndian.Uint32(rec)
	if n < headerSize || uint64(n) > uint64(len(rec)) {
		return errTruncated
	}
	if binary.LittleEndian.Uint16(rec[4:]) != kindPublish {
		return errKind
	}
	return decodePublishFields(rec[headerSize:n], p)
}

// decodePublishFast decodes a whole PUBLISH record into p and reports
// true, or leaves p alone and reports false when rec is not one: a bad
// header, or shorter than its fields say (cut short, or written for an
// older minor; decodePublish then decides). Bytes after the payload are
// ignored, as newReader ignores them. authorizePublish calls it first,
// itself: one call less on the per-message path.
//
// Why it looks like this (bench/README.md, "Where an interceptor's time
// goes"): Go compiles a function to one Wasm loop around a br_table, and
// every jump between its basic blocks goes round that loop, through the
// host's call-deadline check at its head and an indirect branch. A decoder
// that checks each field as it goes (field, reader) takes a few such jumps
// per field, 250-600 ns a record. Here every length is read at an offset
// clamped into b (so a read never leaves b, whatever the lengths say),
// offsets only grow, and the one check at the end, that the last field
// ends inside b, covers every field before it: no jump until then.
func decodePublishFast(rec []byte, p *Publish) bool {
	const fixed = 4 + 4*4 // qos, flags, reserved; four length prefixes
	b, ok := fastBody(rec, kindPublish)
	end := uint64(len(b))
	if !ok || end < fixed {
		return false
	}
	base := unsafe.Pointer(unsafe.SliceData(b))
	last := end - 4 // the last offset a u32 may be read at
	s0 := uint64(4) + 4
	l0 := le32(base, clamp(s0-4, last))
	s1 := s0 + l0 + 4
	l1 := le32(base, clamp(s1-4, last))
	s2 := s1 + l1 + 4
	l2 := le32(base, clamp(s2-4, last))
	s3 := s2 + l2 + 4
	l3 := le32(base, clamp(s3-4, last))
	if s3+l3 > end {
		return false
	}
	head := le32(base, 0)
	cid := unsafe.String((*byte)(unsafe.Add(base, s0)), l0)
	user := unsafe.String((*byte)(unsafe.Add(base, s1)), l1)
	topic := unsafe.String((*byte)(unsafe.Add(base, s2)), l2)
	// A slice expression, not unsafe.Slice (a call in Go's Wasm); an
	// empty payload is an empty slice, not nil, as field gives it.
	payload := b[s3 : s3+l3 : s3+l3]
	p.QoS = uint8(head)
	p.Retain = head>>8&publishRetain != 0
	p.Will = head>>8&publishWill != 0
	// The pointer stores together: Go checks for its write barrier once
	// for a run of them, and that check is a jump.
	p.ClientID, p.Username, p.Topic, p.Payload = cid, user, topic, payload
	return true
}

// fastBody returns rec's fields when its header is good (of kind, a
// length inside rec), for the fast decoders.
func fastBody(rec []byte, kind uint16) ([]byte, bool) {
	if len(rec) < headerSize {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(rec)
	if n < headerSize || uint64(n) > uint64(len(rec)) || binary.LittleEndian.Uint16(rec[4:]) != kind {
		return nil, false
	}
	return rec[headerSize:n], true
}

// clamp returns min(off, last) for offsets below 2^62, by arithmetic:
// Go's Wasm compiles min, and an if, to a jump.
func clamp(off, last uint64) uint64 {
	over := uint64(int64(last-off) >> 63) // all ones when off > last
	return off ^ (off^last)&over
}

// le32 reads the little-endian u32 at base+off, which the caller keeps
// inside its slice.
func le32(base unsafe.Pointer, off uint64) uint64 {
	return uint64(binary.LittleEndian.Uint32((*[4]byte)(unsafe.Add(base, off))[:]))
}

// viewBytes returns the n bytes at base+off as a slice of capacity n, nil
// when n is 0 (as field gives them).
func viewBytes(base unsafe.Pointer, off, n uint64) []byte {
	ptr := (*byte)(unsafe.Add(base, off))
	if n == 0 {
		ptr = nil
	}
	return unsafe.Slice(ptr, n)
}

// decodePublishFields decodes the fields of a PUBLISH record (b without
// its header) one at a time: a field past the end reads as empty, one cut
// short fails. decodePublish takes it for what decodePublishFast leaves.
func decodePublishFields(b []byte, p *Publish) error {
	var qos, flags byte
	if len(b) >= 4 {
		qos, flags = b[0], b[1]
		b = b[4:]
	} else {
		b = nil
	}
	p.QoS = qos
	p.Retain = flags&publishRetain != 0
	p.Will = flags&publishWill != 0
	f0, b, err := field(b)
	if err != nil {
		return err
	}
	f1, b, err := field(b)
	if err != nil {
		return err
	}
	f2, b, err := field(b)
	if err != nil {
		return err
	}
	f3, _, err := field(b)
	if err != nil {
		return err
	}
	p.ClientID = view(f0)
	p.Username = view(f1)
	p.Topic = view(f2)
	p.Payload = f3
	return nil
}

// field splits the next str field off b: nil at the end of the record.
func field(b []byte) (v, rest []byte, err error) {
	if len(b) == 0 {
		return nil, nil, nil
	}
	if len(b) < 4 {
		return nil, nil, errTruncated
	}
	n := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, errTruncated
	}
	return b[:n:n], b[n:], nil
}

// decodeSubscribe decodes a SUBSCRIBE record into s; the client id and
// user name come from cache.
func decodeSubscribe(rec []byte, s *Subscribe) error {
	r, err := newReader(rec, kindSubscribe)
	if err != nil {
		return err
	}
	s.QoS = r.u8()
	s.Shared = r.u8()&subscribeShared != 0
	r.u16() // reserved
	s.ClientID, s.Username, s.Filter = r.str(), r.str(), r.str()
	return r.err
}

// decodeEvent decodes an EVENT record into an Event holding copies of its
// fields.
func decodeEvent(rec []byte) (*Event, error) {
	r, err := newReader(rec, kindEvent)
	if err != nil {
		return nil, err
	}
	e := &Event{Kind: EventKind(r.u8()), DisconnectKind: DisconnectKind(r.u8()), ReasonCode: r.u8(), ProtocolVersion: r.u8()}
	if ns := r.u64(); ns != 0 {
		e.Time = time.Unix(0, int64(ns))
	}
	e.ClientID, e.Username, e.Listener, e.RemoteAddr, e.ReasonString = r.str(), r.str(), r.str(), r.str(), r.str()
	if n := r.count(6); n > 0 {
		e.Filters = make([]FilterResult, n)
		for i := range e.Filters {
			e.Filters[i] = FilterResult{Filter: r.str(), QoS: r.u8(), ReasonCode: r.u8()}
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return e, nil
}

// Direction of MESSAGE and DISCONNECT records.
const directionOutbound = 2

// props decodes a list<str, str> of user properties into *scratch, as
// views; nil when the list is empty.
func (r *reader) props(scratch *[]UserProperty) []UserProperty {
	n := r.count(8)
	if n == 0 {
		return nil
	}
	ps := (*scratch)[:0]
	for i := 0; i < n; i++ {
		ps = append(ps, UserProperty{Key: view(r.view()), Value: view(r.view())})
	}
	*scratch = ps
	return ps
}

// body checks rec's header and returns its fields, as the straight-line
// decoders read them.
func body(rec []byte, kind uint16) ([]byte, error) {
	if len(rec) < headerSize {
		return nil, errTruncated
	}
	n := binary.LittleEndian.Uint32(rec)
	if n < headerSize || uint64(n) > uint64(len(rec)) {
		return nil, errTruncated
	}
	if binary.LittleEndian.Uint16(rec[4:]) != kind {
		return nil, errKind
	}
	return rec[headerSize:n], nil
}

// tailProps decodes the user property list at the front of b into
// *scratch (nil when empty or absent) and returns the rest.
func tailProps(b []byte, scratch *[]UserProperty) ([]UserProperty, []byte, error) {
	if len(b) == 0 {
		return nil, nil, nil
	}
	if len(b) < 4 {
		return nil, nil, errTruncated
	}
	if binary.LittleEndian.Uint32(b) == 0 {
		return nil, b[4:], nil
	}
	r := reader{b: b}
	ps := r.props(scratch)
	return ps, r.b, r.err
}

// decodeConnack decodes a CONNACK record into a, as views of rec. Like
// decodeMessageRecord, it reads its fields with field (no call per field
// in Wasm).
func decodeConnack(rec []byte, a *ConnackPacket) error {
	b, err := body(rec, kindConnack)
	if err != nil {
		return err
	}
	var head [3]byte // reason code, flags, protocol version
	if len(b) >= 4 {
		head, b = [3]byte{b[0], b[1], b[2]}, b[4:]
	} else {
		b = nil
	}
	a.ReasonCode, a.SessionPresent, a.ProtocolVersion = head[0], head[1]&1 != 0, head[2]
	f0, b, err0 := field(b)
	f1, b, err1 := field(b)
	f2, b, err2 := field(b)
	a.ClientID, a.Username, a.ReasonString = view(f0), view(f1), view(f2)
	var err3 error
	a.UserProperties, _, err3 = tailProps(b, &replyProps)
	return errors.Join(err0, err1, err2, err3)
}

// decodeMessageRecord decodes a MESSAGE record into p, as views of rec:
// nothing is copied, and the user properties reuse msgProps. It runs for
// every intercepted message: a record the host wrote whole with an empty
// MQTT 5 tail (no user property, content type, response topic or
// correlation data: almost every message, and every MQTT 3.1.1 one) takes
// decodeMessageFast, one branch and no loop, as decodePublishFast; any
// other the careful decodeMessageFields.
func decodeMessageRecord(rec []byte, p *PublishPacket) error {
	if decodeMessageFast(rec, p) {
		return nil
	}
	if len(rec) < headerSize {
		return errTruncated
	}
	n := binary.LittleEndian.Uint32(rec)
	if n < headerSize || uint64(n) > uint64(len(rec)) {
		return errTruncated
	}
	if binary.LittleEndian.Uint16(rec[4:]) != kindMessage {
		return errKind
	}
	return decodeMessageFields(rec[headerSize:n], p)
}

// decodeMessageFast decodes a whole MESSAGE record whose MQTT 5 tail is
// empty (its 16 bytes zero) into p and reports true; otherwise it leaves p
// alone and reports false. interceptPublish calls it first, itself. See
// decodePublishFast for how it avoids jumps.
func decodeMessageFast(rec []byte, p *PublishPacket) bool {
	const fixed = 4 + 3*4 + 8 + 2*4 + 16 // up to the client id; three length prefixes, ..., the tail
	b, ok := fastBody(rec, kindMessage)
	end := uint64(len(b))
	if !ok || end < fixed {
		return false
	}
	base := unsafe.Pointer(unsafe.SliceData(b))
	last := end - 4 // the last offset a u32 may be read at
	s0 := uint64(4) + 4
	l0 := le32(base, clamp(s0-4, last))
	s1 := s0 + l0 + 4
	l1 := le32(base, clamp(s1-4, last))
	s2 := s1 + l1 + 4
	l2 := le32(base, clamp(s2-4, last))
	f := s2 + l2 // qos, flags, payload format, reserved, message expiry
	s3 := f + 8 + 4
	l3 := le32(base, clamp(s3-4, last))
	s4 := s3 + l3 + 4
	l4 := le32(base, clamp(s4-4, last))
	t := s4 + l4 // the tail: four empty fields
	tail := clamp(t, end-16)
	if t+16 > end || le64(base, tail)|le64(base, tail+8) != 0 {
		return false
	}
	head := le32(base, 0)
	fx := le64(base, f)
	cid := unsafe.String((*byte)(unsafe.Add(base, s0)), l0)
	user := unsafe.String((*byte)(unsafe.Add(base, s1)), l1)
	pub := unsafe.String((*byte)(unsafe.Add(base, s2)), l2)
	topic := unsafe.String((*byte)(unsafe.Add(base, s3)), l3)
	payload := b[s4 : s4+l4 : s4+l4]
	if l4 == 0 {
		payload = nil
	}
	p.Outbound = uint8(head) == directionOutbound
	p.ProtocolVersion = uint8(head >> 8)
	p.QoS = uint8(fx)
	p.Retain = fx>>8&publishRetain != 0
	p.PayloadFormat = uint8(fx >> 16)
	p.MessageExpiry = uint32(fx >> 32)
	// The pointer stores together, as in decodePublishFast.
	p.ClientID, p.Username, p.Publisher, p.Topic, p.Payload = cid, user, pub, topic, payload
	p.UserProperties, p.ContentType, p.ResponseTopic, p.CorrelationData = nil, "", "", nil
	return true
}

// le64 reads the little-endian u64 at base+off, which the caller keeps
// inside its slice.
func le64(base unsafe.Pointer, off uint64) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, off))[:])
}

// decodeMessageFields decodes the fields of a MESSAGE record (b without
// its header) one at a time, for what decodeMessageFast leaves: a record
// cut short fails, a shorter one (no tail) decodes with an empty tail,
// and a non-empty tail is decoded by decodeMessageTail. Like
// decodeMessageRecord before the fast path, it is straight-line code on
// field, which the compiler inlines: decoding with a reader's methods, or
// with a helper just over the Wasm inlining budget, made the guest's
// share of a call 3-4 times as long.
func decodeMessageFields(b []byte, p *PublishPacket) error {
	// The fixed parts are read byte by byte: copy would call memmove, a
	// loop in Go's Wasm. A fixed part cut short reads as zeros (an older
	// record); the str fields after it then fail.
	var dir, ver byte
	if len(b) >= 4 { // direction, protocol version, reserved
		dir, ver, b = b[0], b[1], b[4:]
	} else {
		b = nil
	}
	p.Outbound = dir == directionOutbound
	p.ProtocolVersion = ver
	f0, b, err0 := field(b)
	f1, b, err1 := field(b)
	f2, b, err2 := field(b)
	p.QoS, p.Retain, p.PayloadFormat, p.MessageExpiry = 0, false, 0, 0
	if len(b) >= 8 { // qos, flags, payload format, reserved, message expiry
		p.QoS, p.Retain, p.PayloadFormat = b[0], b[1]&publishRetain != 0, b[2]
		p.MessageExpiry = binary.LittleEndian.Uint32(b[4:])
		b = b[8:]
	} else if len(b) > 0 {
		return errTruncated
	}
	f3, b, err3 := field(b)
	f4, b, err4 := field(b)
	if len(f4) == 0 {
		f4 = nil
	}
	p.ClientID, p.Username, p.Publisher, p.Topic, p.Payload = view(f0), view(f1), view(f2), view(f3), f4
	if err0 != nil || err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return errTruncated
	}
	if len(b) == 0 || len(b) == 16 && binary.LittleEndian.Uint64(b) == 0 && binary.LittleEndian.Uint64(b[8:]) == 0 {
		// No tail (a shorter record) or an empty one: no user property,
		// content type, response topic or correlation data.
		p.UserProperties, p.ContentType, p.ResponseTopic, p.CorrelationData = nil, "", "", nil
		return nil
	}
	return decodeMessageTail(b, p)
}

// decodeMessageTail decodes the fields of a MESSAGE record after the
// payload, when they are not all empty: the user properties (into
// msgProps), content type, response topic and correlation data.
func decodeMessageTail(b []byte, p *PublishPacket) error {
	p.UserProperties = nil
	if len(b) >= 4 {
		if np := binary.LittleEndian.Uint32(b); np > 0 {
			r := reader{b: b}
			p.UserProperties = r.props(&msgProps)
			if r.err != nil {
				return r.err
			}
			b = r.b
		} else {
			b = b[4:]
		}
	} else {
		return errTruncated
	}
	f5, b, err5 := field(b)
	f6, b, err6 := field(b)
	f7, _, err7 := field(b)
	if len(f7) == 0 {
		f7 = nil
	}
	p.ContentType, p.ResponseTopic, p.CorrelationData = view(f5), view(f6), f7
	if err5 != nil || err6 != nil || err7 != nil {
		return errTruncated
	}
	return nil
}

// decodeSubscription decodes a SUBSCRIPTION record into s, as views of
// rec.
func decodeSubscription(rec []byte, s *SubscriptionPacket) error {
	b, err := body(rec, kindSubscription)
	if err != nil {
		return err
	}
	var head [8]byte // qos, options, protocol version, flags, identifier
	if len(b) >= 8 {
		head, b = [8]byte(b[:8]), b[8:]
	} else {
		b = nil
	}
	opts := head[1]
	s.QoS, s.ProtocolVersion = head[0], head[2]
	s.NoLocal = opts&subNoLocal != 0
	s.RetainAsPublished = opts&subRetainAsPublished != 0
	s.RetainHandling = opts >> subRetainHandling & 3
	s.Shared = head[3]&subscribeShared != 0
	s.Identifier = binary.LittleEndian.Uint32(head[4:])
	f0, b, err0 := field(b)
	f1, b, err1 := field(b)
	f2, b, err2 := field(b)
	s.ClientID, s.Username, s.Filter = view(f0), view(f1), view(f2)
	var err3 error
	s.UserProperties, _, err3 = tailProps(b, &replyProps)
	return errors.Join(err0, err1, err2, err3)
}

// decodeDisconnect decodes a DISCONNECT record into d, as views of rec.
func decodeDisconnect(rec []byte, d *DisconnectPacket) error {
	b, err := body(rec, kindDisconnect)
	if err != nil {
		return err
	}
	var head [3]byte // direction, reason code, protocol version
	if len(b) >= 4 {
		head, b = [3]byte{b[0], b[1], b[2]}, b[4:]
	} else {
		b = nil
	}
	d.Outbound, d.ReasonCode, d.ProtocolVersion = head[0] == directionOutbound, head[1], head[2]
	f0, b, err0 := field(b)
	f1, b, err1 := field(b)
	f2, b, err2 := field(b)
	d.ClientID, d.Username, d.ReasonString = view(f0), view(f1), view(f2)
	var err3 error
	d.UserProperties, _, err3 = tailProps(b, &replyProps)
	return errors.Join(err0, err1, err2, err3)
}
