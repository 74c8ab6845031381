package main

import (
	"strings"
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

// TestStart: every instance starts; the warning names the extension and
// says it is not for production (the host's TestAllowAllWarnsOnce checks
// that only instance 0 logs it).
func TestStart(t *testing.T) {
	for _, instance := range []uint32{0, 1, 7} {
		if err := start(propolis.StartInfo{ID: "allow-all", Version: "1.0.0", Instance: instance}); err != nil {
			t.Fatalf("instance %d: %v", instance, err)
		}
	}
	if w := warning(propolis.StartInfo{ID: "allow-all", Version: "1.0.0"}); !strings.Contains(w, "allow-all 1.0.0") || !strings.Contains(w, "DO NOT USE IT IN PRODUCTION") {
		t.Errorf("warning %q", w)
	}
}
