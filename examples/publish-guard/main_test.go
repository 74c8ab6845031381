package main

import (
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestAuthorizePublish(t *testing.T) {
	cfg = limits{MaxLevels: 3, MaxPayload: 4}
	for _, tc := range []struct {
		name, topic string
		payload     string
		want        propolis.Decision
	}{
		{"fine", "a/b/c", "1234", propolis.DecisionNext},
		{"too deep", "a/b/c/d", "1", propolis.DecisionDeny},
		{"too large", "a", "12345", propolis.DecisionDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := authorizePublish(&propolis.Publish{Topic: tc.topic, Payload: []byte(tc.payload)}); got.Decision != tc.want {
				t.Fatalf("got %v, want %v", got.Decision, tc.want)
			}
		})
	}
}
