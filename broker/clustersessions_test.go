package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The sessions moving between nodes are tested with two real brokers, each
// on its own Pebble folder, and real clients; the cluster between them is
// the test: sessionSeam hands broker 2's CONNECT what broker 1 exported.

// sessionSeam is the broker.ClusterSessions of a test node: ClaimSession
// returns what the test set (state, msgs, err) and records each call; the
// filters reported to the cluster are recorded too. Its other Cluster
// methods do nothing a test reads.
type sessionSeam struct {
	mu     sync.Mutex
	state  *broker.SessionState
	msgs   []broker.Message
	err    error
	claims []string // "id clean=true"
	subs   []string // filters reported Subscribed, in order
	// gate, when set, holds each claim (once recorded) until it closes.
	gate chan struct{}
}

var (
	_ broker.Cluster         = (*sessionSeam)(nil)
	_ broker.ClusterSessions = (*sessionSeam)(nil)
)

func (c *sessionSeam) Forward(*broker.Message, string) error { return nil }
func (c *sessionSeam) Unsubscribed(string, string)           {}
func (c *sessionSeam) Connected(string)                      {}
func (c *sessionSeam) Disconnected(string)                   {}
func (c *sessionSeam) CheckFilter(string, string) error      { return nil }
func (c *sessionSeam) CheckClientID(string) error            { return nil }

func (c *sessionSeam) Subscribed(filter, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs = append(c.subs, filter)
}

func (c *sessionSeam) ClaimSession(id string, clean bool) (*broker.SessionState, []broker.Message, error) {
	c.mu.Lock()
	c.claims = append(c.claims, fmt.Sprintf("%s clean=%t", id, clean))
	gate, st, msgs, err := c.gate, c.state, c.msgs, c.err
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return st, msgs, err
}

// hold makes the next claims wait until gate closes.
func (c *sessionSeam) hold(gate chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = gate
}

// recorded returns the claims and reported filters so far.
func (c *sessionSeam) recorded() (claims, subs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.claims), slices.Clone(c.subs)
}

// startNode starts a broker on a folder of its own with seam as its
// cluster.
func startNode(t *testing.T, seam *sessionSeam) *svcBroker {
	t.Helper()
	b := &svcBroker{t: t, cfg: testConfig(t.TempDir())}
	b.Server, b.addr = startClustered(t, b.cfg.DataDir, seam)
	return b
}

// publish5 publishes one message from a fresh MQTT 5 client with
// properties and returns its client id.
func (b *svcBroker) publish5(id, topic string, qos byte, payload string) {
	b.t.Helper()
	c, _ := b.connect5(id, true, 0, nil)
	exp := uint32(600)
	if _, err := c.Publish(ctx5(b.t), &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload),
		Properties: &paho.PublishProperties{MessageExpiry: &exp, ContentType: "text/plain",
			User: paho.UserProperties{{Key: "n", Value: payload}}}}); err != nil {
		b.t.Fatalf("publish %s: %v", payload, err)
	}
	c.leave()
}

// awaitStored waits until the store holds what want lists of id (see
// stored): acknowledgements are stored after the client has the message.
func (b *svcBroker) awaitStored(id, want string) {
	b.t.Helper()
	poll.Settle(b.t, "store of "+id, func() string {
		if got := b.stored(id); got != want {
			return "holds " + got + ", want " + want
		}
		return ""
	})
}

