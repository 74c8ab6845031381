package broker_test

import (
	"io"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// TestDisconnectEvents: who ended a connection, as ABI.md's EVENT record
// tells extensions (disconnect_kind; only "client" is graceful), and that a
// refused CONNECT gives connection_start and auth_failed but no disconnect.
func TestDisconnectEvents(t *testing.T) {
	rules := &brokertest.Rules{Refuse: map[string]byte{"mallory": 0x86},
		DenyPrefix: map[string]broker.Verdict{"kick/": {Decision: broker.Disconnect, ReasonCode: 0x98, ReasonString: "go away"}}}
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: rules, Events: rules})

	// eventsOf returns the event kinds recorded for client id, and its
	// disconnect event (the zero Event without one).
	eventsOf := func(id string) ([]broker.EventKind, broker.Event) {
		var kinds []broker.EventKind
		var disc broker.Event
		for _, e := range rules.Recorded() {
			if e.ClientID == id {
				kinds = append(kinds, e.Kind)
				if e.Kind == broker.EventDisconnect {
					disc = e
				}
			}
		}
		return kinds, disc
	}
	waitDisconnect := func(id string) broker.Event {
		t.Helper()
		var d broker.Event
		poll.Until(t, "disconnect event of "+id, func() bool {
			_, d = eventsOf(id)
			return d.Kind == broker.EventDisconnect
		})
		return d
	}

	// Refused: the broker closes the connection once the CONNACK is out, and
	// only then takes the next connection's events (fence below).
	refused, err := rawmqtt.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Drop()
	if err := refused.Send(0x10, connectBody("MQTT", 4, 0xC2, "refused", "mallory", "x")); err != nil {
		t.Fatal(err)
	}
	_ = refused.SetDeadline(time.Now().Add(poll.Timeout))
	if typ, ack, err := refused.ReadPacket(); err != nil || typ != 0x20 || len(ack) != 2 || ack[1] != 0x04 {
		t.Fatalf("refused CONNACK %#x % x %v, want 0x04", typ, ack, err)
	}
	if _, _, err := refused.ReadPacket(); err != io.EOF {
		t.Fatalf("after a refusing CONNACK: %v, want the connection closed", err)
	}

	t.Run("client DISCONNECT is graceful", func(t *testing.T) {
		c, err := rawmqtt.Dial(addr, "polite")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
		if d := waitDisconnect("polite"); d.Disconnect != broker.DisconnectByClient || d.ReasonCode != 0 {
			t.Fatalf("%+v, want kind client, code 0", d)
		}
	})
	t.Run("MQTT 5 DISCONNECT with will (0x04) is the client's", func(t *testing.T) {
		c := v5Dial(t, addr, paho.ClientConfig{ClientID: "willing"})
		if _, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "willing", CleanStart: true}); err != nil {
			t.Fatal(err)
		}
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0x04})
		if d := waitDisconnect("willing"); d.Disconnect != broker.DisconnectByClient || d.ReasonCode != 0x04 {
			t.Fatalf("%+v, want kind client, code 0x04", d)
		}
	})
	t.Run("dropped connection is lost", func(t *testing.T) {
		c, err := rawmqtt.Dial(addr, "dropped")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Drop()
		if d := waitDisconnect("dropped"); d.Disconnect != broker.DisconnectLost {
			t.Fatalf("%+v, want kind lost", d)
		}
	})
	t.Run("an authorizer's DISCONNECT is the server's", func(t *testing.T) {
		c, err := rawmqtt.Dial(addr, "kicked")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Drop()
		c.Publish("kick/me", 0, 0, []byte("x"))
		_ = c.Flush()
		if d := waitDisconnect("kicked"); d.Disconnect != broker.DisconnectByServer || d.ReasonCode != 0x98 || d.ReasonString != "go away" {
			t.Fatalf("%+v, want kind server, 0x98 go away", d)
		}
	})
	t.Run("take-over is the server's", func(t *testing.T) {
		old, err := rawmqtt.Dial(addr, "twice")
		if err != nil {
			t.Fatal(err)
		}
		defer old.Drop()
		c, err := rawmqtt.Dial(addr, "twice")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Drop()
		if d := waitDisconnect("twice"); d.Disconnect != broker.DisconnectByServer || d.ReasonCode != 0x8E {
			t.Fatalf("%+v, want kind server, 0x8E (session taken over)", d)
		}
	})

	// The refused client: connection_start and auth_failed, nothing else.
	// Every later connection's events came after its connection closed.
	if kinds, _ := eventsOf("refused"); len(kinds) != 2 || kinds[0] != broker.EventConnectionStart || kinds[1] != broker.EventAuthFailed {
		t.Fatalf("refused CONNECT: events %v, want [connection_start auth_failed]", kinds)
	}

	t.Run("shutdown is the server's", func(t *testing.T) {
		c, err := rawmqtt.Dial(addr, "last")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Drop()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if d := waitDisconnect("last"); d.Disconnect != broker.DisconnectByServer || d.ReasonCode != 0x8B {
			t.Fatalf("%+v, want kind server, 0x8B (server shutting down)", d)
		}
	})
}
