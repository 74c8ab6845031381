package broker_test

import (
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
// Inflight.NextImmediate deadlock (RATIONALE.md, "Why does the broker
// count the client's Receive Maximum itself?"): a QoS 1 subscriber that
// acknowledges while several publishers deliver to it at once. Before the
// fix, the subscriber's goroutine and the publishers' goroutines could
// block forever on the subscriber's in-flight map; the test then stops
// receiving and fails at its deadline.
func TestQoS1FanInDoesNotDeadlock(t *testing.T) {
	for _, tc := range []struct {
		name string
		rm   uint16 // 0: MQTT 3.1.1
	}{{"v3", 0}, {"v5", 100}} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startServer(t, testConfig(t.TempDir()), fanInExtensions())
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
			// Each publisher keeps at most window messages unacknowledged,
			// so the subscriber's queue stays below mqtt.max_queued_messages
			// and no message is refused for that.
			const publishers, each, window = 6, 1500, 20
			var wg sync.WaitGroup
			for p := range publishers {
				pub := dialRaw(t, addr, fmt.Sprintf("pub%d", p))
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = pub.SetDeadline(time.Now().Add(poll.Timeout))
					for i := 0; i < each; i += window {
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
				got[string(payload)] = true
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
