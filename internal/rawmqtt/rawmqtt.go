// Package rawmqtt is a minimal MQTT 3.1.1 client that speaks raw packets,
// for benchmarks, load generation and tests where a full client library
// would be the bottleneck. It supports CONNECT (with a will), SUBSCRIBE,
// PUBLISH at QoS 0 and 1, PUBACK and DISCONNECT, with clean or persistent
// sessions. DialV5 speaks the same packets as MQTT 5, with no properties
// but the Receive Maximum, so that a load can state its in-flight window.
package rawmqtt

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Conn is a minimal MQTT 3.1.1 client speaking raw packets, for benchmarks
// and load tests where a full client library would be the bottleneck. It is
// not safe for concurrent writers; one reader and one writer goroutine may
// use it at once.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	body []byte // ReadPacket's buffer, reused
	v5   bool   // MQTT 5: PUBLISH and SUBSCRIBE carry a property length
}

// Dial connects to addr and completes an MQTT 3.1.1 CONNECT with a clean
// session. It returns an error naming the CONNACK code on refusal.
func Dial(addr, clientID string) (*Conn, error) {
	c, _, err := dial(addr, clientID, "", "", true)
	return c, err
}

// DialSession is Dial with a persistent session (clean session 0): the
// broker keeps the client's subscriptions and queued messages while it is
// away and sends the queued ones right after the CONNACK. present is the
// CONNACK's session-present flag.
func DialSession(addr, clientID string) (c *Conn, present bool, err error) {
	return dial(addr, clientID, "", "", false)
}

// DialV5 connects to addr and completes an MQTT 5 CONNECT with a clean
// session and the Receive Maximum property: the broker keeps at most
// receiveMaximum QoS 1 and 2 deliveries unacknowledged to this client. The
// connection then writes and parses MQTT 5 packets (with empty property
// lists); use Conn.ParsePublish for its PUBLISH packets.
func DialV5(addr, clientID string, receiveMaximum uint16) (*Conn, error) {
	c, _, err := connect(addr, clientID, "", "", true, v5Options{on: true, receiveMaximum: receiveMaximum})
	return c, err
}

// DialV5Session connects to addr and completes an MQTT 5 CONNECT with
// Clean Start cleanStart, the Session Expiry Interval expiry (seconds) and
// no keepalive (the broker grants its own maximum, so an idle client is not
// dropped for silence), for a load of persistent sessions. present is the
// CONNACK's session-present flag. The buffers are 4 KiB each (not 64 KiB):
// such loads hold thousands of connections. The connection then speaks
// MQTT 5 as DialV5's does.
func DialV5Session(addr, clientID string, cleanStart bool, expiry uint32) (c *Conn, present bool, err error) {
	return connect(addr, clientID, "", "", cleanStart, v5Options{on: true, expiry: expiry, small: true})
}

// dial connects as MQTT 3.1.1.
func dial(addr, clientID, willTopic, willPayload string, clean bool) (*Conn, bool, error) {
	return connect(addr, clientID, willTopic, willPayload, clean, v5Options{})
}

// v5Options are the MQTT 5 CONNECT properties connect sends when on; 0
// leaves a property out. small asks for 4 KiB buffers. A CONNECT with a
// session expiry waits 30 s for its CONNACK (a broker may claim the
// session from elsewhere first), others 10 s.
type v5Options struct {
	on             bool
	receiveMaximum uint16
	expiry         uint32
	small          bool
}

