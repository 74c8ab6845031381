package broker_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// keptTap is a packet tap keeping a copy of every packet of the clients
// it was given (all types).
type keptTap struct {
	clients []string
	mu      sync.Mutex
	got     []broker.TracedPacket
}

func (k *keptTap) Takes(id string, _ byte) bool { return slices.Contains(k.clients, id) }

func (k *keptTap) Trace(p *broker.TracedPacket) {
	c := *p
	c.Payload = append([]byte(nil), p.Payload...)
	k.mu.Lock()
	k.got = append(k.got, c)
	k.mu.Unlock()
}

// packets returns the packets kept so far of client id, direction in
// (true: inbound) and type typ.
func (k *keptTap) packets(id string, in bool, typ string) []broker.TracedPacket {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []broker.TracedPacket
	for _, p := range k.got {
		if p.ClientID == id && p.Inbound == in && p.Type == typ {
			out = append(out, p)
		}
	}
	return out
}

// waitFor polls until the tap kept n packets of id, in and typ, and
// returns them.
func (k *keptTap) waitFor(t *testing.T, id string, in bool, typ string, n int) []broker.TracedPacket {
	t.Helper()
	var got []broker.TracedPacket
	poll.Until(t, typ+" packets of "+id+" reaching the tap", func() bool {
		got = k.packets(id, in, typ)
		return len(got) >= n
	})
	return got
}

// tapServer starts a broker with a keptTap of clients installed.
func tapServer(t *testing.T, clients ...string) (*keptTap, string) {
	t.Helper()
	s, addr := startServer(t, testConfig(t.TempDir()), broker.Extensions{Authenticator: brokertest.AllowAll{}})
	k := &keptTap{clients: clients}
	s.SetPacketTap(k)
	return k, addr
}

// connect5 connects an MQTT 5 client and returns it with the channel of
// the PUBLISH packets it receives (acknowledged by hand when manual).
func connect5(t *testing.T, addr, id string, manual bool, cp *paho.Connect) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	got := make(chan *paho.Publish, 64)
	c := v5Dial(t, addr, paho.ClientConfig{ClientID: id, EnableManualAcknowledgment: manual,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}})
	if cp == nil {
		cp = &paho.Connect{}
	}
	cp.ClientID, cp.CleanStart, cp.KeepAlive = id, true, 60
	if ca, err := c.Connect(ctx5(t), cp); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	return c, got
}

// next returns the next message of ch or fails the test.
func next(t *testing.T, ch chan *paho.Publish) *paho.Publish {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-ctx5(t).Done():
		t.Fatal("no message delivered")
		return nil
	}
}

