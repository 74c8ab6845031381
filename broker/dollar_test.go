package broker_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// MQTT 5 4.7.2 [MQTT-4.7.2-1] (3.1.1 4.7.2 alike): a subscription whose
// filter starts with a wildcard matches no topic starting with '$', for
// the retained messages sent at subscribe time and for live deliveries,
// shared subscriptions included. mochi skipped only $SYS in its retained
// scan, and not at all for shared subscriptions (see dollar.go).

// upTo returns the topics c receives up to and including marker, which
// the test had sent after everything else.
func (c *client5) upTo(t *testing.T, marker string) []string {
	t.Helper()
	var got []string
	for {
		p := c.next(t)
		got = append(got, p.Topic)
		if p.Topic == marker {
			return got
		}
	}
}

// v3UpTo is upTo for a 3.1.1 client's messages.
func v3UpTo(t *testing.T, msgs <-chan paho3.Message, marker string) []string {
	t.Helper()
	var got []string
	for {
		select {
		case m := <-msgs:
			got = append(got, m.Topic())
			if m.Topic() == marker {
				return got
			}
		case <-time.After(poll.Timeout):
			t.Fatalf("no %s after %q", marker, got)
		}
	}
}

// TestWildcardRetainedSkipsDollarTopics: a new subscription whose first
// level is a wildcard is sent no retained message of a '$' topic; one
// starting with that '$' level is.
func TestWildcardRetainedSkipsDollarTopics(t *testing.T) {
	b := startSvc(t)
	for _, tp := range []string{"a/y", "$x/y", "$x/y/z", "$x"} {
		if err := b.PutRetained(broker.Message{Topic: tp, Payload: []byte("r"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ filter, want string }{
		{"#", "[a/y m]"},
		{"+/#", "[a/y m]"},
		{"+/y", "[a/y m]"},
		{"+/+/+", "[m]"},
		{"$x/#", "[$x $x/y $x/y/z m]"},
	} {
		t.Run("v5 "+tc.filter, func(t *testing.T) {
			c, _ := b.connect5("s5", true, 0, nil)
			defer c.leave()
			c.subscribe(t, tc.filter, 1)
			c.subscribe(t, "m", 1)
			// The client's own PUBLISH is handled after the SUBSCRIBE's
			// retained messages: the marker comes after them.
			if _, err := c.Publish(ctx5(t), &paho.Publish{Topic: "m", QoS: 1, Payload: []byte("m")}); err != nil {
				t.Fatal(err)
			}
			if got := sorted(c.upTo(t, "m")); got != tc.want {
				t.Errorf("%s got %s, want %s", tc.filter, got, tc.want)
			}
		})
		t.Run("v3 "+tc.filter, func(t *testing.T) {
			msgs := make(chan paho3.Message, 16)
			c := v3Connect(t, v3Options(b.addr, "s3"))
			defer c.Disconnect(0)
			wait(t, "subscribe", c.SubscribeMultiple(map[string]byte{tc.filter: 1, "m": 1}, func(_ paho3.Client, m paho3.Message) { msgs <- m }))
			wait(t, "publish", c.Publish("m", 1, false, "m"))
			if got := sorted(v3UpTo(t, msgs, "m")); got != tc.want {
				t.Errorf("%s got %s, want %s", tc.filter, got, tc.want)
			}
		})
	}
}

// TestWildcardLiveSkipsDollarTopics: a PUBLISH to a '$' topic reaches no
// subscription whose first level is a wildcard, shared or not, MQTT 5 or
// 3.1.1; one on "$x/#" gets it.
func TestWildcardLiveSkipsDollarTopics(t *testing.T) {
	b := startSvc(t)
	filters := []string{"#", "+/y", "$share/g/#", "$share/h/+/y", "$x/#"}
	subs := make([]*client5, len(filters))
	v3 := make([]chan paho3.Message, len(filters))
	for i, f := range filters {
		subs[i], _ = b.connect5("s5-"+f, true, 0, nil)
		defer subs[i].leave()
		subs[i].subscribe(t, f, 1)
		subs[i].subscribe(t, "m/y", 1)
		v3[i] = make(chan paho3.Message, 16)
		c := v3Connect(t, v3Options(b.addr, "s3-"+f))
		defer c.Disconnect(0)
		ch := v3[i]
		f3 := strings.Replace(f, "$share/", "$share/v3", 1) // groups of their own
		wait(t, "subscribe", c.SubscribeMultiple(map[string]byte{f3: 1, "m/y": 1}, func(_ paho3.Client, m paho3.Message) { ch <- m }))
	}
	pub, _ := b.connect5("pub", true, 0, nil)
	defer pub.leave()
	for _, tp := range []string{"$x/y", "m/y"} { // in order: m/y comes after
		if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: tp, QoS: 1, Payload: []byte("p")}); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range filters {
		want := "[m/y]"
		if f == "$x/#" {
			want = "[$x/y m/y]"
		}
		if got := sorted(subs[i].upTo(t, "m/y")); got != want {
			t.Errorf("v5 %s got %s, want %s", f, got, want)
		}
		if got := sorted(v3UpTo(t, v3[i], "m/y")); got != want {
			t.Errorf("v3 %s got %s, want %s", f, got, want)
		}
	}
}

// sorted returns the topics sorted, printed.
func sorted(topics []string) string {
	slices.Sort(topics)
	return fmt.Sprint(topics)
}

// TestSharedWildcardAddsNothingToDollar: a client holding "$x/#" (QoS 0,
// subscription identifier 3) and "$share/g/#" (QoS 1, identifier 7) gets
// a PUBLISH to "$x/y" as "$x/#" says: the shared "#" matches no '$' topic,
// so its QoS and identifier must not be merged into the copy
// [MQTT-4.7.2-1]. (mochi picked the shared group and merged it; the read
// check passed because "$x/#" matches.)
func TestSharedWildcardAddsNothingToDollar(t *testing.T) {
	b := startSvc(t)
	c, _ := b.connect5("both", true, 0, nil)
	defer c.leave()
	for _, s := range []struct {
		filter string
		qos    byte
		id     int
	}{{"$x/#", 0, 3}, {"$share/g/#", 1, 7}} {
		id := s.id
		if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{
			Properties:    &paho.SubscribeProperties{SubscriptionIdentifier: &id},
			Subscriptions: []paho.SubscribeOptions{{Topic: s.filter, QoS: s.qos}},
		}); err != nil {
			t.Fatalf("subscribe %s: %v", s.filter, err)
		}
	}
	pub, _ := b.connect5("pub", true, 0, nil)
	defer pub.leave()
	if _, err := pub.Publish(ctx5(t), &paho.Publish{Topic: "$x/y", QoS: 1, Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	p := c.next(t)
	id := 0
	if p.Properties != nil && p.Properties.SubscriptionIdentifier != nil {
		id = *p.Properties.SubscriptionIdentifier
	}
	if p.Topic != "$x/y" || p.QoS != 0 || id != 3 {
		t.Errorf("got %s QoS %d identifier %d, want $x/y QoS 0 identifier 3 ($x/#'s)", p.Topic, p.QoS, id)
	}
}