// TestSessionMovesBetweenNodes: a persistent MQTT 5 subscriber leaves
// broker 1 with messages queued; broker 1 exports its session (gone there,
// memory and store), broker 2 gets it from its claim and imports it; the
// client resumes it on broker 2: session present, every queued message at
// its QoS with its properties, in order, and its subscription live there
// (stored, reported to the cluster, receiving a new publish).
func TestSessionMovesBetweenNodes(t *testing.T) {
	seam1 := &sessionSeam{}
	b1 := startNode(t, seam1)
	c, present := b1.connect5("mover", false, 300, nil)
	if present {
		t.Fatal("session present on a first CONNECT")
	}
	c.subscribe(t, "move/#", 2)
	c.leave()
	b1.awaitOffline("mover")

	want := []struct {
		topic, payload string
		qos            byte
	}{{"move/a", "m1", 1}, {"move/b", "m2", 2}, {"move/c", "m3", 1}, {"move/d", "m4", 2}}
	for _, w := range want {
		b1.publish5("pub", w.topic, w.qos, w.payload)
	}
	poll.Until(t, "4 messages queued on broker 1", func() bool {
		info, ok := b1.Client("mover")
		return ok && info.Queued == len(want)
	})

	st, msgs, err := b1.ExportSession("mover")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("exported %d messages, want %d", len(msgs), len(want))
	}
	for i, w := range want {
		m := msgs[i]
		if m.Topic != w.topic || string(m.Payload) != w.payload || m.QoS != w.qos || m.Origin != "pub" ||
			m.ContentType != "text/plain" || m.MessageExpiry == 0 || m.MessageExpiry > 600 ||
			len(m.UserProperties) != 1 || m.UserProperties[0] != (broker.UserProperty{Key: "n", Value: w.payload}) {
			t.Errorf("exported message %d = %+v, want %s %q QoS %d from pub", i, m, w.topic, w.payload, w.qos)
		}
	}
	if st.Session.ClientID != "mover" || st.Session.DisconnectedAt == 0 || st.Session.SessionExpiry != 300 ||
		len(st.Subscriptions) != 1 || st.Subscriptions[0].Filter != "move/#" || st.Subscriptions[0].QoS != 2 {
		t.Fatalf("exported state %+v", st)
	}
	if _, ok := b1.Client("mover"); ok {
		t.Error("broker 1 still holds the session after the export")
	}
	if got := b1.stored("mover"); got != "[]" {
		t.Errorf("broker 1 store holds %s after the export, want nothing", got)
	}

	// The state crosses the cluster as JSON.
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var moved broker.SessionState
	if err := json.Unmarshal(raw, &moved); err != nil {
		t.Fatal(err)
	}

	seam2 := &sessionSeam{state: &moved, msgs: msgs}
	b2 := startNode(t, seam2)
	c2, present := b2.connect5("mover", false, 300, nil)
	if !present {
		t.Fatal("session present = 0 on broker 2, want 1")
	}
	for i, w := range want {
		p := c2.next(t)
		if p.Topic != w.topic || string(p.Payload) != w.payload || p.QoS != w.qos ||
			p.Properties.ContentType != "text/plain" || p.Properties.User.Get("n") != w.payload {
			t.Errorf("message %d on broker 2 = %s %q QoS %d %+v, want %s %q QoS %d", i, p.Topic, p.Payload, p.QoS, p.Properties, w.topic, w.payload, w.qos)
		}
	}
	claims, subs := seam2.recorded()
	if !slices.Equal(claims, []string{"mover clean=false"}) {
		t.Errorf("claims on broker 2 %v", claims)
	}
	if !slices.Contains(subs, "move/#") {
		t.Errorf("filters reported by broker 2 %v, want move/#", subs)
	}
	b2.publish5("pub2", "move/e", 1, "m5")
	if p := c2.next(t); p.Topic != "move/e" || string(p.Payload) != "m5" {
		t.Fatalf("after the move: %s %q, want move/e m5", p.Topic, p.Payload)
	}
	b2.awaitStored("mover", "[session subscription move/#]")
}

// TestClaimRefusedConnect: a claim the cluster fails refuses the CONNECT
// with 0x88 Server unavailable and the cluster's reason (MQTT 5), 0x03
// (3.1.1); the broker holds no session for it.
func TestClaimRefusedConnect(t *testing.T) {
	seam := &sessionSeam{err: errors.New("no quorum")}
	b := startNode(t, seam)

	c := v5Dial(t, b.addr, paho.ClientConfig{ClientID: "r5"})
	exp := uint32(300)
	ack, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "r5", KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp, RequestProblemInfo: true}})
	if err == nil || ack == nil || ack.ReasonCode != 0x88 || ack.Properties == nil ||
		ack.Properties.ReasonString != "cluster unavailable: session not claimed" {
		t.Fatalf("CONNACK %+v, error %v; want 0x88 with the cluster's reason", ack, err)
	}

	c3 := paho3.NewClient(v3Options(b.addr, "r3").SetCleanSession(false))
	tok := c3.Connect()
	if !tok.WaitTimeout(poll.Timeout) {
		t.Fatal("3.1.1 connect: timed out")
	}
	if code := tok.(*paho3.ConnectToken).ReturnCode(); code != 0x03 {
		t.Fatalf("3.1.1 CONNACK return code %#x (%v), want 0x03", code, tok.Error())
	}
	for _, id := range []string{"r5", "r3"} {
		if _, ok := b.Client(id); ok {
			t.Errorf("a session of %s after its refused CONNECT", id)
		}
	}
	claims, _ := seam.recorded()
	if !slices.Equal(claims, []string{"r5 clean=false", "r3 clean=false"}) {
		t.Errorf("claims %v", claims)
	}
}

