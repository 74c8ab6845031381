package broker

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// CONNECTs of one client id, one at a time.
//
// mochi takes over a client id's existing session (inheritClientSession:
// it looks the id up, disconnects the old client, moves its state) and then
// adds the new client to its map (Clients.Add) in two steps under no lock.
// Two CONNECTs of one id arriving together can both find the same old
// client, and the one added first is then replaced in the map by the other
// without ever being taken over: it stays connected, invisible to
// ListClients, Client and Disconnect, and its end saves a session record
// over the live one's. The hook closes that window from its own seams: the
// CONNECT's turn is taken in OnSessionEstablish, just before mochi's
// take-over, and given back once the new client is in the map and its
// CONNACK written (OnPacketSent: a take-over before that would make a
// DISCONNECT the client's first packet, and run the CONNACK's own work,
// interceptors and renumbering included, beside the take-over), or when
// the connection ends first
// (its outConn stops, or OnDisconnect). The next CONNECT of the id then
// finds this client, takes it over, and tells it so (MQTT 5 3.1.4-3).
// The upstream fix would be the same one step inside mochi: take-over and
// Clients.Add under one per-id lock (or a compare-and-swap on the map).

// connectLocks holds a turn per client id with a CONNECT in progress.
// The zero value is ready.
type connectLocks struct {
	mu    sync.Mutex
	turns map[string]*connectTurn
	// held maps each client holding its id's turn to the release of it.
	held sync.Map // *mqtt.Client -> *connectHold
}

// connectTurn is one client id's turn: a token in ch, and the number of
// CONNECTs holding or waiting for it (the entry goes when it reaches 0).
type connectTurn struct {
	ch    chan struct{}
	users int
}

// connectHold is a client's hold on its id's turn; release runs once.
type connectHold struct {
	once sync.Once
	l    *connectLocks
	id   string
	turn *connectTurn
}

// acquire waits for client cl's id's turn and holds it for cl, until
// release(cl). It is called on cl's connection goroutine (mochi's
// attachClient, from OnSessionEstablish); it waits only while another
// CONNECT of the same id is between its own OnSessionEstablish and its
// CONNACK, which never waits on a peer (outConn's writes do not block), or,
// with a cluster that replicates sessions, between its OnConnect and its
// CONNACK, which waits for the cluster's claim (bounded by the cluster), or
// while the cluster releases the id's session (Server.HoldConnectTurn,
// bounded by the cluster).
//
// A client that holds its turn already (taken in OnConnect for a cluster's
// session claim, clustersessions.go) keeps it: only cl's goroutine
// acquires for cl.
func (l *connectLocks) acquire(cl *mqtt.Client) {
	if _, held := l.held.Load(cl); held {
		return
	}
	hold := l.take(cl.ID)
	l.held.Store(cl, hold)
	if oc, ok := cl.Net.Conn.(*outConn); ok {
		oc.onStop(func() { l.release(cl) })
	}
}

// hold waits for client id's turn for a caller that is no connection
// (Server.HoldConnectTurn: the cluster's release, so that no CONNECT of
// the id takes the session over while it leaves) and returns the function
// that gives it back.
func (l *connectLocks) hold(id string) (release func()) {
	h := l.take(id)
	return h.give
}

// take waits for client id's turn and returns the hold on it.
func (l *connectLocks) take(id string) *connectHold {
	l.mu.Lock()
	if l.turns == nil {
		l.turns = make(map[string]*connectTurn)
	}
	t := l.turns[id]
	if t == nil {
		t = &connectTurn{ch: make(chan struct{}, 1)}
		l.turns[id] = t
	}
	t.users++
	l.mu.Unlock()
	t.ch <- struct{}{}
	return &connectHold{l: l, id: id, turn: t}
}

// release gives back the turn cl holds, if any; any goroutine may call it,
// any number of times.
func (l *connectLocks) release(cl *mqtt.Client) {
	v, ok := l.held.LoadAndDelete(cl)
	if !ok {
		return
	}
	v.(*connectHold).give()
}

// give gives the turn back, once however often it is called.
func (h *connectHold) give() {
	h.once.Do(func() {
		<-h.turn.ch
		h.l.mu.Lock()
		if h.turn.users--; h.turn.users == 0 {
			delete(h.l.turns, h.id)
		}
		h.l.mu.Unlock()
	})
}

// pending returns how many client ids have a CONNECT holding or waiting
// for their turn (for tests: 0 once every CONNECT is through).
func (l *connectLocks) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.turns)
}

// onStop makes the connection call f once it stops (Close or failure), or
// at once when it has stopped already; f may run twice and must not mind.
func (c *outConn) onStop(f func()) {
	c.stopped.Store(&f)
	select {
	case <-c.done:
		f()
	default:
	}
}
