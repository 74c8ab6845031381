package broker_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// This file has what the protocol tests need to speak MQTT 5 on the wire:
// property encoding and decoding (MQTT 5, section 2.2.2.2) and a raw
// connection that reads packets under the poll deadline.

// Property identifiers used by the tests (MQTT 5, table 2-4).
const (
	propServerKeepAlive = 0x13
	propReasonString    = 0x1F
	propReceiveMaximum  = 0x21
	propUserProperty    = 0x26
)

// str16 appends a two-byte length and s.
func str16(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}

// varint is MQTT's variable byte integer.
func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// userProp is one User Property (0x26) name/value pair.
func userProp(k, v string) []byte { return str16(str16([]byte{propUserProperty}, k), v) }

// props is a property list: its length, then the properties.
func props(ps ...[]byte) []byte {
	var all []byte
	for _, p := range ps {
		all = append(all, p...)
	}
	return append(varint(len(all)), all...)
}

// properties is a decoded property list: each identifier with its values
// in order (User Property repeats). Integers are kept as uint32, strings
// as string, string pairs as [2]string.
type properties map[byte][]any

// decodeProps reads a property list at the start of b and returns it with
// the bytes after it.
func decodeProps(b []byte) (properties, []byte, error) {
	n, used := binary.Uvarint(b)
	if used <= 0 || uint64(len(b)-used) < n {
		return nil, nil, fmt.Errorf("bad property length in % x", b)
	}
	list, rest := b[used:used+int(n)], b[used+int(n):]
	out := properties{}
	str := func() (string, error) {
		if len(list) < 2 || len(list) < 2+int(binary.BigEndian.Uint16(list)) {
			return "", errors.New("short string")
		}
		l := int(binary.BigEndian.Uint16(list))
		s := string(list[2 : 2+l])
		list = list[2+l:]
		return s, nil
	}
	for len(list) > 0 {
		id := list[0]
		list = list[1:]
		var v any
		var err error
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			if len(list) < 1 {
				return nil, nil, fmt.Errorf("property %#x: short", id)
			}
			v, list = uint32(list[0]), list[1:]
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			if len(list) < 2 {
				return nil, nil, fmt.Errorf("property %#x: short", id)
			}
			v, list = uint32(binary.BigEndian.Uint16(list)), list[2:]
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			if len(list) < 4 {
				return nil, nil, fmt.Errorf("property %#x: short", id)
			}
			v, list = binary.BigEndian.Uint32(list), list[4:]
		case 0x0B: // variable byte integer
			x, k := binary.Uvarint(list)
			if k <= 0 {
				return nil, nil, fmt.Errorf("property %#x: bad varint", id)
			}
			v, list = uint32(x), list[k:]
		case 0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F, 0x09, 0x16: // string or binary
			v, err = str()
		case propUserProperty:
			var k, val string
			if k, err = str(); err == nil {
				val, err = str()
			}
			v = [2]string{k, val}
		default:
			return nil, nil, fmt.Errorf("unknown property %#x", id)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("property %#x: %w", id, err)
		}
		out[id] = append(out[id], v)
	}
	return out, rest, nil
}

// conn5 is a raw connection speaking MQTT 5 packets written by the test.
type conn5 struct {
	*rawmqtt.Conn
	t testing.TB
}

// connect5Body is a CONNECT body for MQTT 5 with clean start, keepalive ka,
// the given property list (props(...)), client id, and extra appended
// after the id (a will, user name, password: their flags in flags).
func connect5Body(id string, flags byte, ka uint16, plist []byte, extra []byte) []byte {
	b := str16(nil, "MQTT")
	b = append(b, 5, flags|0x02, byte(ka>>8), byte(ka))
	b = append(b, plist...)
	b = str16(b, id)
	return append(b, extra...)
}

// open5 opens a connection, sends the CONNECT body and returns the
// connection with the CONNACK's body. The test fails on anything but a
// CONNACK.
func open5(t testing.TB, addr string, connect []byte) (*conn5, []byte) {
	t.Helper()
	raw, err := rawmqtt.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Drop() })
	c := &conn5{Conn: raw, t: t}
	c.send(0x10, connect)
	typ, body := c.next()
	if typ != 0x20 {
		t.Fatalf("answer to CONNECT: packet %#x % x, want a CONNACK", typ, body)
	}
	return c, body
}

// dial5 connects an MQTT 5 client with keepalive 30 s and no properties,
// and fails the test unless it is accepted.
func dial5(t testing.TB, addr, id string) *conn5 {
	t.Helper()
	c, ack := open5(t, addr, connect5Body(id, 0, 30, props(), nil))
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x, want accepted", ack)
	}
	return c
}

// send writes one packet.
func (c *conn5) send(header byte, body []byte) {
	c.t.Helper()
	if err := c.Send(header, body); err != nil {
		c.t.Fatalf("send %#x: %v", header, err)
	}
}

// next reads the next packet (a copy of its body), failing the test after
// poll.Timeout.
func (c *conn5) next() (byte, []byte) {
	c.t.Helper()
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	typ, body, err := c.ReadPacket()
	if err != nil {
		c.t.Fatalf("read packet: %v", err)
	}
	return typ, append([]byte(nil), body...)
}

// closed waits for the broker to end the connection and returns the
// packets read before the end (a DISCONNECT, for MQTT 5). It fails the
// test if the connection is still open after poll.Timeout.
func (c *conn5) closed() [][]byte {
	c.t.Helper()
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	var got [][]byte
	for {
		typ, body, err := c.ReadPacket()
		if errors.Is(err, io.EOF) || err != nil && !isTimeout(err) {
			return got
		}
		if err != nil {
			c.t.Fatalf("connection still open after %v; read %d packets", poll.Timeout, len(got))
		}
		got = append(got, append([]byte{typ}, body...))
	}
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// publish5 is the body of an MQTT 5 PUBLISH: topic, packet id (QoS > 0),
// property list, payload.
func publish5(topic string, qos byte, id uint16, plist []byte, payload string) []byte {
	b := str16(nil, topic)
	if qos > 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	b = append(b, plist...)
	return append(b, payload...)
}

// subscribe5 is the body of an MQTT 5 SUBSCRIBE of one filter.
func subscribe5(id uint16, filter string, qos byte) []byte {
	b := []byte{byte(id >> 8), byte(id), 0}
	b = str16(b, filter)
	return append(b, qos)
}
