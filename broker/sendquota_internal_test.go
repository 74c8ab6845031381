package broker

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// pubFrame is an MQTT 3.1.1 PUBLISH packet on topic "t" with a payload of
// n bytes ('p').
func pubFrame(qos byte, id uint16, n int) []byte {
	body := []byte{0, 1, 't'}
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, bytes.Repeat([]byte{'p'}, n)...)
	return append([]byte{0x30 | qos<<1, byte(len(body))}, body...)
}

// reading runs c.Read until it fails, as mochi's reader would.
func reading(t *testing.T, c *outConn) {
	go func() {
		b := make([]byte, 512)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close() })
}

// clientSends writes p as the client, for c's reader.
func clientSends(t *testing.T, peer io.Writer, p []byte) {
	t.Helper()
	if _, err := peer.Write(p); err != nil {
		t.Fatalf("client write % x: %v", p, err)
	}
}

// TestOutConnHoldsDeliveriesBeyondQuota: with a Receive Maximum of 2, a
// third QoS 1/2 PUBLISH waits (also inside a write of several packets, as
// mochi's write buffer makes), other packets do not, and the client's
// PUBACK, PUBCOMP or failing PUBREC lets the waiting ones out in order.
func TestOutConnHoldsDeliveriesBeyondQuota(t *testing.T) {
	c, peer, _ := pipeConn(t, time.Hour, 1<<20)
	c.limitSends(2)
	c.establish("sub")
	reading(t, c)
	p1, q0, p2, p3, p4, p5 := pubFrame(1, 1, 3), pubFrame(0, 0, 2), pubFrame(2, 2, 3), pubFrame(1, 3, 3), pubFrame(2, 4, 3), pubFrame(1, 5, 3)
	write := bytes.Join([][]byte{p1, q0, p2, p3, pingresp}, nil)
	if n, err := c.Write(write); err != nil || n != len(write) {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(write))
	}
	for _, p := range [][]byte{p4, p5} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	expectBytes(t, peer, bytes.Join([][]byte{p1, q0, p2, pingresp}, nil))

	clientSends(t, peer, []byte{0x40, 2, 0}) // PUBACK 1, split in two reads
	clientSends(t, peer, []byte{1})
	expectBytes(t, peer, p3)
	clientSends(t, peer, []byte{0x50, 2, 0, 2}) // PUBREC 2, success: the flow goes on
	clientSends(t, peer, []byte{0x70, 2, 0, 2}) // PUBCOMP 2
	expectBytes(t, peer, p4)
	clientSends(t, peer, []byte{0x50, 3, 0, 4, 0x80}) // PUBREC 4, failed: ends the flow
	expectBytes(t, peer, p5)
	c.mu.Lock()
	unacked, waiting := len(c.quota.unacked), len(c.quota.waiting)
	c.mu.Unlock()
	if unacked != 2 || waiting != 0 {
		t.Fatalf("%d unacknowledged, %d waiting; want 2 (ids 3, 5), 0", unacked, waiting)
	}
}

// TestOutConnHeldDeliveriesDoNotCountAgainstBuffer: PUBLISH packets held
// for the client's Receive Maximum are not bytes the client failed to
// read, so many of them never make it a slow consumer (mochi's
// MaximumInflight bounds their number), and each goes out as the one
// before it is acknowledged.
func TestOutConnHeldDeliveriesDoNotCountAgainstBuffer(t *testing.T) {
	c, peer, slow := pipeConn(t, time.Hour, 100)
	c.limitSends(1)
	c.establish("sub")
	reading(t, c)
	const n = 10 // 37 bytes each: 370 bytes held against a 100-byte limit
	for i := 1; i <= n; i++ {
		if _, err := c.Write(pubFrame(1, uint16(i), 30)); err != nil {
			t.Fatalf("write of delivery %d: %v; want it held", i, err)
		}
	}
	for i := 1; i <= n; i++ {
		expectBytes(t, peer, pubFrame(1, uint16(i), 30))
		clientSends(t, peer, []byte{0x40, 2, byte(i >> 8), byte(i)}) // PUBACK i
	}
	if got := slow.Load(); got != 0 {
		t.Fatalf("slow consumer reported %d times; want none", got)
	}
}

