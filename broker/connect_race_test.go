package broker_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// Concurrent CONNECTs of one client id (a client-id collision, a reconnect
// storm), on a real broker with real MQTT 5 clients holding persistent
// sessions. mochi takes over the existing session and adds the new client
// to its map in two steps, so without the hook's per-id serialisation two
// CONNECTs could both take over the same old session and the one added
// first be replaced silently: never told it was taken over, still
// connected, but out of mochi's map.

// raceConnects opens n connections at once, each CONNECTing as id with a
// persistent session (600 s), and returns every connection and those
// whose CONNECT was accepted.
func raceConnects(t *testing.T, addr, id string, n int) (conns []net.Conn, accepted []racer) {
	t.Helper()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, poll.Timeout)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
			c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
			exp := uint32(600)
			ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
			defer cancel()
			_, err = c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, conn)
			if err == nil {
				accepted = append(accepted, racer{conn, c})
			}
		}()
	}
	wg.Wait()
	return conns, accepted
}

// racer is a connection whose CONNECT was accepted, with its client.
type racer struct {
	conn net.Conn
	c    *paho.Client
}

// Once every connection has ended, the deciding extension is remembered
// for the one session left and for no replaced client (each entry would
// keep a whole client alive).
func TestConcurrentConnectsForgetReplacedClients(t *testing.T) {
	b := startAdmin(t)
	for range 40 {
		conns, _ := raceConnects(t, b.Addr("tcp"), "dup", 6)
		for _, c := range conns {
			_ = c.Close()
		}
	}
	b.awaitOffline("dup")
	poll.Until(t, "no authBy entry but the session's", func() bool { return b.AuthByStale() == 0 })
	if n := b.ConnectTurns(); n != 0 {
		t.Errorf("%d client ids still hold a CONNECT turn", n)
	}
}

// MQTT 5 3.1.4-3: a CONNECT of a client id already connected disconnects
// the existing client. Each round, exactly one of the racing connections
// stays connected, and it is the session the broker lists.
func TestConcurrentConnectsLeaveOneConnected(t *testing.T) {
	b := startAdmin(t)
	for round := range 40 {
		conns, clients := raceConnects(t, b.Addr("tcp"), "dup", 6)
		if len(clients) == 0 {
			t.Fatalf("round %d: no CONNECT accepted", round)
		}
		var last net.Conn
		poll.Until(t, "one connection of dup left open", func() bool {
			open := 0
			for _, r := range clients {
				select {
				case <-r.c.Done():
				default:
					open++
					last = r.conn
				}
			}
			return open == 1
		})
		info, ok := b.Client("dup")
		if !ok || !info.Connected || info.RemoteAddr != last.LocalAddr().String() {
			t.Fatalf("round %d: broker lists %+v (found %v), want the connection from %s", round, info, ok, last.LocalAddr())
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

// TestTakeOverWaitsForConnack: a second CONNECT of a client id waits until
// the first one's CONNACK is written. The first client's CONNACK is held
// in a CONNACK interceptor while the second CONNECT arrives; the first
// client must then read its CONNACK first, not the take-over's DISCONNECT
// [MQTT-3.2.0-1], and both connections end with a disconnect event each.
// (The turn used to be given back when the CONNACK was encoded, before the
// interceptors and mochi's write: the second took the first over in
// between.)
func TestTakeOverWaitsForConnack(t *testing.T) {
	b := startIC(t, nil)
	var n atomic.Int32
	inA := make(chan struct{})
	release := make(chan struct{})
	b.ic.set(func(ti *testInterceptors) {
		ti.connack = func(_ broker.Peer, _ *broker.Connack) {
			if n.Add(1) == 1 { // the first client's CONNACK: a slow interceptor
				close(inA)
				select {
				case <-release:
				case <-time.After(poll.Timeout):
				}
			}
		}
	})
	a, err := rawmqtt.Open(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Drop()
	if err := a.Send(0x10, connect5Body("dup", 0, 30, props(), nil)); err != nil {
		t.Fatal(err)
	}
	<-inA
	second, err := rawmqtt.Open(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Drop()
	if err := second.Send(0x10, connect5Body("dup", 0, 30, props(), nil)); err != nil {
		t.Fatal(err)
	}
	// The second CONNECT is authenticated and counted as connected before
	// it reaches the take-over (where it waits for the turn).
	poll.Until(t, "the second CONNECT authenticated", func() bool { return b.Levels().ClientsConnected == 2 })
	close(release)
	_ = a.SetDeadline(time.Now().Add(poll.Timeout))
	typ, body, err := a.ReadPacket()
	if err != nil || typ != 0x20 {
		t.Fatalf("first client's first packet: %#x % x (err %v), want its CONNACK", typ, body, err)
	}
	_ = second.Drop()
	poll.Settle(t, "a disconnect event for each accepted CONNECT", func() string {
		acc, disc := 0, 0
		for _, e := range b.rules.Recorded() {
			switch e.Kind {
			case broker.EventAuthSucceeded:
				acc++
			case broker.EventDisconnect:
				disc++
			}
		}
		if acc != 2 || disc != 2 {
			return fmt.Sprintf("%d accepted CONNECTs, %d disconnect events", acc, disc)
		}
		return ""
	})
}