// A client's packet ids reach the tap as the client sent them, also when
// the broker runs the flow under an alias (packetid.go) because a
// delivery to the client holds the same id.
func TestTapClientPacketIDs(t *testing.T) {
	k, addr := tapServer(t, "c")
	c, got := connect5(t, addr, "c", true, nil)
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "x", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	p, _ := connect5(t, addr, "p", false, nil)
	held := map[uint16]bool{}
	for range 4 {
		if _, err := p.Publish(ctx5(t), &paho.Publish{Topic: "x", QoS: 1, Payload: []byte("held")}); err != nil {
			t.Fatal(err)
		}
		held[next(t, got).PacketID] = true // never acknowledged: the delivery stays open
	}
	if _, err := c.Publish(ctx5(t), &paho.Publish{Topic: "y", QoS: 1, Payload: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx5(t), &paho.Publish{Topic: "y", QoS: 2, Payload: []byte("two")}); err != nil {
		t.Fatal(err)
	}
	pubs := k.waitFor(t, "c", true, "PUBLISH", 2)
	acks := k.waitFor(t, "c", false, "PUBACK", 1)
	recs := k.waitFor(t, "c", false, "PUBREC", 1)
	rels := k.waitFor(t, "c", true, "PUBREL", 1)
	comps := k.waitFor(t, "c", false, "PUBCOMP", 1)
	if !held[pubs[0].PacketID] || !held[pubs[1].PacketID] {
		t.Fatalf("the client's PUBLISH ids %d and %d are not among the held deliveries' %v: nothing was renamed",
			pubs[0].PacketID, pubs[1].PacketID, held)
	}
	if pubs[0].PacketID != acks[0].PacketID {
		t.Errorf("QoS 1: PUBLISH id %d in, PUBACK id %d out", pubs[0].PacketID, acks[0].PacketID)
	}
	for _, x := range []broker.TracedPacket{recs[0], rels[0], comps[0]} {
		if x.PacketID != pubs[1].PacketID {
			t.Errorf("QoS 2: PUBLISH id %d in, %s id %d", pubs[1].PacketID, x.Type, x.PacketID)
		}
	}
}

// A PUBLISH a client sends with only a topic alias reaches the tap with
// the topic the alias stands for, and its alias in its properties; the
// broker's deliveries carry their topic (it assigns no aliases, even to a
// client allowing them).
func TestTapTopicAlias(t *testing.T) {
	k, addr := tapServer(t, "sub", "pub")
	aliasMax := uint16(10)
	sub, got := connect5(t, addr, "sub", false, &paho.Connect{Properties: &paho.ConnectProperties{TopicAliasMaximum: &aliasMax}})
	if _, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := connect5(t, addr, "pub", false, nil)
	alias := uint16(3)
	for _, topic := range []string{"t/a", ""} {
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("m"),
			Properties: &paho.PublishProperties{TopicAlias: &alias}}); err != nil {
			t.Fatal(err)
		}
		next(t, got)
	}
	for i, p := range k.waitFor(t, "pub", true, "PUBLISH", 2) {
		if p.Topic != "t/a" || p.Properties["topic_alias"] != uint16(3) {
			t.Errorf("inbound PUBLISH %d: topic %q, properties %v; want t/a and topic_alias 3", i, p.Topic, p.Properties)
		}
	}
	for i, p := range k.waitFor(t, "sub", false, "PUBLISH", 2) {
		if p.Topic != "t/a" || p.Properties["topic_alias"] != nil {
			t.Errorf("outbound PUBLISH %d: topic %q, properties %v; want t/a and no topic_alias", i, p.Topic, p.Properties)
		}
	}
}

// What the tap gets of a packet's properties is what goes on the wire: no
// subscription identifier 0 on a delivery through a subscription without
// one; the authentication data (a credential) only as being there; an
// empty password as a password.
func TestTapWireProperties(t *testing.T) {
	k, addr := tapServer(t, "sub", "auth", "pw")
	sub, got := connect5(t, addr, "sub", false, nil)
	if _, err := sub.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "s", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Publish(ctx5(t), &paho.Publish{Topic: "s", QoS: 1, Payload: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	next(t, got)
	if p := k.waitFor(t, "sub", false, "PUBLISH", 1)[0]; p.Properties["subscription_identifier"] != nil {
		t.Errorf("outbound PUBLISH properties %v: a subscription identifier mochi does not write", p.Properties)
	}

	a := v5Dial(t, addr, paho.ClientConfig{ClientID: "auth"})
	cctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	_, _ = a.Connect(cctx, &paho.Connect{ClientID: "auth", CleanStart: true, KeepAlive: 60,
		Properties: &paho.ConnectProperties{AuthMethod: "TOKEN", AuthData: []byte("s3cret")}})
	cp := k.waitFor(t, "auth", true, "CONNECT", 1)[0]
	if _, leaked := cp.Properties["authentication_data"]; leaked || cp.Properties["authentication_data_set"] != true {
		t.Errorf("CONNECT properties %v: want authentication_data_set true and no authentication_data", cp.Properties)
	}

	connect5(t, addr, "pw", false, &paho.Connect{UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte{}})
	if c := k.waitFor(t, "pw", true, "CONNECT", 1)[0]; !c.PasswordSet {
		t.Error("CONNECT with an empty password: PasswordSet false")
	}
}
