package brokertest

import "github.com/propolis-mqtt/propolis/internal/rawmqtt"

// Conn is the raw MQTT 3.1.1 client of internal/rawmqtt.
type Conn = rawmqtt.Conn

// Dial connects a raw client; see rawmqtt.Dial.
func Dial(addr, clientID string) (*Conn, error) { return rawmqtt.Dial(addr, clientID) }

// DialWill connects a raw client with a will; see rawmqtt.DialWill.
func DialWill(addr, clientID, topic, payload string) (*Conn, error) {
	return rawmqtt.DialWill(addr, clientID, topic, payload)
}
