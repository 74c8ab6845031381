package host

import (
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// TestAuthKey: every part of the CONNECT identity changes the key; what
// is not part of it does not.
func TestAuthKey(t *testing.T) {
	ak := newAuthKeyer()
	base := func() *broker.Connect {
		return &broker.Connect{ClientID: "c1", Username: "u", HasUsername: true, Password: []byte("p"), Listener: "tcp",
			TLS: &broker.TLSInfo{PeerSubject: "CN=c1", PeerSANs: []string{"a", "b"}}, RemoteAddr: "10.0.0.1:1", Keepalive: 30}
	}
	k0 := ak.key(base())
	for name, change := range map[string]func(*broker.Connect){
		"client id":      func(c *broker.Connect) { c.ClientID = "c2" },
		"user name":      func(c *broker.Connect) { c.Username = "v" },
		"no user name":   func(c *broker.Connect) { c.Username, c.HasUsername = "", false },
		"password":       func(c *broker.Connect) { c.Password = []byte("q") },
		"empty password": func(c *broker.Connect) { c.Password = []byte{} },
		"no password":    func(c *broker.Connect) { c.Password = nil },
		"listener":       func(c *broker.Connect) { c.Listener = "tls" },
		"subject":        func(c *broker.Connect) { c.TLS.PeerSubject = "CN=c2" },
		"SANs":           func(c *broker.Connect) { c.TLS.PeerSANs = []string{"ab"} },
		"no TLS":         func(c *broker.Connect) { c.TLS = nil },
		// Fields moved between neighbours must not collide.
		"shifted": func(c *broker.Connect) { c.ClientID, c.Username = "c1u", "" },
	} {
		c := base()
		change(c)
		if ak.key(c) == k0 {
			t.Errorf("%s: same key", name)
		}
	}
	c := base()
	c.RemoteAddr, c.Keepalive = "10.0.0.2:2", 60
	if ak.key(c) != k0 {
		t.Error("the remote address or keepalive changed the key")
	}
	if newAuthKeyer().key(base()) == k0 {
		t.Error("two keyers (processes) give the same key")
	}
}

// TestAuthCacheBound: the cache keeps at most its bound, dropping expired
// answers first; expired answers are not served; flush by client id.
func TestAuthCacheBound(t *testing.T) {
	c := newAuthCache(3)
	key := func(i byte) *authKey { return &authKey{i} }
	c.put(key(1), &cachedAnswer{clientID: "a"}, time.Nanosecond) // expires at once
	c.put(key(2), &cachedAnswer{clientID: "a"}, time.Hour)
	c.put(key(3), &cachedAnswer{clientID: "b"}, time.Hour)
	if _, ok := c.get(key(1)); ok {
		t.Fatal("an expired answer was served")
	}
	c.put(key(1), &cachedAnswer{clientID: "c"}, time.Nanosecond)
	c.put(key(4), &cachedAnswer{clientID: "b"}, time.Hour) // full: the expired one goes
	if c.len() != 3 {
		t.Fatalf("%d entries, want 3", c.len())
	}
	for _, k := range []byte{2, 3, 4} {
		if _, ok := c.get(key(k)); !ok {
			t.Fatalf("answer %d dropped instead of the expired one", k)
		}
	}
	c.put(key(5), &cachedAnswer{clientID: "d"}, time.Hour) // full of live ones: one goes
	if c.len() != 3 {
		t.Fatalf("%d entries, want 3", c.len())
	}
	if _, ok := c.get(key(5)); !ok {
		t.Fatal("the new answer was not kept")
	}
	if n := c.flush("b"); n < 1 || n > 2 {
		t.Fatalf("flush b dropped %d", n)
	}
	if n := c.flush(""); c.len() != 0 || n < 1 {
		t.Fatalf("flush all dropped %d, left %d", n, c.len())
	}
}
