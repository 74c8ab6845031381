package harness

// The limits every broker runs with, so that no broker is measured with a
// larger window or a longer queue than another. The load clients speak
// MQTT 3.1.1.
//
// mochi, and Propolis on it, have no outbound in-flight window for MQTT
// 3.1.1 clients: every QoS 1 delivery is sent at once and counts against
// the per-client limit (mochi's MaximumInflight, Propolis's
// max_queued_messages) until acknowledged. Mosquitto is given a window as
// wide as any load can fill and the same total: queueLimit messages held
// per client, in flight or waiting.
//
// MQTT 5 clients announcing a Receive Maximum would give every broker the
// same window, but mochi v2.7.9 cannot serve them under load: its
// Inflight.NextImmediate takes a read lock twice (through GetAll), so a
// publisher's Inflight.Set waiting between the two deadlocks the
// subscriber and every publisher sending to it (see bench/README.md).
const (
	// inFlightWindow is Mosquitto's max_inflight_messages: QoS 1 messages
	// sent to one client and not yet acknowledged.
	inFlightWindow = 1000
	// queueLimit is the number of QoS 1 messages a broker holds for one
	// client, the in-flight ones included: Propolis's max_queued_messages,
	// mochi's MaximumInflight, and Mosquitto's max_inflight_messages plus
	// max_queued_messages (Mosquitto counts its queue beyond the window).
	queueLimit = 10000
	// receiveMaximum is the number of QoS 1 PUBLISH packets a client may
	// send unacknowledged (Propolis's receive_maximum, mochi's
	// ReceiveMaximum; Mosquitto acknowledges QoS 1 at once and has none for
	// MQTT 3.1.1). The loads keep at most 64.
	receiveMaximum = 1024
	// qos0Pending is the number of QoS 0 deliveries waiting to be written to
	// one client before more are dropped: mochi's MaximumClientWritesPending
	// (Propolis fixes it at 1024). Mosquitto bounds the packets waiting to
	// be written with max_queued_messages (queueLimit-inFlightWindow).
	qos0Pending = 1024
)
