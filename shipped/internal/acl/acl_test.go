package acl

import (
	"reflect"
	"testing"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func TestPermissions(t *testing.T) {
	got, err := Spec{
		Publish:   []string{"devices/{clientid}/up"},
		Subscribe: []string{"devices/{clientid}/down/#"},
		All:       []string{"chat/+"},
		Deny:      []string{"chat/secret"},
	}.Permissions("claim \"acl\"")
	if err != nil {
		t.Fatal(err)
	}
	want := []propolis.Permission{
		propolis.DenyTopic("chat/secret"),
		propolis.AllowTopic("chat/+"),
		propolis.AllowPublish("devices/{clientid}/up"),
		propolis.AllowSubscribe("devices/{clientid}/down/#"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, p := range got {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

func TestEmptyDeniesEverything(t *testing.T) {
	got, err := Spec{}.Permissions("x")
	if err != nil || !reflect.DeepEqual(got, []propolis.Permission{propolis.DenyTopic("#")}) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestBadFilter(t *testing.T) {
	_, err := Spec{Publish: []string{"ok/1"}, Subscribe: []string{"a/#/b"}}.Permissions(`claim "acl"`)
	if err == nil || err.Error() != `claim "acl": subscribe[0] "a/#/b": "#" must be the last level` {
		t.Fatalf("got %v", err)
	}
}

func TestTooMany(t *testing.T) {
	s := Spec{Publish: make([]string, 200), Subscribe: make([]string, 57)}
	for i := range s.Publish {
		s.Publish[i] = "a"
	}
	for i := range s.Subscribe {
		s.Subscribe[i] = "b"
	}
	if _, err := s.Permissions("x"); err == nil || err.Error() != "x: 257 topic filters, at most 256" {
		t.Fatalf("got %v", err)
	}
	s.Subscribe = s.Subscribe[:56]
	if p, err := s.Permissions("x"); err != nil || len(p) != 256 {
		t.Fatalf("256: %d, %v", len(p), err)
	}
}

func TestGrants(t *testing.T) {
	s := Spec{Publish: []string{"a/b", "devices/{clientid}/up"}, Deny: []string{"users/{username}/x"}}
	if got := s.Grants(ClientID); got != `publish[1] "devices/{clientid}/up"` {
		t.Fatalf("clientid: %q", got)
	}
	if got := s.Grants(Username); got != "" {
		t.Fatalf("a placeholder in deny only: %q", got)
	}
}