// TestClaimCleanStart: a clean start claims with cleanStart true and
// imports nothing, whatever the cluster returns.
func TestClaimCleanStart(t *testing.T) {
	seam := &sessionSeam{
		state: &broker.SessionState{Session: store.Session{ClientID: "fresh", ProtocolVersion: 5, SessionExpiry: 300},
			Subscriptions: []store.Subscription{{ClientID: "fresh", Filter: "old/#", QoS: 1}}},
		msgs: []broker.Message{{Topic: "old/1", QoS: 1, Payload: []byte("x")}},
	}
	b := startNode(t, seam)
	_, present := b.connect5("fresh", true, 300, nil)
	if present {
		t.Error("session present on a clean start")
	}
	subs, err := b.Subscriptions("fresh")
	if err != nil || len(subs) != 0 {
		t.Errorf("subscriptions %v (%v), want none", subs, err)
	}
	if info, _ := b.Client("fresh"); info.Queued != 0 {
		t.Errorf("%d messages queued, want 0", info.Queued)
	}
	claims, _ := seam.recorded()
	if !slices.Equal(claims, []string{"fresh clean=true"}) {
		t.Errorf("claims %v", claims)
	}
}

// TestExportSessionErrors: a connected client's session and an unknown
// client id are not exported; the connected session stays whole.
func TestExportSessionErrors(t *testing.T) {
	b := startNode(t, &sessionSeam{})
	c, _ := b.connect5("online", false, 300, nil)
	c.subscribe(t, "on/#", 1)

	_, _, err := b.ExportSession("online")
	errorIs(t, err, broker.ErrConnected, `export session "online": client connected`)
	_, _, err = b.ExportSession("nobody")
	errorIs(t, err, broker.ErrNoSession, `export session "nobody": no session`)

	b.publish5("pub", "on/1", 1, "still here")
	if p := c.next(t); string(p.Payload) != "still here" {
		t.Fatalf("got %q", p.Payload)
	}
	b.awaitStored("online", "[session subscription on/#]")
}

// TestExportSessionNoWill: the session of a client whose connection was
// lost with a delayed will is exported without the will being published
// (it stays the business of the disconnect): a watcher gets the marker
// published after the export and nothing before it.
func TestExportSessionNoWill(t *testing.T) {
	b := startNode(t, &sessionSeam{})
	watcher, _ := b.connect5("watcher", true, 0, nil)
	watcher.subscribe(t, "will/#", 1)
	watcher.subscribe(t, "mark", 1)

	delay := uint32(3600)
	willing, _ := b.connect5("willing", false, 300, func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "will/willing", Payload: []byte("gone"), QoS: 1}
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	})
	_ = willing.conn.Close() // lost: the will waits for its delay
	b.awaitOffline("willing")

	if _, _, err := b.ExportSession("willing"); err != nil {
		t.Fatal(err)
	}
	b.publish5("pub", "mark", 1, "after export")
	if p := watcher.next(t); p.Topic != "mark" {
		t.Fatalf("watcher got %s %q before the marker: a will was published", p.Topic, p.Payload)
	}
}

// TestQueueSessionMessages: an imported session gets the messages that
// match its subscriptions, except its own under No Local; the others are
// skipped, a message MQTT cannot carry is an error naming it, and the rest
// still go.
func TestQueueSessionMessages(t *testing.T) {
	b := startNode(t, &sessionSeam{})
	st := broker.SessionState{Session: store.Session{ClientID: "q", ProtocolVersion: 5, SessionExpiry: 300, DisconnectedAt: 1},
		Subscriptions: []store.Subscription{{Filter: "a/#", QoS: 2, NoLocal: true}}}
	err := b.ImportSession(st)
	errorIs(t, err, broker.ErrSessionExpired, `import session "q": session expired`)

	st.Session.DisconnectedAt = 0
	if err := b.ImportSession(st); err != nil {
		t.Fatal(err)
	}
	n, err := b.QueueSessionMessages("q", []broker.Message{
		{Topic: "a/1", QoS: 1, Payload: []byte("own"), Origin: "q"},
		{Topic: "b/1", QoS: 1, Payload: []byte("unmatched"), Origin: "p"},
		{Topic: "a/#", QoS: 1, Payload: []byte("bad")},
		{Topic: "a/2", QoS: 2, Payload: []byte("kept"), Origin: "p"},
	})
	errorIs(t, err, broker.ErrInvalidArgument, `queue message 2 on "a/#" for "q": invalid argument: topic "a/#" has a wildcard`)
	if n != 1 {
		t.Fatalf("queued %d, want 1", n)
	}
	_, err = b.QueueSessionMessages("none", nil)
	errorIs(t, err, broker.ErrNoSession, `queue messages for "none": no session`)

	c, present := b.connect5("q", false, 300, nil)
	if !present {
		t.Fatal("imported session not present")
	}
	if p := c.next(t); p.Topic != "a/2" || string(p.Payload) != "kept" || p.QoS != 2 {
		t.Fatalf("got %s %q QoS %d, want a/2 kept QoS 2", p.Topic, p.Payload, p.QoS)
	}
	b.awaitStored("q", "[session subscription a/#]")
}

