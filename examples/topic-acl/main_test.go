package main

import (
	"strings"
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// withConfig starts the extension with a JSON config and restores the
// default afterwards.
func withConfig(t *testing.T, cfg string) error {
	t.Helper()
	t.Cleanup(func() { filter = permissionFilter(defaultPrefix) })
	var raw []byte
	if cfg != "" {
		raw = []byte(cfg)
	}
	return start(propolis.StartInfo{ID: "topic-acl", Version: "1.0.0", Config: raw})
}

func TestStart(t *testing.T) {
	tests := []struct {
		config string
		filter string // "" when the start is refused
	}{
		{"", "devices/{clientid}/#"},
		{"{}", "devices/{clientid}/#"},
		{`{"prefix": "devices"}`, "devices/{clientid}/#"},
		{`{"prefix": "site/a/"}`, "site/a/{clientid}/#"},
		{`{"prefix": ""}`, ""},
		{`{"prefix": "/"}`, ""},
		{`{"prefix": "devices/+"}`, ""},
		{`{"prefix": "#"}`, ""},
		{`{"prefix": 3}`, ""},
		{`not json`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			err := withConfig(t, tt.config)
			if tt.filter == "" {
				if err == nil {
					t.Errorf("started with filter %q, want refused", filter)
				}
				return
			}
			if err != nil || filter != tt.filter {
				t.Errorf("filter %q, err %v; want %q", filter, err, tt.filter)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	for _, cfg := range []string{"", `{"prefix": "plant/7"}`} {
		if err := withConfig(t, cfg); err != nil {
			t.Fatal(err)
		}
		prefix := strings.TrimSuffix(filter, "/{clientid}/#")
		res := authenticate(&propolis.Connect{ClientID: "sensor-1", Username: "anyone"})
		if res.Verdict != propolis.Allow() || len(res.Permissions) != 1 {
			t.Fatalf("got %+v, want allow with one permission", res)
		}
		p := res.Permissions[0]
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		if p != propolis.AllowTopic(prefix+"/{clientid}/#") {
			t.Fatalf("permission %+v", p)
		}

		// What the broker makes of that permission for client sensor-1.
		tests := []struct {
			topic string
			allow bool
		}{
			{prefix + "/sensor-1/temp", true},
			{prefix + "/sensor-1/a/b/c", true},
			{prefix + "/sensor-1", true}, // "#" also matches its parent level
			{prefix + "/sensor-2/temp", false},
			{prefix + "/+/temp", false}, // a subscription wider than its own tree
			{prefix + "/#", false},
			{"other/sensor-1/temp", false},
			{"sensor-1/temp", false},
		}
		for _, tt := range tests {
			if got := permits(res.Permissions, "sensor-1", tt.topic); got != tt.allow {
				t.Errorf("prefix %q, topic %q: allowed %v, want %v", prefix, tt.topic, got, tt.allow)
			}
		}
	}
}

// permits mimics the broker's evaluation of allow-both permissions for a
// client (ABI.md, add_permission): the first permission whose filter,
// with {clientid} substituted, covers the topic or requested filter
// decides; none matching denies.
func permits(perms []propolis.Permission, clientID, topic string) bool {
	for _, p := range perms {
		f := strings.ReplaceAll(p.Filter, "{clientid}", clientID)
		if covers(strings.Split(f, "/"), strings.Split(topic, "/")) {
			return p.Decision == propolis.DecisionAllow
		}
	}
	return len(perms) == 0
}

// covers reports whether filter levels f match every topic (or narrower
// filter) with levels t.
func covers(f, t []string) bool {
	for i, level := range f {
		switch {
		case level == "#":
			return true
		case i >= len(t):
			return false
		case level == "+" && t[i] != "#":
			continue
		case level != t[i]:
			return false
		}
	}
	return len(f) == len(t)
}
