package rawmqtt_test

import (
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// TestReadPublishSkipsOtherPackets: ReadPublish passes over the PINGRESP
// and PUBACK a client gets and returns the PUBLISH delivered to it,
// parsed.
func TestReadPublishSkipsOtherPackets(t *testing.T) {
	addr := brokertest.Start(t, broker.Extensions{Authenticator: brokertest.AllowAll{}})
	c, err := rawmqtt.Dial(addr, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe("echo/#", 1); err != nil {
		t.Fatal(err)
	}
	c.Pingreq()
	c.Publish("echo/a", 1, 7, []byte("hello"))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	topic, id, payload, err := c.ReadPublish()
	if err != nil || string(topic) != "echo/a" || id == 0 || string(payload) != "hello" {
		t.Fatalf("ReadPublish: %q id %d %q, %v; want echo/a, a packet id, hello", topic, id, payload, err)
	}
}

// TestDialV5Session: a first CONNECT with Clean Start 0 and a Session
// Expiry finds no session (present 0), subscribes and disconnects; the
// next one finds the session (present 1) with its subscription, and gets
// the QoS 1 message published meanwhile. Clean Start 1 then drops it.
func TestDialV5Session(t *testing.T) {
	addr := brokertest.Start(t, broker.Extensions{Authenticator: brokertest.AllowAll{}})

	c, present, err := rawmqtt.DialV5Session(addr, "sess", false, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if present {
		t.Fatal("session present on the first CONNECT")
	}
	if err := c.Subscribe("s/a", 1); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	pub, err := rawmqtt.Dial(addr, "pub")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	pub.Publish("s/a", 1, 1, []byte("queued"))
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := pub.ReadPacket(); err != nil || typ>>4 != 4 {
		t.Fatalf("PUBACK: packet %#x, %v", typ, err)
	}

	c, present, err = rawmqtt.DialV5Session(addr, "sess", false, 3600)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !present {
		t.Fatal("session not present on the second CONNECT (Clean Start 0, expiry 3600 s)")
	}
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	typ, body, err := c.ReadPacket()
	if err != nil || typ>>4 != 3 {
		t.Fatalf("queued PUBLISH: packet %#x, %v", typ, err)
	}
	if topic, _, payload := c.ParsePublish(typ, body); string(topic) != "s/a" || string(payload) != "queued" {
		t.Fatalf("queued PUBLISH: topic %q payload %q", topic, payload)
	}
	_ = c.Close()

	c, present, err = rawmqtt.DialV5Session(addr, "sess", true, 3600)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if present {
		t.Fatal("session present after Clean Start 1")
	}
}
