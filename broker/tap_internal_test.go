package broker

import (
	"fmt"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// tracedProperties keeps only what mochi's encoder writes of properties
// it holds without their flag (or with values it skips).
func TestTracedPropertiesAsEncoded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		typ   byte
		props packets.Properties
		want  string
	}{
		{"session expiry without its flag", packets.Connack, packets.Properties{SessionExpiryInterval: 30}, "map[]"},
		{"session expiry with its flag", packets.Connack, packets.Properties{SessionExpiryInterval: 30, SessionExpiryIntervalFlag: true},
			"map[session_expiry_interval:30]"},
		{"topic alias without its flag", packets.Publish, packets.Properties{TopicAlias: 2}, "map[]"},
		{"subscription identifiers 0 and 5", packets.Publish, packets.Properties{SubscriptionIdentifier: []int{0, 5}},
			"map[subscription_identifier:[5]]"},
		{"subscription identifier 0", packets.Publish, packets.Properties{SubscriptionIdentifier: []int{0}}, "map[]"},
		{"maximum QoS 2", packets.Connack, packets.Properties{MaximumQos: 2, MaximumQosFlag: true}, "map[]"},
		{"response topic with a wildcard", packets.Publish, packets.Properties{ResponseTopic: "r/#"}, "map[]"},
		{"authentication data", packets.Auth, packets.Properties{AuthenticationData: []byte("secret")},
			"map[authentication_data_set:true]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: tc.typ}, Properties: tc.props}
			pk.Mods.AllowResponseInfo = true
			m := tracedProperties(&pk, tc.typ, false)
			if m == nil {
				m = map[string]any{}
			}
			if got := fmt.Sprint(m); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
