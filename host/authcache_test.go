package host

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
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
	c.put(key(1), &cachedAnswer{clientID: "a"}, time.Nanosecond, c.generation()) // expires at once
	c.put(key(2), &cachedAnswer{clientID: "a"}, time.Hour, c.generation())
	c.put(key(3), &cachedAnswer{clientID: "b"}, time.Hour, c.generation())
	if _, ok := c.get(key(1)); ok {
		t.Fatal("an expired answer was served")
	}
	c.put(key(1), &cachedAnswer{clientID: "c"}, time.Nanosecond, c.generation())
	c.put(key(4), &cachedAnswer{clientID: "b"}, time.Hour, c.generation()) // full: the expired one goes
	if c.len() != 3 {
		t.Fatalf("%d entries, want 3", c.len())
	}
	for _, k := range []byte{2, 3, 4} {
		if _, ok := c.get(key(k)); !ok {
			t.Fatalf("answer %d dropped instead of the expired one", k)
		}
	}
	c.put(key(5), &cachedAnswer{clientID: "d"}, time.Hour, c.generation()) // full of live ones: one goes
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

// TestAuthCacheFlushGeneration: an answer whose call began before a
// flush (of its client id, or of all) is not kept.
func TestAuthCacheFlushGeneration(t *testing.T) {
	c := newAuthCache(10)
	for _, id := range []string{"a", "other", ""} {
		gen := c.generation()
		c.flush(id)
		if c.put(&authKey{1}, &cachedAnswer{clientID: "a"}, time.Hour, gen) || c.len() != 0 {
			t.Fatalf("flush %q: an answer from before it was kept", id)
		}
	}
	if !c.put(&authKey{1}, &cachedAnswer{clientID: "a"}, time.Hour, c.generation()) || c.len() != 1 {
		t.Fatal("an answer after the flush was not kept")
	}
}

// TestAuthCacheEvictionBounded: inserting into a full cache looks at a
// bounded number of entries, not the whole map.
func TestAuthCacheEvictionBounded(t *testing.T) {
	const size, more = 20000, 20000
	c := newAuthCache(size)
	key := func(i int) *authKey {
		var k authKey
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		return &k
	}
	for i := range size {
		c.put(key(i), &cachedAnswer{}, time.Hour, c.generation())
	}
	for i := range more {
		c.put(key(size+i), &cachedAnswer{}, time.Hour, c.generation())
	}
	if c.len() != size {
		t.Fatalf("%d entries, want %d", c.len(), size)
	}
	if c.examined > more*evictSample {
		t.Fatalf("%d entries examined for %d inserts into a full cache, want at most %d", c.examined, more, more*evictSample)
	}
	if _, ok := c.get(key(size + more - 1)); !ok {
		t.Fatal("the newest answer was not kept")
	}
}

// BenchmarkAuthCachePutFull measures an insertion into a full cache
// (random client ids filling it with DENYs), at two sizes: the time per
// insertion should not grow with the size.
func BenchmarkAuthCachePutFull(b *testing.B) {
	for _, size := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c := newAuthCache(size)
			for i := range size {
				var k authKey
				k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
				c.put(&k, &cachedAnswer{}, time.Hour, 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var k authKey
				k[3], k[4], k[5], k[6] = 1, byte(i), byte(i>>8), byte(i>>16)
				c.put(&k, &cachedAnswer{}, time.Hour, 0)
			}
		})
	}
}

// TestFlushDuringAuthenticate: a flush while an authenticate call waits on
// the identity service is not undone by that call's cacheable answer:
// the next CONNECT of the flushed client asks again. Both a flush of the
// client id and a flush of all.
func TestFlushDuringAuthenticate(t *testing.T) {
	for name, flush := range map[string]string{"client id": "c1", "all": ""} {
		t.Run(name, func(t *testing.T) {
			s := newIDP(t)
			w, _ := startHTTPAuth(t, httpAuthManifest(s.srv.URL+"/check", s.hostPort(), 3600,
				"  pool_size: 2\n  max_pool_size: 6\n  authenticate_deadline: 1m"))
			_, _, admin := connack(t, w.addr, "admin", "alice", "pw")
			if admin == nil {
				t.Fatal("local user refused")
			}
			done := make(chan byte, 1)
			go func() {
				c, ack, err := v5(t, w.addr, "c1", "slow", "good", nil)
				if err == nil {
					_ = c.Disconnect(&paho.Disconnect{})
				}
				code := byte(0xff)
				if ack != nil {
					code = ack.ReasonCode
				}
				done <- code
			}()
			poll.Until(t, "the slow request waits", func() bool { return s.slow.Load() == 1 })
			if got := probeTopic(t, admin, "admin/flush", flush); got != "flushed 0" {
				t.Fatalf("flush %q: %q", flush, got)
			}
			s.unblock()
			if code := <-done; code != 0 {
				t.Fatalf("slow CONNECT: %#x", code)
			}
			if n := statusOf(t, w.h, "httpauth").AuthCacheEntries; n != 0 {
				t.Fatalf("%d answers cached by a call that began before the flush", n)
			}
			before := s.requests.Load()
			if code, reason := connectOnce(t, w.addr, "c1", "slow", "good"); code != 0 {
				t.Fatalf("CONNECT after the flush: %#x %q", code, reason)
			}
			if n := s.requests.Load() - before; n != 1 {
				t.Fatalf("%d requests for the CONNECT after the flush, want 1 (not answered from the cache)", n)
			}
			if n := statusOf(t, w.h, "httpauth").AuthCacheEntries; n != 1 {
				t.Fatalf("%d answers cached after the flush, want 1", n)
			}
		})
	}
}
