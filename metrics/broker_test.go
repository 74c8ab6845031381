package metrics

import (
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// expect checks that each series moved by exactly its delta since before,
// polling (deliveries and disconnects are handled on other goroutines), and
// then that no other series of the broker collector moved, but for those
// named in moving (which may).
func expect(t *testing.T, get func() snapshot, before snapshot, what string, deltas map[string]float64, moving ...string) snapshot {
	t.Helper()
	var now snapshot
	diff := func() string {
		var bad []string
		for k, d := range deltas {
			if got := now[k] - before[k]; got != d {
				bad = append(bad, fmt.Sprintf("%s moved by %v, want %v", k, got, d))
			}
		}
		for k, v := range now {
			if _, ok := deltas[k]; ok || !strings.HasPrefix(k, "propolis_") || v == before[k] || isMoving(k, moving) {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s moved by %v, want unchanged", k, v-before[k]))
		}
		sort.Strings(bad)
		return strings.Join(bad, "; ")
	}
	poll.Settle(t, what, func() string {
		now = get()
		return diff()
	})
	return now
}

func isMoving(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// storeSeries move with every store write; the scripted session checks
// them apart.
var storeSeries = []string{"propolis_store_"}

// rawConnect sends a CONNECT (MQTT 5 when v5) with a user name and a
// keepalive and returns the CONNACK's reason code.
func rawConnect(t *testing.T, addr, id, user string, keepalive uint16, v5 bool) (*rawmqtt.Conn, byte) {
	t.Helper()
	c, err := rawmqtt.Open(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, byte(keepalive >> 8), byte(keepalive)}
	if v5 {
		body[6] = 5
		body = append(body, 0) // no properties
	}
	if user != "" {
		body[7] |= 0x80
	}
	body = append(body, byte(len(id)>>8), byte(len(id)))
	body = append(body, id...)
	if user != "" {
		body = append(body, byte(len(user)>>8), byte(len(user)))
		body = append(body, user...)
	}
	if err := c.Send(0x10, body); err != nil {
		t.Fatalf("send connect: %v", err)
	}
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	typ, ack, err := c.ReadPacket()
	_ = c.SetDeadline(time.Time{})
	if err != nil || typ != 0x20 || len(ack) < 2 {
		t.Fatalf("read connack of %s: %#x % x %v", id, typ, ack, err)
	}
	return c, ack[1]
}

// read reads one packet, failing the test on error or a wrong type.
func read(t *testing.T, c *rawmqtt.Conn, what string, want byte) []byte {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(poll.Timeout))
	typ, body, err := c.ReadPacket()
	_ = c.SetDeadline(time.Time{})
	if err != nil || typ&0xf0 != want {
		t.Fatalf("%s: packet %#x (want %#x), %v", what, typ, want, err)
	}
	return append([]byte(nil), body...)
}

// publish sends a PUBLISH and, for QoS 1/2, completes its flow.
func publish(t *testing.T, c *rawmqtt.Conn, topic string, qos byte, retain bool, id uint16, payload string) {
	t.Helper()
	header := byte(0x30) | qos<<1
	if retain {
		header |= 1
	}
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, payload...)
	if err := c.Send(header, body); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	switch qos {
	case 1:
		read(t, c, "puback of "+topic, 0x40)
	case 2:
		read(t, c, "pubrec of "+topic, 0x50)
		if err := c.Send(0x62, []byte{byte(id >> 8), byte(id)}); err != nil {
			t.Fatalf("pubrel: %v", err)
		}
		read(t, c, "pubcomp of "+topic, 0x70)
	}
}

// TestBrokerMetrics drives a real broker through a scripted session over
// loopback and checks, after each step, that exactly the broker series it
// should have moved did, by the amount expected.
func TestBrokerMetrics(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.MQTT.ConnectTimeout = config.Duration(5 * time.Second)
	cfg.MQTT.MaxQueuedMessages = 3
	rules := &brokertest.Rules{
		Refuse:     map[string]byte{"bad": 0x86},
		DenyPrefix: map[string]broker.Verdict{"deny/": {Decision: broker.Deny, ReasonCode: broker.CodeNotAuthorized}},
	}
	srv, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: rules, Events: rules},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	addr := srv.Addr(cfg.Listeners[0].Name)
	opened := fmt.Sprintf("propolis_connections_opened_total{listener=%q}", cfg.Listeners[0].Name)

	reg := prometheus.NewRegistry()
	if err := RegisterBroker(reg, srv); err != nil {
		t.Fatal(err)
	}
	if err := RegisterBroker(reg, srv); err == nil {
		t.Fatal("registering the broker's metrics twice: no error")
	}
	get := scraper(t, reg)

	s0 := get()
	for _, k := range []string{opened, "propolis_clients_connected", "propolis_connects_accepted_total",
		`propolis_disconnects_total{kind="lost"}`, `propolis_messages_received_total{qos="0"}`,
		`propolis_sent_bytes_total{qos="2"}`, `propolis_sessions{state="offline"}`, "propolis_queued_messages",
		"propolis_retained_messages", `propolis_messages_dropped_total{reason="queue_full"}`,
		"propolis_inflight_window_full_total", "propolis_slow_consumer_disconnects_total",
		"propolis_keepalive_timeouts_total", "propolis_store_write_duration_seconds_count",
		"propolis_store_fsync_duration_seconds_count"} {
		if v, ok := s0[k]; !ok || v != 0 {
			t.Errorf("at start: %s = %v (present %v), want 0", k, v, ok)
		}
	}
	if s0["propolis_store_size_bytes"] <= 0 {
		t.Errorf("propolis_store_size_bytes = %v, want > 0", s0["propolis_store_size_bytes"])
	}

	// Refused CONNECTs: MQTT 5 gets 0x86, 3.1.1 its 0x04.
	c5, code := rawConnect(t, addr, "r5", "bad", 60, true)
	c3, code3 := rawConnect(t, addr, "r3", "bad", 60, false)
	_ = c5.Drop()
	_ = c3.Drop()
	if code != 0x86 || code3 != 0x04 {
		t.Fatalf("refusals answered %#x and %#x, want 0x86 and 0x04", code, code3)
	}
	s1 := expect(t, get, s0, "refused CONNECTs", map[string]float64{
		opened: 2,
		`propolis_connects_refused_total{reason_code="0x86"}`: 1,
		`propolis_connects_refused_total{reason_code="0x04"}`: 1,
	}, "propolis_store_size_bytes")

	// QoS 0, 1 and 2 in and out: PUBLISH "t/a" "hello" is 12 bytes at QoS
	// 0, 14 with a packet id (3.1.1 both ways).
	sub, err := rawmqtt.Dial(addr, "sub")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe("t/#", 2); err != nil {
		t.Fatal(err)
	}
	pub, err := rawmqtt.Dial(addr, "pub")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "t/a", 0, false, 0, "hello")
	read(t, sub, "qos 0 delivery", 0x30)
	publish(t, pub, "t/a", 1, false, 1, "hello")
	d := read(t, sub, "qos 1 delivery", 0x30)
	sub.Puback(uint16(d[5])<<8 | uint16(d[6]))
	_ = sub.Flush()
	publish(t, pub, "t/a", 2, false, 2, "hello")
	d = read(t, sub, "qos 2 delivery", 0x30)
	_ = sub.Send(0x50, d[5:7]) // PUBREC
	read(t, sub, "pubrel", 0x60)
	_ = sub.Send(0x70, d[5:7]) // PUBCOMP
	s2 := expect(t, get, s1, "QoS 0/1/2 traffic", map[string]float64{
		"propolis_subscriptions":                    1,
		opened:                                      2,
		"propolis_connects_accepted_total":          2,
		"propolis_clients_connected":                2,
		`propolis_sessions{state="online"}`:         2,
		`propolis_messages_received_total{qos="0"}`: 1,
		`propolis_messages_received_total{qos="1"}`: 1,
		`propolis_messages_received_total{qos="2"}`: 1,
		`propolis_received_bytes_total{qos="0"}`:    12,
		`propolis_received_bytes_total{qos="1"}`:    14,
		`propolis_received_bytes_total{qos="2"}`:    14,
		`propolis_messages_sent_total{qos="0"}`:     1,
		`propolis_messages_sent_total{qos="1"}`:     1,
		`propolis_messages_sent_total{qos="2"}`:     1,
		`propolis_sent_bytes_total{qos="0"}`:        12,
		`propolis_sent_bytes_total{qos="1"}`:        14,
		`propolis_sent_bytes_total{qos="2"}`:        14,
	}, storeSeries...)

	// A retained message (topic "r/1": 12 bytes, 14 with the packet id).
	publish(t, pub, "r/1", 1, true, 3, "hello")
	s3 := expect(t, get, s2, "retained", map[string]float64{
		`propolis_messages_received_total{qos="1"}`: 1,
		`propolis_received_bytes_total{qos="1"}`:    14,
		"propolis_retained_messages":                1,
	}, storeSeries...)

	// Refused publishes: QoS 0 is dropped; a 3.1.1 QoS 1 publisher is
	// disconnected by the server.
	publish(t, pub, "deny/x", 0, false, 0, "hello")
	s4 := expect(t, get, s3, "refused QoS 0", map[string]float64{
		`propolis_messages_received_total{qos="0"}`:                1,
		`propolis_received_bytes_total{qos="0"}`:                   15,
		`propolis_messages_dropped_total{reason="not_authorized"}`: 1,
	}, storeSeries...)
	_ = pub.Send(0x32, append([]byte{0, 6}, "deny/x\x00\x04hello"...))
	s5 := expect(t, get, s4, "refused QoS 1", map[string]float64{
		`propolis_messages_received_total{qos="1"}`:                1,
		`propolis_received_bytes_total{qos="1"}`:                   17,
		`propolis_messages_dropped_total{reason="not_authorized"}`: 1,
		`propolis_disconnects_total{kind="server"}`:                1,
		"propolis_clients_connected":                               -1,
		`propolis_sessions{state="online"}`:                        -1,
	}, storeSeries...)
	_ = pub.Drop()

	// An offline persistent session with 3 queued messages
	// (mqtt.max_queued_messages) and 2 dropped for its full queue.
	sleeper, _, err := rawmqtt.DialSession(addr, "sleeper")
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper.Subscribe("q/#", 1); err != nil {
		t.Fatal(err)
	}
	_ = sleeper.Close() // DISCONNECT
	s6 := expect(t, get, s5, "persistent session offline", map[string]float64{
		"propolis_subscriptions":           1,
		opened:                             1,
		"propolis_connects_accepted_total": 1,
		`propolis_disconnects_total{kind="client"}`: 1,
		`propolis_sessions{state="offline"}`:        1,
	}, storeSeries...)
	pub2, err := rawmqtt.Dial(addr, "pub2")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		publish(t, pub2, "q/x", 1, false, uint16(i), "hello")
	}
	s7 := expect(t, get, s6, "queued and queue full", map[string]float64{
		opened:                                                 1,
		"propolis_connects_accepted_total":                     1,
		"propolis_clients_connected":                           1,
		`propolis_sessions{state="online"}`:                    1,
		`propolis_messages_received_total{qos="1"}`:            5,
		`propolis_received_bytes_total{qos="1"}`:               70,
		"propolis_queued_messages":                             3,
		`propolis_messages_dropped_total{reason="queue_full"}`: 2,
	}, storeSeries...)
	if s7["propolis_store_write_duration_seconds_count"] <= s5["propolis_store_write_duration_seconds_count"] {
		t.Errorf("store writes not timed: %v then %v", s5["propolis_store_write_duration_seconds_count"], s7["propolis_store_write_duration_seconds_count"])
	}

	// An MQTT 5 subscriber with a Receive Maximum of 1 that does not
	// acknowledge: of 3 deliveries, 2 wait behind its full window. Its
	// PUBLISH packets carry a property length: 15 bytes each.
	win, err := rawmqtt.DialV5(addr, "win", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := win.Subscribe("w/#", 1); err != nil {
		t.Fatal(err)
	}
	for i := 6; i <= 8; i++ {
		publish(t, pub2, "w/x", 1, false, uint16(i), "hello")
	}
	read(t, win, "first delivery", 0x30)
	s8 := expect(t, get, s7, "window full", map[string]float64{
		"propolis_subscriptions":                    1,
		opened:                                      1,
		"propolis_connects_accepted_total":          1,
		"propolis_clients_connected":                1,
		`propolis_sessions{state="online"}`:         1,
		`propolis_messages_received_total{qos="1"}`: 3,
		`propolis_received_bytes_total{qos="1"}`:    42,
		`propolis_messages_sent_total{qos="1"}`:     3,
		`propolis_sent_bytes_total{qos="1"}`:        45,
		"propolis_queued_messages":                  3,
		"propolis_inflight_window_full_total":       2,
	}, storeSeries...)

	// A dropped TCP connection: lost, and its clean session gone.
	_ = win.Drop()
	s9 := expect(t, get, s8, "connection lost", map[string]float64{
		"propolis_subscriptions":                  -1,
		`propolis_disconnects_total{kind="lost"}`: 1,
		"propolis_clients_connected":              -1,
		`propolis_sessions{state="online"}`:       -1,
		"propolis_queued_messages":                -3,
	}, storeSeries...)

	// A take-over: the second "dup" ends the first.
	dup1, err := rawmqtt.Dial(addr, "dup")
	if err != nil {
		t.Fatal(err)
	}
	defer dup1.Drop()
	dup2, err := rawmqtt.Dial(addr, "dup")
	if err != nil {
		t.Fatal(err)
	}
	s10 := expect(t, get, s9, "take-over", map[string]float64{
		opened:                             2,
		"propolis_connects_accepted_total": 2,
		`propolis_disconnects_total{kind="takeover"}`: 1,
		"propolis_clients_connected":                  1,
		`propolis_sessions{state="online"}`:           1,
	}, storeSeries...)

	// An MQTT 5 client announcing a Maximum Packet Size of 20 bytes: a
	// 39-byte delivery is dropped as too large, a 12-byte one goes out.
	tiny, err := rawmqtt.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	connect := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 5, 0x27, 0, 0, 0, 20}, 0, 4, 't', 'i', 'n', 'y')
	if err := tiny.Send(0x10, connect); err != nil {
		t.Fatal(err)
	}
	if ack := read(t, tiny, "tiny connack", 0x20); ack[1] != 0 {
		t.Fatalf("tiny refused: % x", ack)
	}
	if err := tiny.Send(0x82, append([]byte{0, 1, 0, 0, 5}, "big/#\x00"...)); err != nil {
		t.Fatal(err)
	}
	read(t, tiny, "tiny suback", 0x90)
	publish(t, pub2, "big/x", 0, false, 0, strings.Repeat("x", 30))
	publish(t, pub2, "big/y", 0, false, 0, "hi")
	// (a Conn from Open parses as 3.1.1: the property length stays in front)
	if topic, _, payload := tiny.ParsePublish(0x30, read(t, tiny, "small delivery", 0x30)); string(topic) != "big/y" || string(payload) != "\x00hi" {
		t.Fatalf("tiny got %q %q, want the small message only", topic, payload)
	}
	s10b := expect(t, get, s10, "too large", map[string]float64{
		"propolis_subscriptions":                              1,
		opened:                                                1,
		"propolis_connects_accepted_total":                    1,
		"propolis_clients_connected":                          1,
		`propolis_sessions{state="online"}`:                   1,
		`propolis_messages_received_total{qos="0"}`:           2,
		`propolis_received_bytes_total{qos="0"}`:              50,
		`propolis_messages_sent_total{qos="0"}`:               1,
		`propolis_sent_bytes_total{qos="0"}`:                  12,
		`propolis_messages_dropped_total{reason="too_large"}`: 1,
	}, storeSeries...)

	// Meanwhile (both take seconds): a message with a Message Expiry
	// Interval of 1 s queued for an offline session, dropped as expired
	// by mochi's sweep; and a keepalive of 1 s and silence, closed after
	// 1.5 s.
	sleeper2, _, err := rawmqtt.DialSession(addr, "sleeper2")
	if err != nil {
		t.Fatal(err)
	}
	if err := sleeper2.Subscribe("e/#", 1); err != nil {
		t.Fatal(err)
	}
	_ = sleeper2.Close()
	poll.Until(t, "sleeper2 offline", func() bool { return get()[`propolis_sessions{state="offline"}`] == 2 })
	pub5, err := rawmqtt.DialV5(addr, "pub5", 10)
	if err != nil {
		t.Fatal(err)
	}
	// PUBLISH QoS 1 "e/x", id 9, Message Expiry Interval 1 s: 20 bytes.
	if err := pub5.Send(0x32, append([]byte{0, 3, 'e', '/', 'x', 0, 9, 5, 0x02, 0, 0, 0, 1}, "hello"...)); err != nil {
		t.Fatal(err)
	}
	read(t, pub5, "puback of e/x", 0x40)
	idle, code := rawConnect(t, addr, "idle", "", 1, false)
	defer idle.Drop()
	if code != 0 {
		t.Fatalf("idle client refused: %#x", code)
	}
	s11 := expect(t, get, s10b, "expiry and keepalive timeout", map[string]float64{
		"propolis_subscriptions":                            1,
		opened:                                              3,
		"propolis_connects_accepted_total":                  3,
		"propolis_clients_connected":                        1,
		`propolis_sessions{state="online"}`:                 1,
		`propolis_sessions{state="offline"}`:                1,
		`propolis_disconnects_total{kind="client"}`:         1,
		`propolis_messages_received_total{qos="1"}`:         1,
		`propolis_received_bytes_total{qos="1"}`:            20,
		`propolis_messages_dropped_total{reason="expired"}`: 1,
		"propolis_keepalive_timeouts_total":                 1,
		`propolis_disconnects_total{kind="lost"}`:           1,
	}, storeSeries...)

	// DISCONNECTs.
	_ = sub.Close()
	_ = pub2.Close()
	_ = dup2.Close()
	_ = tiny.Close()
	_ = pub5.Close()
	s12 := expect(t, get, s11, "DISCONNECTs", map[string]float64{
		"propolis_subscriptions":                    -2,
		`propolis_disconnects_total{kind="client"}`: 5,
		"propolis_clients_connected":                -5,
		`propolis_sessions{state="online"}`:         -5,
	}, storeSeries...)
	if s12[`propolis_sessions{state="offline"}`] != 2 || s12["propolis_queued_messages"] != 3 || s12["propolis_retained_messages"] != 1 {
		t.Errorf("at the end: sessions offline %v, queued %v, retained %v; want 2, 3, 1",
			s12[`propolis_sessions{state="offline"}`], s12["propolis_queued_messages"], s12["propolis_retained_messages"])
	}

	// Durability sync: the durable writes (the session, its queued
	// messages, the retained message) waited for write-ahead log fsyncs.
	if s12["propolis_store_fsync_duration_seconds_count"] == 0 || s12["propolis_store_fsync_duration_seconds_sum"] <= 0 {
		t.Errorf("no write-ahead log fsync timed: count %v sum %v",
			s12["propolis_store_fsync_duration_seconds_count"], s12["propolis_store_fsync_duration_seconds_sum"])
	}

	// StoreWriteLatency covers the last one to two seconds: right after a
	// store write (a retained message, replaced each time) it is above 0.
	// A machine that stalls the test past the window retries.
	last, err := rawmqtt.Dial(addr, "last")
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	poll.Until(t, "StoreWriteLatency above 0 after a store write", func() bool {
		publish(t, last, "r/2", 1, true, 1, "hello")
		return srv.StoreWriteLatency() > 0
	})
}