// connect dials addr and completes a CONNECT (MQTT 5 when v5.on, with
// no keepalive when v5.expiry is set, 60 s otherwise).
func connect(addr, clientID, willTopic, willPayload string, clean bool, v5 v5Options) (*Conn, bool, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	bufSize := 64 << 10
	if v5.small {
		bufSize = 4 << 10
	}
	conn := &Conn{c: c, r: bufio.NewReaderSize(c, bufSize), w: bufio.NewWriterSize(c, bufSize), v5: v5.on}
	var body []byte
	body = appendString(body, "MQTT")
	flags := byte(0)
	if clean {
		flags |= 0x02
	}
	if willTopic != "" {
		flags |= 0x04 // will, QoS 0, not retained
	}
	switch {
	case conn.v5 && v5.expiry > 0:
		// Level 5, no keepalive, properties: Session Expiry Interval (0x11).
		e := v5.expiry
		body = append(body, 5, flags, 0, 0, 5, 0x11, byte(e>>24), byte(e>>16), byte(e>>8), byte(e))
	case conn.v5:
		// Level 5, keepalive 60 s, properties: Receive Maximum (0x21).
		rm := v5.receiveMaximum
		body = append(body, 5, flags, 0, 60, 3, 0x21, byte(rm>>8), byte(rm))
	default:
		body = append(body, 4, flags, 0, 60) // level 4, keepalive 60 s
	}
	body = appendString(body, clientID)
	if willTopic != "" {
		if conn.v5 {
			body = append(body, 0) // will properties
		}
		body = appendString(body, willTopic)
		body = appendString(body, willPayload)
	}
	conn.writePacket(0x10, body)
	if err := conn.Flush(); err != nil {
		c.Close()
		return nil, false, err
	}
	wait := 10 * time.Second
	if v5.expiry > 0 {
		wait = 30 * time.Second
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	typ, ack, err := conn.ReadPacket()
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, false, fmt.Errorf("read connack: %w", err)
	}
	if typ != 0x20 || len(ack) < 2 || ack[1] != 0 {
		c.Close()
		if typ == 0x20 && len(ack) >= 2 && conn.v5 {
			return nil, false, fmt.Errorf("connect refused: reason code %#x%s", ack[1], reasonString(ack[2:]))
		}
		return nil, false, fmt.Errorf("connect refused: packet %#x % x", typ, ack)
	}
	return conn, ack[0]&1 == 1, nil
}

// reasonString returns ": " and the Reason String (0x1F) of an MQTT 5
// CONNACK's properties, or "" when there is none or they are malformed.
func reasonString(props []byte) string {
	n, k := binary.Uvarint(props)
	if k <= 0 || k+int(n) > len(props) {
		return ""
	}
	p := props[k : k+int(n)]
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		var size int
		switch id {
		case 0x1F, 0x12, 0x15, 0x1A, 0x1C: // UTF-8 strings
			if len(p) < 2 {
				return ""
			}
			size = 2 + (int(p[0])<<8 | int(p[1]))
			if id == 0x1F && size <= len(p) {
				return ": " + string(p[2:size])
			}
		case 0x11, 0x27: // four-byte integers
			size = 4
		case 0x21, 0x22, 0x13: // two-byte integers
			size = 2
		case 0x24, 0x25, 0x28, 0x29, 0x2A: // bytes
			size = 1
		default: // user properties, authentication data: not read here
			return ""
		}
		if size > len(p) {
			return ""
		}
		p = p[size:]
	}
	return ""
}

