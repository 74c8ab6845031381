package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// This file makes a new subscription known on every other node before the
// broker sends its SUBACK (see docs/cluster.md, "Receiving").
//
// A NATS server tells the other servers of a new subject over its route
// to each of them (RS+), asynchronously: for a moment after this node's
// server took the SUB, another node's server does not know the interest
// and routes nothing of what is published there, QoS 1 included, although
// the subscriber already had its SUBACK. So after a subscription is made,
// Node.Subscribed waits for a round trip to every other alive node: a
// request on pctl.ping.<node> (answered by control.go) sent on the same
// connection as the SUB. The server handles a connection's protocol in
// order, so it sent the RS+ on the route before it forwards the request,
// on the same route (a route carries both the interest and the messages
// of an account, in order); the other server handles them in that order
// too, so when the other node answers, its server knows the interest. The
// request does the work of a flush: the local server took the SUB before
// the request.
//
// Round trips are shared: each subscription made gets the next number of
// a sequence, a round trip covers every number handed out before its
// requests were sent, and a wait returns at once when a finished round
// trip covers its number. A subject subscribed before costs nothing; many
// clients subscribing new subjects at once share round trips. A round trip
// is bounded by interestTimeout: a node that does not answer (stuck, or
// cut off while still alive in the registry) is logged, and the wait goes
// on without it. A node without the ping (an older Propolis, during a
// rolling upgrade) answers "no responders" at once: it is not waited for.

// interestTimeout bounds one round trip to every other node.
const interestTimeout = 2 * time.Second

// interestOptions are what newInterest needs.
type interestOptions struct {
	// Conn is the connection every subscription is made on (the node's
	// one connection): the requests must follow the SUBs on it.
	Conn *nats.Conn
	// Peers returns the names of the other alive nodes; none: the node is
	// alone and nothing is waited for.
	Peers func() []string
	// Timeout is interestTimeout when zero (tests).
	Timeout time.Duration
	Log     *slog.Logger
}

// interest hands out subscription numbers and runs the round trips that
// make them known. Safe for concurrent use; a nil *interest waits for
// nothing (routers of tests without a registry).
type interest struct {
	o interestOptions

	mu      sync.Mutex
	made    uint64     // the last number handed out
	covered uint64     // the highest number a finished round trip covered
	trip    *roundTrip // in flight, nil when none
	silent  uint64     // round trips that ended with a node silent, for the log
}

// roundTrip is one round trip to every other node; end is closed when it
// is over, answered or not.
type roundTrip struct {
	covers uint64
	end    chan struct{}
}

// newInterest returns the interest of o.Conn.
func newInterest(o interestOptions) *interest {
	if o.Timeout <= 0 {
		o.Timeout = interestTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &interest{o: o}
}

// subscribed numbers a subscription whose SUB was just written to the
// connection. The caller holds the lock under which it subscribed, so the
// numbers follow the order of the SUBs. 0 for a nil interest.
func (in *interest) subscribed() uint64 {
	if in == nil {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.made++
	return in.made
}

// wait returns once every other alive node's server knows the
// subscription numbered seq, or a round trip covering it ended without
// some node's answer (logged), at most about 2 * Timeout (a round trip in
// flight that does not cover seq ends first). Called by Node.Subscribed
// on the client's goroutine, before the SUBACK. seq 0 waits for nothing.
func (in *interest) wait(seq uint64) {
	if in == nil || seq == 0 {
		return
	}
	for {
		in.mu.Lock()
		if in.covered >= seq {
			in.mu.Unlock()
			return
		}
		if t := in.trip; t != nil {
			in.mu.Unlock()
			<-t.end
			if t.covers >= seq {
				return
			}
			continue
		}
		t := &roundTrip{covers: in.made, end: make(chan struct{})}
		in.trip = t
		in.mu.Unlock()
		silent := in.ping()
		in.mu.Lock()
		in.covered = max(in.covered, t.covers)
		in.trip = nil
		if len(silent) > 0 {
			in.silent++
		}
		n := in.silent
		in.mu.Unlock()
		close(t.end)
		if len(silent) > 0 && (n == 1 || n%100 == 0) {
			in.o.Log.Warn("cluster: nodes did not confirm a new subscription in time; messages published there right after the SUBACK may not arrive",
				"nodes", silent, "waited", in.o.Timeout, "round_trips_unconfirmed_total", n)
		}
		return
	}
}

// ping sends one request to each other alive node at once and waits for
// the answers, at most Timeout; it returns the nodes that neither
// answered nor said they have no one to answer.
func (in *interest) ping() []string {
	peers := in.o.Peers()
	if len(peers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.o.Timeout)
	defer cancel()
	ok := make([]bool, len(peers))
	var wg sync.WaitGroup
	for i, node := range peers {
		wg.Go(func() {
			_, err := in.o.Conn.RequestWithContext(ctx, controlSubject(controlPing, node), nil)
			ok[i] = err == nil || errors.Is(err, nats.ErrNoResponders)
		})
	}
	wg.Wait()
	var silent []string
	for i, node := range peers {
		if !ok[i] {
			silent = append(silent, node)
		}
	}
	return silent
}
