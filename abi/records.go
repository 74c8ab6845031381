package abi

import "errors"

// The Go mirror of the records of ABI.md section 4. The host fills these
// and appends them to guest memory; tests and the conformance checker
// decode them. JSON tags name the fields as ABI.md does (the shared test
// vectors in testdata/ use them).

// StartRecord is a START record.
type StartRecord struct {
	ExtensionID      string `json:"extension_id"`
	ExtensionVersion string `json:"extension_version"`
	BrokerVersion    string `json:"broker_version"`
	PreviousVersion  string `json:"previous_version"`
	Config           string `json:"config"`
	// Instance is the instance's index within this load of the extension
	// (ABI 1.1): 0 for the first, then 1, 2, ... for every later instance,
	// replacements included. A hot reload starts again at 0.
	Instance uint32 `json:"instance"`
}

// Pair is a key/value pair (user properties).
type Pair struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ConnectRecord is a CONNECT record.
type ConnectRecord struct {
	ProtocolVersion uint8    `json:"protocol_version"`
	Flags           uint8    `json:"flags"`
	WillQoS         uint8    `json:"will_qos"`
	Keepalive       uint16   `json:"keepalive"`
	SessionExpiry   uint32   `json:"session_expiry"`
	ClientID        string   `json:"client_id"`
	Username        string   `json:"username"`
	Password        []byte   `json:"password"`
	RemoteAddr      string   `json:"remote_addr"`
	Listener        string   `json:"listener"`
	TLSSubject      string   `json:"tls_subject"`
	TLSSANs         []string `json:"tls_sans"`
	WillTopic       string   `json:"will_topic"`
	WillPayload     []byte   `json:"will_payload"`
	UserProperties  []Pair   `json:"user_properties"`
	// ReceiveMaximum is the CONNECT's Receive Maximum (ABI 1.2; MQTT 5,
	// 0 when the client sent none, which means 65,535).
	ReceiveMaximum uint16 `json:"receive_maximum"`
	// WillDelay is the will's delay interval in seconds (ABI 1.2; MQTT 5).
	WillDelay uint32 `json:"will_delay"`
}

// PublishRecord is a PUBLISH record.
type PublishRecord struct {
	QoS      uint8  `json:"qos"`
	Flags    uint8  `json:"flags"`
	ClientID string `json:"client_id"`
	Username string `json:"username"`
	Topic    string `json:"topic"`
	Payload  []byte `json:"payload"`
}

// SubscribeRecord is a SUBSCRIBE record.
type SubscribeRecord struct {
	QoS      uint8  `json:"qos"`
	Flags    uint8  `json:"flags"`
	ClientID string `json:"client_id"`
	Username string `json:"username"`
	Filter   string `json:"filter"`
}

// FilterResult is one entry of an EVENT record's filter list.
type FilterResult struct {
	Filter string `json:"filter"`
	QoS    uint8  `json:"qos"`
	Code   uint8  `json:"code"`
}

// EventRecord is an EVENT record.
type EventRecord struct {
	Event           uint8          `json:"event"`
	DisconnectKind  uint8          `json:"disconnect_kind"`
	ReasonCode      uint8          `json:"reason_code"`
	ProtocolVersion uint8          `json:"protocol_version"`
	Time            uint64         `json:"time"`
	ClientID        string         `json:"client_id"`
	Username        string         `json:"username"`
	Listener        string         `json:"listener"`
	RemoteAddr      string         `json:"remote_addr"`
	ReasonString    string         `json:"reason_string"`
	Filters         []FilterResult `json:"filters"`
}

// Encode appends the record to buf[:0] and returns it.
func (r *StartRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindStart)
	w.Str(r.ExtensionID)
	w.Str(r.ExtensionVersion)
	w.Str(r.BrokerVersion)
	w.Str(r.PreviousVersion)
	w.Str(r.Config)
	w.U32(r.Instance)
	return w.End()
}

