package host

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// trackerState mirrors examples/session-tracker's record.
type trackerState struct {
	ClientID       string    `json:"client_id"`
	LastConnect    time.Time `json:"last_connect"`
	LastDisconnect time.Time `json:"last_disconnect"`
	Graceful       bool      `json:"graceful"`
	Disconnect     string    `json:"disconnect"`
}

// TestSessionTracker runs examples/session-tracker, built from the
// repository, against a real broker: a persistent client connects,
// disconnects gracefully, reconnects and loses its connection; the
// tracker's storage record and the session's attributes follow, stamped
// with the events' times.
func TestSessionTracker(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, extDir, "session-tracker", example(t, "session-tracker"), 0,
		"services: [session_attributes, storage, publish]\ntick: 1m\nlimits:\n  call_deadline: 10s\n")
	w := startWired(t, extDir, Options{})

	record := func() trackerState {
		v, ok, err := w.srv.StorageGet("session-tracker", "client/dev-1")
		if err != nil {
			t.Fatal(err)
		}
		var s trackerState
		if ok {
			if err := json.Unmarshal(v, &s); err != nil {
				t.Fatalf("record %s: %v", v, err)
			}
		}
		return s
	}
	attr := func(key string) string {
		v, _, err := w.srv.Attribute("dev-1", "session-tracker."+key)
		if err != nil {
			t.Fatalf("attribute %s: %v", key, err)
		}
		return string(v)
	}

	c, _, err := rawmqtt.DialSession(w.addr, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "connect recorded", func() bool { return !record().LastConnect.IsZero() && attr("last_connect") != "" })
	connected := record().LastConnect
	if got := attr("last_connect"); got != connected.UTC().Format(time.RFC3339Nano) {
		t.Errorf("attribute last_connect %q, record %v", got, connected)
	}

	if err := c.Close(); err != nil { // DISCONNECT: graceful
		t.Fatal(err)
	}
	poll.Until(t, "graceful disconnect recorded", func() bool { return !record().LastDisconnect.IsZero() })
	s := record()
	if !s.Graceful || s.Disconnect != "client" || s.LastDisconnect.Before(connected) {
		t.Fatalf("after DISCONNECT: %+v", s)
	}
	poll.Until(t, "graceful attribute", func() bool { return attr("graceful") == "true" })

	c, present, err := rawmqtt.DialSession(w.addr, "dev-1")
	if err != nil || !present {
		t.Fatalf("reconnect: session present %v, %v", present, err)
	}
	poll.Until(t, "reconnect recorded", func() bool { return record().LastConnect.After(connected) })
	first := s.LastDisconnect
	_ = c.Drop() // no DISCONNECT: not graceful
	poll.Until(t, "lost connection recorded", func() bool { return record().LastDisconnect.After(first) })
	if s := record(); s.Graceful || s.Disconnect != "lost" {
		t.Fatalf("after a dropped connection: %+v", s)
	}
	poll.Until(t, "graceful attribute false", func() bool { return attr("graceful") == "false" })
	if got, want := attr("last_disconnect"), record().LastDisconnect.UTC().Format(time.RFC3339Nano); got != want {
		t.Errorf("attribute last_disconnect %q, record %q", got, want)
	}

	// A subscriber to tracker/# gets the record as a retained message. The
	// event publishes it after writing the attributes polled above, so
	// wait for the retained copy to match the stored record first.
	v, ok, err := w.srv.StorageGet("session-tracker", "client/dev-1")
	if err != nil || !ok {
		t.Fatalf("record: %v, %v", ok, err)
	}
	poll.Until(t, "retained record up to date", func() bool {
		m, ok := w.srv.Retained("tracker/dev-1")
		return ok && string(m.Payload) == string(v)
	})
	got := make(chan string, 8)
	sub, _, err := v5(t, w.addr, "watcher", "", "", func(p paho.PublishReceived) {
		if p.Packet.Topic == "tracker/dev-1" && p.Packet.Retain {
			got <- string(p.Packet.Payload)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tracker/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != string(v) {
			t.Errorf("retained tracker/dev-1 = %s, the stored record %s", p, v)
		}
	case <-time.After(poll.Timeout):
		t.Fatal("no retained tracker/dev-1")
	}
}

// TestSessionTrackerForgets: the tracker's tick removes the records of
// clients gone longer than forget_after, and keeps those of connected
// clients.
func TestSessionTrackerForgets(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "allow-all", example(t, "allow-all"), 0, "")
	installExtension(t, extDir, "session-tracker", example(t, "session-tracker"), 0,
		"services: [session_attributes, storage, publish]\ntick: 100ms\nlimits:\n  call_deadline: 10s\nconfig:\n  forget_after: 1ms\n")
	w := startWired(t, extDir, Options{})
	has := func(id string) bool {
		_, ok, err := w.srv.StorageGet("session-tracker", "client/"+id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	stay, err := rawmqtt.Dial(w.addr, "stays")
	if err != nil {
		t.Fatal(err)
	}
	defer stay.Close()
	gone, err := rawmqtt.Dial(w.addr, "goes")
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "both recorded", func() bool { return has("stays") && has("goes") })
	_ = gone.Close()
	poll.Until(t, "the gone client forgotten", func() bool { return !has("goes") })
	poll.Until(t, "its retained message cleared", func() bool { _, ok := w.srv.Retained("tracker/goes"); return !ok })
	if _, ok := w.srv.Retained("tracker/stays"); !ok {
		t.Error("the connected client has no retained message")
	}
	// Ticks ran since the disconnect (the cursor moved on): the connected
	// client's record is still there.
	if !has("stays") {
		t.Fatal("the record of a connected client was forgotten")
	}
}