// TestOutConnInvalidPubrecEndsFlow: a PUBREC whose reason code is not a
// valid one ends the flow as mochi does (processPubrec), so its slot is
// freed and the held delivery goes out.
func TestOutConnInvalidPubrecEndsFlow(t *testing.T) {
	c, peer, _ := pipeConn(t, time.Hour, 1<<20)
	c.limitSends(1)
	c.establish("sub")
	reading(t, c)
	p1, p2 := pubFrame(2, 1, 10), pubFrame(2, 2, 10)
	for _, p := range [][]byte{p1, p2} {
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	expectBytes(t, peer, p1)
	clientSends(t, peer, []byte{0x50, 3, 0, 1, 0x01}) // PUBREC 1, code 0x01: not valid
	expectBytes(t, peer, p2)
}

// TestFramingClientAcks: framing reports the deliveries a client's packets
// end, however the bytes are split.
func TestFramingClientAcks(t *testing.T) {
	in := bytes.Join([][]byte{
		{0x40, 2, 0, 7},       // PUBACK 7
		{0x50, 2, 0, 8},       // PUBREC 8, success
		{0x50, 3, 0, 9, 0x87}, // PUBREC 9, refused
		{0x70, 3, 1, 0, 0x92}, // PUBCOMP 256, id not found: ends it all the same
		{0x62, 2, 0, 5},       // PUBREL 5: the client's own flow
		pubFrame(1, 6, 2),
	}, nil)
	for split := 1; split < len(in); split++ {
		f := framing{acks: []uint16{}}
		var got []uint16
		for _, part := range [][]byte{in[:split], in[split:]} {
			f.feed(part)
			got = append(got, f.acks...)
			f.acks = f.acks[:0]
		}
		if want := []uint16{7, 9, 256}; !equalIDs(got, want) {
			t.Fatalf("split at %d: acks %v, want %v", split, got, want)
		}
	}
}

func equalIDs(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAgeExpiry: a held PUBLISH's Message Expiry Interval loses the time
// it was held, rounded up to whole seconds, in place, whatever other
// properties mochi encodes around it; one whose time ran out is reported
// dead; one without the property is left alone ([MQTT-3.3.2-5],
// [MQTT-3.3.2-6]).
func TestAgeExpiry(t *testing.T) {
	full := packets.Properties{
		PayloadFormat: 1, PayloadFormatFlag: true,
		ContentType: "text/plain", ResponseTopic: "r/t", CorrelationData: []byte{1, 2},
		SubscriptionIdentifier: []int{300}, TopicAlias: 3, TopicAliasFlag: true,
		User: []packets.UserProperty{{Key: "k", Val: "v"}},
	}
	tests := []struct {
		name   string
		props  packets.Properties
		expiry uint32 // encoded; 0: none
		held   time.Duration
		want   uint32 // after; 0 with alive: no property
		alive  bool
	}{
		{name: "only expiry", expiry: 60, held: 10 * time.Second, want: 50, alive: true},
		{name: "part of a second rounds up", expiry: 60, held: 10500 * time.Millisecond, want: 50, alive: true},
		{name: "every property", props: full, expiry: 3600, held: time.Hour - time.Second, want: 1, alive: true},
		{name: "ran out", props: full, expiry: 5, held: 5 * time.Second, alive: false},
		{name: "no expiry", props: full, held: time.Hour, alive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pk := packets.Packet{
				FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1},
				ProtocolVersion: 5, TopicName: "a/b", PacketID: 7, Payload: []byte("payload"),
				Properties: tt.props,
			}
			pk.Properties.MessageExpiryInterval = tt.expiry
			var buf bytes.Buffer
			if err := pk.PublishEncode(&buf); err != nil {
				t.Fatal(err)
			}
			f := buf.Bytes()
			alive := ageExpiry(f, tt.held)
			if alive != tt.alive {
				t.Fatalf("alive = %v, want %v", alive, tt.alive)
			}
			if !alive {
				return
			}
			back := packets.Packet{ProtocolVersion: 5}
			if err := back.FixedHeader.Decode(f[0]); err != nil {
				t.Fatal(err)
			}
			if err := back.PublishDecode(f[bodyStart(f):]); err != nil {
				t.Fatalf("decode after ageExpiry: %v", err)
			}
			if got := back.Properties.MessageExpiryInterval; got != tt.want {
				t.Fatalf("Message Expiry Interval %d, want %d", got, tt.want)
			}
			if string(back.Payload) != "payload" || back.PacketID != 7 || back.Properties.ContentType != tt.props.ContentType {
				t.Fatalf("other fields changed: %+v", back)
			}
		})
	}
}
