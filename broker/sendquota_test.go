package broker_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// TestQoS1FanInDoesNotDeadlock is the regression test of mochi's
// Inflight.NextImmediate deadlock, and of its send quota leaking (RATIONALE.md, "Why does the broker
// count the client's Receive Maximum itself?"): a QoS 1 subscriber that
// acknowledges while several publishers deliver to it at once. Before the
// fix, the subscriber's goroutine and the publishers' goroutines could
// block forever on the subscriber's in-flight map, or the subscriber's
// send quota leaked to 0 and every delivery stayed parked; the test then
// stops receiving and fails at its deadline (and the broker's Close, at
// the end of the test, hangs until go test's timeout, whose goroutine dump
// shows where).
func TestQoS1FanInDoesNotDeadlock(t *testing.T) {
	for _, tc := range []struct {
		name string
		rm   uint16 // 0: MQTT 3.1.1
	}{
		{"v3", 0},
		// mochi's quota (1000, the default mqtt.max_queued_messages) is
		// never used up: NextImmediate runs after every PUBACK.
		{"v5", 1000},
		// mochi's quota runs out: deliveries were parked, and each one
		// released leaked a unit of the quota.
		{"v5-window", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Overload protection off: on a loaded machine (make test runs
			// packages side by side) the fan-in's backlog and slow fsyncs
			// raise the stress level until the publishers are throttled,
			// and the test measured the throttle, not a deadlock.
			cfg := testConfig(t.TempDir())
			cfg.Overload.Enabled = false
			_, addr := startServer(t, cfg, fanInExtensions())
			var sub *rawmqtt.Conn
			var err error
			if tc.rm == 0 {
				sub, err = rawmqtt.Dial(addr, "sub")
			} else {
				sub, err = rawmqtt.DialV5(addr, "sub", tc.rm)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			if err := sub.Subscribe("fan/#", 1); err != nil {
				t.Fatal(err)
			}
			// The publishers send in windows of 20 and wait for their
			// PUBACKs, and take a token per message, which the subscriber
			// gives back when the message arrives: at most 200 are on their
			// way to it, below mqtt.max_queued_messages (a PUBACK to a
			// publisher only says the message is queued for the subscriber),
			// so none is dropped for a full queue. A publisher holds at most
			// window-1 tokens while it waits for more, so they never run out.
			const publishers, each, window = 6, 4000, 20
			tokens := make(chan struct{}, 200)
			for range cap(tokens) {
				tokens <- struct{}{}
			}
			var wg sync.WaitGroup
			for p := range publishers {
				pub := dialRaw(t, addr, fmt.Sprintf("pub%d", p))
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = pub.SetDeadline(time.Now().Add(poll.Timeout))
					for i := 0; i < each; i += window {
						for range window {
							select {
							case <-tokens:
							case <-time.After(poll.Timeout):
								return
							}
						}
						for k := i; k < i+window; k++ {
							pub.Publish(fmt.Sprintf("fan/%d", p), 1, uint16(k%65535+1), []byte(fmt.Sprintf("%d/%d", p, k)))
						}
						if pub.Flush() != nil {
							return
						}
						for range window {
							if _, _, err := pub.ReadPacket(); err != nil {
								return
							}
						}
					}
				}()
			}
			got := make(map[string]bool, publishers*each)
			deadline := time.Now().Add(poll.Timeout)
			_ = sub.SetDeadline(deadline)
			for len(got) < publishers*each {
				typ, body, err := sub.ReadPacket()
				if err != nil {
					t.Fatalf("subscriber got %d of %d messages, then: %v\n%s", len(got), publishers*each, err, stuckIn("NextImmediate"))
				}
				if typ>>4 != 3 {
					continue
				}
				_, id, payload := sub.ParsePublish(typ, body)
				if !got[string(payload)] {
					got[string(payload)] = true
					tokens <- struct{}{}
				}
				sub.Puback(id)
				if sub.Buffered() == 0 {
					if err := sub.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			_ = sub.Flush()
			wg.Wait()
		})
	}
}

// fanInExtensions allows every client everything.
func fanInExtensions() broker.Extensions {
	rules := &brokertest.Rules{}
	return broker.Extensions{Authenticator: rules, Events: rules}
}

// stuckIn returns the stacks of the goroutines whose stack mentions fn, for
// the failure message of a test that stopped making progress.
func stuckIn(fn string) string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			out = append(out, g)
		}
	}
	return fmt.Sprintf("%d goroutines in %s:\n%s", len(out), fn, strings.Join(out, "\n\n"))
}

// connectRM is the body of an MQTT 5 CONNECT with keepalive 60 s, a
// session expiry of one hour and Receive Maximum rm.
func connectRM(id string, clean bool, rm uint16) []byte {
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	b := str16(nil, "MQTT")
	b = append(b, 5, flags, 0, 60)
	b = append(b, props([]byte{0x11, 0, 0, 0x0e, 0x10}, []byte{propReceiveMaximum, byte(rm >> 8), byte(rm)})...)
	return str16(b, id)
}

// window5 is an MQTT 5 subscriber that checks the broker keeps its
// Receive Maximum: it fails the test when a QoS 1 PUBLISH arrives while max
// are unacknowledged.
type window5 struct {
	*conn5
	max     int
	unacked []uint16 // packet ids received and not acknowledged, oldest first
	got     []string // payloads of the QoS 1 messages, in arrival order
	dups    int      // how many arrived with DUP set
}

