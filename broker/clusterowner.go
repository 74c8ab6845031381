package broker

import (
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Take-over of a client id across the nodes of a cluster.
//
// The broker reports each connection of a client id once its session is
// established (Cluster.Connected, from OnSessionEstablished) and once it
// ends (Cluster.Disconnected, from OnDisconnect): the two are paired per
// connection. The cluster (cluster/owner.go) records the latest node of
// each client id and, when another node took the id over, calls TakeOver
// on the node that still holds a connection of it.

// codeTakenOver is what TakeOver tells an MQTT 5 client: 0x8E Session
// taken over, as mochi's own take-over on one node (packets.ErrSessionTakenOver).
var codeTakenOver = packets.Code{Code: 0x8E, Reason: "session taken over by another node"}

// TakeOver disconnects the local connection of clientID because another
// node of the cluster took the client id over: an MQTT 5 client is sent
// DISCONNECT 0x8E (Session taken over), a 3.1.1 client's connection is
// closed. It goes through Disconnect, as the admin API's disconnect does.
// The session itself stays on this node (phase 1 does not move sessions).
// The client's will is published as on any server disconnect, unless it
// has a will delay: the new connection on the other node came within it
// (MQTT 5 3.1.3.2.2), so it is dropped. Called by the cluster on its KV
// watch's goroutine. Errors: those of Disconnect (ErrNoSession,
// ErrNotConnected: the client left meanwhile).
func (s *Server) TakeOver(clientID string) error {
	cl, ok := s.sessionClient(clientID)
	if !ok {
		return fmt.Errorf("take over %q: %w", clientID, ErrNoSession)
	}
	preventWill := cl.Properties.Will.WillDelayInterval > 0
	return s.Disconnect(clientID, codeTakenOver.Code, codeTakenOver.Reason, preventWill)
}