// Encode appends the record to buf[:0] and returns it.
func (r *ConnectRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindConnect)
	w.U8(r.ProtocolVersion)
	w.U8(r.Flags)
	w.U8(r.WillQoS)
	w.U8(0)
	w.U16(r.Keepalive)
	w.U16(0)
	w.U32(r.SessionExpiry)
	w.Str(r.ClientID)
	w.Str(r.Username)
	w.Bytes(r.Password)
	w.Str(r.RemoteAddr)
	w.Str(r.Listener)
	w.Str(r.TLSSubject)
	w.U32(uint32(len(r.TLSSANs)))
	for _, s := range r.TLSSANs {
		w.Str(s)
	}
	w.Str(r.WillTopic)
	w.Bytes(r.WillPayload)
	w.U32(uint32(len(r.UserProperties)))
	for _, p := range r.UserProperties {
		w.Str(p.Key)
		w.Str(p.Value)
	}
	w.U16(r.ReceiveMaximum)
	w.U16(0)
	w.U32(r.WillDelay)
	return w.End()
}

// Encode writes the record into buf[:0] when it has the capacity (into a
// new slice otherwise) and returns it. It runs for every authorized
// PUBLISH, so it writes by offset (see putStr) rather than with Writer.
func (r *PublishRecord) Encode(buf []byte) []byte {
	b := sized(buf, HeaderSize+4+4*4+len(r.ClientID)+len(r.Username)+len(r.Topic)+len(r.Payload))
	putHeader(b, KindPublish)
	b[8], b[9], b[10], b[11] = r.QoS, r.Flags, 0, 0
	o := putStr(b, 12, r.ClientID)
	o = putStr(b, o, r.Username)
	o = putStr(b, o, r.Topic)
	putStr(b, o, view(r.Payload))
	return b
}

// Encode appends the record to buf[:0] and returns it.
func (r *SubscribeRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindSubscribe)
	w.U8(r.QoS)
	w.U8(r.Flags)
	w.U16(0)
	w.Str(r.ClientID)
	w.Str(r.Username)
	w.Str(r.Filter)
	return w.End()
}

// Encode appends the record to buf[:0] and returns it.
func (r *EventRecord) Encode(buf []byte) []byte {
	var w Writer
	w.Begin(buf, KindEvent)
	w.U8(r.Event)
	w.U8(r.DisconnectKind)
	w.U8(r.ReasonCode)
	w.U8(r.ProtocolVersion)
	w.U64(r.Time)
	w.Str(r.ClientID)
	w.Str(r.Username)
	w.Str(r.Listener)
	w.Str(r.RemoteAddr)
	w.Str(r.ReasonString)
	w.U32(uint32(len(r.Filters)))
	for _, f := range r.Filters {
		w.Str(f.Filter)
		w.U8(f.QoS)
		w.U8(f.Code)
	}
	return w.End()
}

// DecodeConnect decodes a CONNECT record.
func DecodeConnect(rec []byte) (*ConnectRecord, error) {
	r, err := expect(rec, KindConnect)
	if err != nil {
		return nil, err
	}
	c := &ConnectRecord{ProtocolVersion: r.U8(), Flags: r.U8(), WillQoS: r.U8()}
	r.U8()
	c.Keepalive = r.U16()
	r.U16()
	c.SessionExpiry = r.U32()
	c.ClientID, c.Username, c.Password = r.Str(), r.Str(), r.Bytes()
	c.RemoteAddr, c.Listener, c.TLSSubject = r.Str(), r.Str(), r.Str()
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		c.TLSSANs = append(c.TLSSANs, r.Str())
	}
	c.WillTopic, c.WillPayload = r.Str(), r.Bytes()
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		c.UserProperties = append(c.UserProperties, Pair{Key: r.Str(), Value: r.Str()})
	}
	c.ReceiveMaximum = r.U16()
	r.U16()
	c.WillDelay = r.U32()
	return c, r.Err
}

// DecodePublish decodes a PUBLISH record.
func DecodePublish(rec []byte) (*PublishRecord, error) {
	r, err := expect(rec, KindPublish)
	if err != nil {
		return nil, err
	}
	p := &PublishRecord{QoS: r.U8(), Flags: r.U8()}
	r.U16()
	p.ClientID, p.Username, p.Topic, p.Payload = r.Str(), r.Str(), r.Str(), r.Bytes()
	return p, r.Err
}

