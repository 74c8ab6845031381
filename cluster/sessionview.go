package cluster

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// SessionView is a session's replicated record (SessionsBucket) as an
// operator reads it: what `propolis clients show` and GET
// /api/v1/clients/{id} show of a session no broker of the cluster holds
// in its own store (an offline session lives in the bucket, on no node),
// or of one online on another node.
type SessionView struct {
	// Node is the node that claimed or released the session last.
	Node string
	// Online is true while the session's client is connected to Node.
	Online bool
	// DisconnectedAt is when the client went offline (zero while
	// online); Expiry the session expiry interval in seconds
	// (math.MaxUint32: never); ExpiresAt when the sweep removes the
	// offline session (zero while online or for a session that never
	// expires).
	DisconnectedAt time.Time
	Expiry         uint32
	ExpiresAt      time.Time
	// State is the session and its subscriptions as last written; nil for
	// a session created on Node and not released or changed since.
	State *broker.SessionState
}

// ReplicatedSession reads the record of client id in SessionsBucket,
// read-only, with the sessions part's own read (sessions.get): nil and no
// error when there is none, and before UseBroker. One JetStream round
// trip, bounded by ctx; its error names the bucket (and the client id).
// Called by the admin API on a request's goroutine.
func (n *Node) ReplicatedSession(ctx context.Context, id string) (*SessionView, error) {
	ss := n.sessionsPart()
	if ss == nil {
		return nil, nil
	}
	key, err := clientKey(id)
	if err != nil {
		return nil, fmt.Errorf("client %q: %w", id, err)
	}
	r, _, err := ss.get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("client %q: %w", id, err)
	}
	if r == nil {
		return nil, nil
	}
	return viewOf(r), nil
}

// viewOf converts a record.
func viewOf(r *sessionRecord) *SessionView {
	v := &SessionView{Node: r.Node, Online: r.Online, Expiry: r.Expiry, State: r.State}
	if !r.Online {
		v.DisconnectedAt = time.Unix(r.DisconnectedAt, 0).UTC()
		if r.Expiry != math.MaxUint32 {
			v.ExpiresAt = v.DisconnectedAt.Add(time.Duration(r.Expiry) * time.Second)
		}
	}
	return v
}
