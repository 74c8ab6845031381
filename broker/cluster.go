package broker

// Cluster connects the broker to the other nodes (cluster/ implements it).
type Cluster interface {
	// Forward hands a message accepted on this node to the other nodes;
	// for QoS 1/2 it returns once stored with the replication factor in force.
	Forward(m *Message, publisher string) error
	// Subscribed and Unsubscribed report a local subscription's filter
	// (group "" unless a shared subscription), counted per client.
	Subscribed(filter, group string)
	Unsubscribed(filter, group string)
	// Connected and Disconnected report a client id on this node.
	Connected(clientID string)
	Disconnected(clientID string)
}
