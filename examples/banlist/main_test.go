package main

import (
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestAuthenticate(t *testing.T) {
	if err := load(config{Users: []string{"mallory"}, Clients: []string{"bad-1"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, client string
		want               propolis.Decision
	}{
		{"listed user", "mallory", "c1", propolis.DecisionDeny},
		{"listed client", "alice", "bad-1", propolis.DecisionDeny},
		{"anyone else", "alice", "c1", propolis.DecisionNext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := authenticate(&propolis.Connect{Username: tc.user, ClientID: tc.client})
			if got.Decision != tc.want {
				t.Fatalf("decision %v, want %v", got.Decision, tc.want)
			}
			if tc.want == propolis.DecisionDeny && got.Code != propolis.CodeBanned {
				t.Fatalf("code %#x, want 0x8A", got.Code)
			}
		})
	}
}

func TestEmptyConfigRefusesStart(t *testing.T) {
	if err := load(config{}); err == nil {
		t.Fatal("started with nothing to ban")
	}
}