// TestImportSessionRefused: a state no client could make is refused,
// naming what is wrong, and so is one whose client is connected here.
func TestImportSessionRefused(t *testing.T) {
	b := startNode(t, &sessionSeam{})
	b.connect5("here", false, 300, nil)
	for _, tc := range []struct {
		name string
		st   broker.SessionState
		want error
		msg  string
	}{
		{"empty id", broker.SessionState{}, broker.ErrInvalidArgument, `import session "": invalid argument: empty client id`},
		{"reserved id", broker.SessionState{Session: store.Session{ClientID: broker.ClusterClientID}}, broker.ErrInvalidArgument,
			`import session "propolis-cluster": invalid argument: client id reserved for the broker`},
		{"foreign subscription", broker.SessionState{Session: store.Session{ClientID: "x"}, Subscriptions: []store.Subscription{{ClientID: "y", Filter: "a"}}},
			broker.ErrInvalidArgument, `import session "x": invalid argument: subscription "a" belongs to client "y"`},
		{"bad filter", broker.SessionState{Session: store.Session{ClientID: "x"}, Subscriptions: []store.Subscription{{Filter: "a/b#"}}},
			broker.ErrInvalidArgument, `import session "x": subscription "a/b#": invalid argument: "a/b#" is not a topic filter`},
		{"connected", broker.SessionState{Session: store.Session{ClientID: "here", ProtocolVersion: 5, SessionExpiry: 300}},
			broker.ErrConnected, `import session "here": client connected`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errorIs(t, b.ImportSession(tc.st), tc.want, tc.msg)
		})
	}
	if _, ok := b.Client("x"); ok {
		t.Error("a refused import left a session")
	}
}

// TestExportWaitsForClaim: ExportSession waits while a CONNECT of the
// client id is between its claim and its CONNACK, so the session does not
// leave under it: the CONNECT resumes it (session present) and the export
// finds the client connected.
func TestExportWaitsForClaim(t *testing.T) {
	seam := &sessionSeam{}
	b := startNode(t, seam)
	c, _ := b.connect5("turn", false, 300, nil)
	c.subscribe(t, "turn/#", 1)
	c.leave()
	b.awaitOffline("turn")

	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open) // a failing test lets the claim end before the broker closes
	seam.hold(gate)
	c2 := v5Dial(t, b.addr, paho.ClientConfig{ClientID: "turn"})
	exp := uint32(300)
	acked := make(chan *paho.Connack, 1)
	go func() {
		ack, err := c2.Connect(ctx5(t), &paho.Connect{ClientID: "turn", KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
		if err != nil {
			ack = nil
		}
		acked <- ack
	}()
	poll.Until(t, "the second CONNECT's claim", func() bool {
		claims, _ := seam.recorded()
		return len(claims) == 2
	})
	exported := make(chan error, 1)
	go func() {
		_, _, err := b.ExportSession("turn")
		exported <- err
	}()
	poll.Until(t, "the export waiting for the CONNECT's turn", func() bool { return b.ConnectTurnUsers("turn") == 2 })
	open()

	if ack := <-acked; ack == nil || !ack.SessionPresent {
		t.Fatalf("CONNACK %+v, want session present", ack)
	}
	errorIs(t, <-exported, broker.ErrConnected, `export session "turn": client connected`)
	if subs, err := b.Subscriptions("turn"); err != nil || len(subs) != 1 {
		t.Errorf("subscriptions after the export %v (%v), want turn/#", subs, err)
	}
}

// TestImportReplacesOfflineSession: a session imported over a local
// offline one of the same client id replaces it, and what the local one
// held is queued in the new one, under its subscriptions.
func TestImportReplacesOfflineSession(t *testing.T) {
	b := startNode(t, &sessionSeam{})
	c, _ := b.connect5("rep", false, 300, nil)
	c.subscribe(t, "rep/#", 1)
	c.leave()
	b.awaitOffline("rep")
	b.publish5("pub", "rep/1", 1, "held")
	poll.Until(t, "rep/1 queued", func() bool {
		info, ok := b.Client("rep")
		return ok && info.Queued == 1
	})

	st := broker.SessionState{Session: store.Session{ClientID: "rep", ProtocolVersion: 5, SessionExpiry: 300},
		Subscriptions: []store.Subscription{{Filter: "new/#", QoS: 1}, {Filter: "rep/#", QoS: 1}}}
	if err := b.ImportSession(st); err != nil {
		t.Fatal(err)
	}
	c2, present := b.connect5("rep", false, 300, nil)
	if !present {
		t.Fatal("session not present")
	}
	if p := c2.next(t); p.Topic != "rep/1" || string(p.Payload) != "held" {
		t.Fatalf("got %s %q, want rep/1 held", p.Topic, p.Payload)
	}
	b.awaitStored("rep", "[session subscription new/# subscription rep/#]")
}
