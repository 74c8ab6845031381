package main

import (
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestAuthenticate(t *testing.T) {
	tests := []struct {
		name string
		c    propolis.Connect
	}{
		{"anonymous", propolis.Connect{ClientID: "c1", ProtocolVersion: 4}},
		{"with credentials", propolis.Connect{ClientID: "c2", Username: "u", HasUsername: true, Password: []byte("p"), HasPassword: true, ProtocolVersion: 5}},
		{"with will", propolis.Connect{ClientID: "c3", Will: &propolis.Will{Topic: "anything", QoS: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := authenticate(&tt.c)
			if res.Verdict != propolis.Allow() {
				t.Errorf("verdict %+v, want allow", res.Verdict)
			}
			if len(res.Permissions) != 0 {
				t.Errorf("permissions %+v, want none (everything allowed)", res.Permissions)
			}
		})
	}
}

func TestStart(t *testing.T) {
	if err := start(propolis.StartInfo{ID: "allow-all", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
}
