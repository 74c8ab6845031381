package host

import (
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// TestMQTTOutcomesOfDenials checks what ABI.md section 8 says clients see
// when a decision refuses, through the real broker and a real .wasm (the
// perms guest: publish QoS 0/1, not retained, on telemetry/{clientid}/#;
// subscribe on commands/{clientid}/#; everything else denied by its
// permissions, with the reason string "not permitted").
func TestMQTTOutcomesOfDenials(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "perms", buildGuest(t, "testdata/guests", "perms"), 0, "")
	addr, _ := startBroker(t, ext)

	// v3 connects an MQTT 3.1.1 client; lost is closed when the broker
	// drops it.
	v3 := func(t *testing.T, id string) (paho3.Client, chan struct{}) {
		t.Helper()
		lost := make(chan struct{})
		o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectTimeout(poll.Timeout).SetWriteTimeout(poll.Timeout).
			SetConnectionLostHandler(func(paho3.Client, error) { close(lost) })
		c := paho3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c, lost
	}
	waitLost := func(t *testing.T, lost chan struct{}, what string) {
		t.Helper()
		select {
		case <-lost:
		case <-time.After(poll.Timeout):
			t.Fatalf("%s: the client was not disconnected", what)
		}
	}

	t.Run("3.1.1 denied SUBSCRIBE gets 0x80", func(t *testing.T) {
		c, _ := v3(t, "s3")
		tok := c.SubscribeMultiple(map[string]byte{"commands/s3/#": 1, "commands/other/#": 1}, nil)
		if !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		codes := tok.(*paho3.SubscribeToken).Result()
		if codes["commands/s3/#"] != 1 || codes["commands/other/#"] != 0x80 {
			t.Fatalf("SUBACK %v, want commands/s3/# 1 and commands/other/# 0x80", codes)
		}
		if !c.IsConnected() {
			t.Fatal("a denied subscription disconnected the client")
		}
	})
	t.Run("3.1.1 denied QoS 0 PUBLISH is dropped, the client stays", func(t *testing.T) {
		c, lost := v3(t, "p0")
		if tok := c.Publish("telemetry/other/x", 0, false, "no"); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		// A QoS 1 publish after it is acknowledged: the connection survived
		// the denial (the broker handles a client's packets in order).
		if tok := c.Publish("telemetry/p0/x", 1, false, "yes"); !tok.WaitTimeout(poll.Timeout) || tok.Error() != nil {
			t.Fatalf("allowed QoS 1 publish after the denied QoS 0 one: %v", tok.Error())
		}
		select {
		case <-lost:
			t.Fatal("a denied QoS 0 publish disconnected the client")
		default:
		}
	})
	for _, qos := range []byte{1, 2} {
		name := map[byte]string{1: "3.1.1 denied QoS 1 PUBLISH disconnects", 2: "3.1.1 denied QoS 2 PUBLISH disconnects"}[qos]
		t.Run(name, func(t *testing.T) {
			id := map[byte]string{1: "p1", 2: "p2"}[qos]
			c, lost := v3(t, id)
			topic := "telemetry/other/x" // not this client's: denied at any QoS
			if qos == 2 {
				topic = "telemetry/" + id + "/x" // its own, but QoS 2 is not granted
			}
			c.Publish(topic, qos, false, "no")
			waitLost(t, lost, name)
		})
	}
	t.Run("3.1.1 denied will refuses the CONNECT with 0x05", func(t *testing.T) {
		o := paho3.NewClientOptions().AddBroker("tcp://"+addr).SetClientID("w3").SetProtocolVersion(4).
			SetAutoReconnect(false).SetConnectTimeout(poll.Timeout).SetWill("wills/w3", "bye", 1, false)
		tok := paho3.NewClient(o).Connect()
		tok.WaitTimeout(poll.Timeout)
		if rc := tok.(*paho3.ConnectToken).ReturnCode(); rc != 0x05 {
			t.Fatalf("CONNACK return code %#x, want 0x05", rc)
		}
	})
	t.Run("5 denied will refuses the CONNECT with the decision's code", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c := paho.NewClient(paho.ClientConfig{ClientID: "w5", Conn: conn})
		ack, err := c.Connect(ctx(t), &paho.Connect{ClientID: "w5", CleanStart: true,
			WillMessage: &paho.WillMessage{Topic: "wills/w5", QoS: 1, Payload: []byte("bye")}})
		if err == nil || ack == nil || ack.ReasonCode != 0x87 || ack.Properties.ReasonString != "not permitted" {
			t.Fatalf("CONNACK %+v (%v), want 0x87 \"not permitted\"", ack, err)
		}
	})
	t.Run("5 PUBLISH denied by a permission: PUBACK 0x87 not permitted", func(t *testing.T) {
		c, _, err := v5(t, addr, "p5", "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := c.Publish(ctx(t), &paho.Publish{Topic: "telemetry/other/x", QoS: 1, Payload: []byte("no")})
		if resp == nil || resp.ReasonCode != 0x87 || resp.Properties.ReasonString != "not permitted" {
			t.Fatalf("PUBACK %+v, want 0x87 \"not permitted\"", resp)
		}
	})
}