// dialWindow5 connects id with Receive Maximum max and reports whether a
// session was present.
func dialWindow5(t *testing.T, addr, id string, clean bool, max int) (*window5, bool) {
	t.Helper()
	c, ack := open5(t, addr, connectRM(id, clean, uint16(max)))
	if len(ack) < 2 || ack[1] != 0 {
		t.Fatalf("CONNACK % x, want accepted", ack)
	}
	return &window5{conn5: c, max: max}, ack[0]&1 == 1
}

// read reads one packet, checking and recording a QoS 1 PUBLISH; it returns
// the packet's type and, for a QoS 0 PUBLISH, its payload.
func (w *window5) read() (byte, string) {
	w.t.Helper()
	typ, body := w.next()
	if typ>>4 != 3 {
		return typ, ""
	}
	_, id, rest := rawmqtt.ParsePublish(typ, body)
	plen, k := binary.Uvarint(rest)
	if k <= 0 || k+int(plen) > len(rest) {
		w.t.Fatalf("malformed PUBLISH % x", body)
	}
	payload := string(rest[k+int(plen):])
	if (typ>>1)&3 == 0 {
		return typ, payload
	}
	if len(w.unacked) >= w.max {
		w.t.Fatalf("PUBLISH %q (id %d) arrived with %d unacknowledged (%v), Receive Maximum %d", payload, id, len(w.unacked), w.unacked, w.max)
	}
	if typ&0x08 != 0 {
		w.dups++
	}
	w.unacked = append(w.unacked, id)
	w.got = append(w.got, payload)
	return typ, payload
}

// ack acknowledges the oldest unacknowledged PUBLISH.
func (w *window5) ack() {
	w.t.Helper()
	id := w.unacked[0]
	w.unacked = w.unacked[1:]
	w.send(0x40, []byte{byte(id >> 8), byte(id)})
}

// untilPingresp sends a PINGREQ and reads up to its PINGRESP. The broker
// answers it after writing everything it wrote before handling it.
func (w *window5) untilPingresp() {
	w.t.Helper()
	w.send(0xc0, nil)
	for {
		if typ, _ := w.read(); typ == 0xd0 {
			return
		}
	}
}

// TestReceiveMaximumOnDeliveries: an MQTT 5 subscriber with Receive
// Maximum 2 never has more than 2 QoS 1 deliveries unacknowledged; the
// rest wait and arrive, in order, as it acknowledges, on the same
// connection and after it reconnects to its session (the DUP resends).
func TestReceiveMaximumOnDeliveries(t *testing.T) {
	_, addr := startServer(t, testConfig(t.TempDir()), fanInExtensions())
	sub, _ := dialWindow5(t, addr, "sub", true, 2)
	sub.send(0x82, subscribe5(1, "rm/t", 1))
	if typ, body := sub.next(); typ != 0x90 || body[len(body)-1] != 1 {
		t.Fatalf("SUBACK: %#x % x", typ, body)
	}
	pub := dialRaw(t, addr, "pub")
	const n = 6
	for i := range n {
		pub.Publish("rm/t", 1, uint16(i+1), []byte(fmt.Sprint(i)))
		expect(t, pub, fmt.Sprintf("PUBACK %d", i), 0x40, uint16(i+1))
	}
	// A QoS 0 message after them overtakes the held ones: when it arrives,
	// all six went through the broker's writer, and only two were sent.
	pub.Publish("rm/t", 0, 0, []byte("marker"))
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		if typ, payload := sub.read(); typ>>4 == 3 && payload == "marker" {
			break
		}
	}
	if len(sub.unacked) != 2 {
		t.Fatalf("before the QoS 0 marker: %d unacknowledged deliveries (%v), want 2", len(sub.unacked), sub.got)
	}
	sub.ack() // one acknowledgement lets exactly one more through
	sub.untilPingresp()
	if len(sub.got) != 3 || len(sub.unacked) != 2 {
		t.Fatalf("after one PUBACK: received %v, %d unacknowledged; want 3 received, 2 unacknowledged", sub.got, len(sub.unacked))
	}

	// Reconnect to the session with three delivered and unacknowledged
	// (two on the wire, and one more), three never sent: mochi resends all
	// its in-flight messages, and still two at most may be unacknowledged.
	_ = sub.Drop()
	sub, present := dialWindow5(t, addr, "sub", false, 2)
	if !present {
		t.Fatal("session not present after reconnecting")
	}
	sub.untilPingresp()
	if len(sub.unacked) != 2 || sub.dups != 2 {
		t.Fatalf("after reconnecting: received %v (%d with DUP), %d unacknowledged; want 2 resent with DUP", sub.got, sub.dups, len(sub.unacked))
	}
	for len(sub.got) < n-1 { // the first message was acknowledged before
		sub.ack()
		sub.read()
	}
	for len(sub.unacked) > 0 {
		sub.ack()
	}
	sub.untilPingresp()
	if want := []string{"1", "2", "3", "4", "5"}; fmt.Sprint(sub.got) != fmt.Sprint(want) {
		t.Fatalf("after reconnecting: received %v, want %v in order", sub.got, want)
	}
}