// DecodeSubscribe decodes a SUBSCRIBE record.
func DecodeSubscribe(rec []byte) (*SubscribeRecord, error) {
	r, err := expect(rec, KindSubscribe)
	if err != nil {
		return nil, err
	}
	s := &SubscribeRecord{QoS: r.U8(), Flags: r.U8()}
	r.U16()
	s.ClientID, s.Username, s.Filter = r.Str(), r.Str(), r.Str()
	return s, r.Err
}

// DecodeStart decodes a START record.
func DecodeStart(rec []byte) (*StartRecord, error) {
	r, err := expect(rec, KindStart)
	if err != nil {
		return nil, err
	}
	s := &StartRecord{ExtensionID: r.Str(), ExtensionVersion: r.Str(), BrokerVersion: r.Str(), PreviousVersion: r.Str(), Config: r.Str(), Instance: r.U32()}
	return s, r.Err
}

// DecodeEvent decodes an EVENT record.
func DecodeEvent(rec []byte) (*EventRecord, error) {
	r, err := expect(rec, KindEvent)
	if err != nil {
		return nil, err
	}
	e := &EventRecord{Event: r.U8(), DisconnectKind: r.U8(), ReasonCode: r.U8(), ProtocolVersion: r.U8(), Time: r.U64()}
	e.ClientID, e.Username, e.Listener, e.RemoteAddr, e.ReasonString = r.Str(), r.Str(), r.Str(), r.Str(), r.Str()
	for n := r.U32(); n > 0 && r.Err == nil; n-- {
		e.Filters = append(e.Filters, FilterResult{Filter: r.Str(), QoS: r.U8(), Code: r.U8()})
	}
	return e, r.Err
}

// ErrKind is returned when a record is not of the expected kind.
var ErrKind = errors.New("unexpected record kind")

func expect(rec []byte, kind uint16) (*Reader, error) {
	r, err := NewReader(rec)
	if err != nil {
		return nil, err
	}
	if r.Kind != kind {
		return nil, ErrKind
	}
	return r, nil
}

// Permission is the argument of add_permission.
type Permission struct {
	Decision uint8  `json:"decision"`
	Activity uint8  `json:"activity"`
	QoS      uint8  `json:"qos"`
	Retain   uint8  `json:"retain"`
	Shared   uint8  `json:"shared"`
	Filter   string `json:"filter"`
}

// Encode appends the permission's bytes to buf.
func (p *Permission) Encode(buf []byte) []byte {
	buf = append(buf, p.Decision, p.Activity, p.QoS, p.Retain, p.Shared, 0, 0, 0)
	buf = append(buf, byte(len(p.Filter)), byte(len(p.Filter)>>8), byte(len(p.Filter)>>16), byte(len(p.Filter)>>24))
	return append(buf, p.Filter...)
}

// ErrPermission is returned by DecodePermission for a malformed permission.
var ErrPermission = errors.New("malformed permission")

// DecodePermission parses and validates an add_permission argument.
func DecodePermission(b []byte) (Permission, error) {
	if len(b) < PermissionHeader+4 {
		return Permission{}, ErrPermission
	}
	p := Permission{Decision: b[0], Activity: b[1], QoS: b[2], Retain: b[3], Shared: b[4]}
	n := int(uint32(b[8]) | uint32(b[9])<<8 | uint32(b[10])<<16 | uint32(b[11])<<24)
	if n != len(b)-12 || n == 0 {
		return Permission{}, ErrPermission
	}
	p.Filter = string(b[12:])
	if p.Decision < PermAllow || p.Decision > PermDeny || p.Activity < ActivityPublish || p.Activity > ActivityBoth ||
		p.QoS > 7 || p.Retain > RetainOnlyRetained || p.Shared > SharedOnlyShared || b[5]|b[6]|b[7] != 0 {
		return Permission{}, ErrPermission
	}
	return p, nil
}
