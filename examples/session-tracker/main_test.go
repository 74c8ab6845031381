package main

import (
	"encoding/json"
	"testing"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestApply(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	connect := func(at time.Time) *propolis.Event {
		return &propolis.Event{Kind: propolis.EventAuthSucceeded, ClientID: "c1", Time: at}
	}
	disconnect := func(at time.Time, kind propolis.DisconnectKind, code byte) *propolis.Event {
		return &propolis.Event{Kind: propolis.EventDisconnect, ClientID: "c1", Time: at, DisconnectKind: kind, ReasonCode: code}
	}
	s := State{ClientID: "c1"}
	steps := []struct {
		name    string
		e       *propolis.Event
		changed bool
		want    State
	}{
		{"connect", connect(t0), true, State{ClientID: "c1", LastConnect: t0}},
		{"graceful disconnect", disconnect(t0.Add(time.Minute), propolis.DisconnectByClient, 0), true,
			State{ClientID: "c1", LastConnect: t0, LastDisconnect: t0.Add(time.Minute), Graceful: true, Disconnect: "client"}},
		{"an older connect is ignored", connect(t0.Add(-time.Hour)), false,
			State{ClientID: "c1", LastConnect: t0, LastDisconnect: t0.Add(time.Minute), Graceful: true, Disconnect: "client"}},
		{"reconnect", connect(t0.Add(2 * time.Minute)), true,
			State{ClientID: "c1", LastConnect: t0.Add(2 * time.Minute), LastDisconnect: t0.Add(time.Minute), Graceful: true, Disconnect: "client"}},
		{"connection lost", disconnect(t0.Add(3*time.Minute), propolis.DisconnectConnectionLost, 0x8D), true,
			State{ClientID: "c1", LastConnect: t0.Add(2 * time.Minute), LastDisconnect: t0.Add(3 * time.Minute), Disconnect: "lost", ReasonCode: 0x8D}},
		{"a replayed disconnect is ignored", disconnect(t0.Add(3*time.Minute), propolis.DisconnectByClient, 0), false,
			State{ClientID: "c1", LastConnect: t0.Add(2 * time.Minute), LastDisconnect: t0.Add(3 * time.Minute), Disconnect: "lost", ReasonCode: 0x8D}},
		{"other events are ignored", &propolis.Event{Kind: propolis.EventSubscribe, Time: t0.Add(time.Hour)}, false,
			State{ClientID: "c1", LastConnect: t0.Add(2 * time.Minute), LastDisconnect: t0.Add(3 * time.Minute), Disconnect: "lost", ReasonCode: 0x8D}},
	}
	for _, st := range steps {
		if changed := s.apply(st.e); changed != st.changed || s != st.want {
			t.Fatalf("%s: changed %v, state %+v; want %v, %+v", st.name, changed, s, st.changed, st.want)
		}
	}
}

func TestStateJSON(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 5, time.UTC)
	b, err := json.Marshal(&State{ClientID: "c1", LastConnect: t0})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"client_id":"c1","last_connect":"2026-11-29T12:00:00.000000005Z","graceful":false,"reason_code":0}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
}

func TestLastSeen(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	online := State{LastConnect: now.Add(-time.Hour), LastDisconnect: now.Add(-2 * time.Hour)}
	if got := online.lastSeen(now); !got.Equal(now) {
		t.Errorf("a connected client was last seen %v, want now", got)
	}
	gone := State{LastConnect: now.Add(-2 * time.Hour), LastDisconnect: now.Add(-time.Hour)}
	if got := gone.lastSeen(now); !got.Equal(now.Add(-time.Hour)) {
		t.Errorf("a gone client was last seen %v, want its disconnect", got)
	}
}

// Natively the host services answer NOT_AVAILABLE: the handlers must
// neither panic nor loop.
func TestHandlersWithoutBroker(t *testing.T) {
	onEvent(&propolis.Event{Kind: propolis.EventAuthSucceeded, ClientID: "c1", Time: time.Now()})
	tick()
}