// Open connects to addr without sending anything, for a test that writes
// its own packets with Send (a CONNECT with chosen flags, a malformed
// packet) and reads the answers with ReadPacket.
func Open(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

// Send writes one packet, its first byte header and body as given (the
// remaining length is computed), and flushes it.
func (c *Conn) Send(header byte, body []byte) error {
	c.writePacket(header, body)
	return c.Flush()
}

// Subscribe subscribes to filter at qos and waits for the SUBACK.
func (c *Conn) Subscribe(filter string, qos byte) error {
	body := []byte{0, 1}
	if c.v5 {
		body = append(body, 0) // properties
	}
	body = appendString(body, filter)
	body = append(body, qos)
	c.writePacket(0x82, body)
	if err := c.Flush(); err != nil {
		return err
	}
	typ, ack, err := c.ReadPacket()
	if err != nil {
		return err
	}
	if typ == 0x90 && c.v5 && len(ack) >= 3 { // skip the SUBACK's properties
		n, k := binary.Uvarint(ack[2:])
		if k <= 0 || 2+k+int(n) > len(ack) {
			return fmt.Errorf("subscribe %q: malformed SUBACK % x", filter, ack)
		}
		ack = append(ack[:2:2], ack[2+k+int(n):]...)
	}
	if typ != 0x90 || len(ack) < 3 || ack[2] >= 0x80 {
		return fmt.Errorf("subscribe %q refused: packet %#x % x", filter, typ, ack)
	}
	return nil
}

// Publish buffers a PUBLISH (call Flush to send). id is used for QoS 1/2.
func (c *Conn) Publish(topic string, qos byte, id uint16, payload []byte) {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	if c.v5 {
		n++ // property length
	}
	c.w.WriteByte(0x30 | qos<<1)
	writeVarint(c.w, n)
	c.w.WriteByte(byte(len(topic) >> 8))
	c.w.WriteByte(byte(len(topic)))
	c.w.WriteString(topic)
	if qos > 0 {
		c.w.WriteByte(byte(id >> 8))
		c.w.WriteByte(byte(id))
	}
	if c.v5 {
		c.w.WriteByte(0) // no properties
	}
	c.w.Write(payload)
}

// Puback buffers a PUBACK for id.
func (c *Conn) Puback(id uint16) {
	c.w.Write([]byte{0x40, 2, byte(id >> 8), byte(id)})
}

// Pingreq buffers a PINGREQ (the broker answers with a PINGRESP, 0xd0).
func (c *Conn) Pingreq() {
	c.w.Write([]byte{0xc0, 0})
}

// Buffered returns how many received bytes wait to be read: 0 means the
// next ReadPacket blocks, so acknowledgements buffered for sending should
// be flushed first.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// Flush sends what is buffered.
func (c *Conn) Flush() error { return c.w.Flush() }

// ReadPacket reads one packet and returns its first byte and body. The body
// is valid until the next call.
func (c *Conn) ReadPacket() (byte, []byte, error) {
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, err
	}
	if uint64(cap(c.body)) < n {
		c.body = make([]byte, n)
	}
	body := c.body[:n]
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// ReadPublish reads packets until a PUBLISH, skipping any other (PUBACKs,
// PINGRESPs), and returns it parsed as ParsePublish does; the views are
// valid until the next read.
func (c *Conn) ReadPublish() (topic []byte, id uint16, payload []byte, err error) {
	for {
		typ, body, err := c.ReadPacket()
		if err != nil {
			return nil, 0, nil, err
		}
		if typ>>4 == 3 {
			topic, id, payload = c.ParsePublish(typ, body)
			return topic, id, payload, nil
		}
	}
}

// ParsePublish splits the body of a PUBLISH whose first byte was header
// into topic, packet id (0 for QoS 0) and payload (views into body).
func ParsePublish(header byte, body []byte) (topic []byte, id uint16, payload []byte) {
	if len(body) < 2 {
		return nil, 0, nil
	}
	tl := int(body[0])<<8 | int(body[1])
	if 2+tl > len(body) {
		return nil, 0, nil
	}
	topic, rest := body[2:2+tl], body[2+tl:]
	if (header>>1)&3 > 0 && len(rest) >= 2 {
		id, rest = uint16(rest[0])<<8|uint16(rest[1]), rest[2:]
	}
	return topic, id, rest
}

// ParsePublish is the package's ParsePublish for this connection's
// protocol version: on an MQTT 5 connection it also skips the PUBLISH's
// properties.
func (c *Conn) ParsePublish(header byte, body []byte) (topic []byte, id uint16, payload []byte) {
	topic, id, payload = ParsePublish(header, body)
	if c.v5 && len(payload) > 0 {
		n, k := binary.Uvarint(payload)
		if k <= 0 || k+int(n) > len(payload) {
			return nil, 0, nil
		}
		payload = payload[k+int(n):]
	}
	return topic, id, payload
}

// SetDeadline sets the connection's read and write deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Drop closes the connection without DISCONNECT, as a lost network would.
func (c *Conn) Drop() error { return c.c.Close() }

// Close sends DISCONNECT and closes the connection.
func (c *Conn) Close() error {
	c.w.Write([]byte{0xe0, 0})
	_ = c.w.Flush()
	return c.c.Close()
}

func (c *Conn) writePacket(header byte, body []byte) {
	c.w.WriteByte(header)
	writeVarint(c.w, len(body))
	c.w.Write(body)
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// writeVarint writes MQTT's remaining-length encoding (the same as
// unsigned LEB128, which binary.ReadUvarint reads).
func writeVarint(w *bufio.Writer, n int) {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		w.WriteByte(b)
		if n == 0 {
			return
		}
	}
}

// DialWill is Dial with a will message (QoS 0, not retained) on topic.
func DialWill(addr, clientID, topic, payload string) (*Conn, error) {
	c, _, err := dial(addr, clientID, topic, payload, true)
	return c, err
}
