package access_test

import (
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/passwd"
)

// clock is a settable time for sessions and limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// guard returns an Access with users alice and, when users is "ab", bob
// (password "pw", role viewer) on a settable clock.
func guard(t *testing.T, users string) (*access.Access, *clock) {
	t.Helper()
	hash, err := passwd.New([]byte("pw"), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	y := "admin:\n  session_ttl: 1h\n  users:\n"
	for _, u := range []string{"alice", "bob"}[:len(users)] {
		y += "    - name: " + u + "\n      roles: [viewer]\n      password_hash: \"" + hash + "\"\n"
	}
	a, file := parse(t, t.TempDir(), y)
	p, err := access.Build(a, file)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return access.New(p, access.Options{Addr: "127.0.0.1:9", Now: c.now}), c
}

// TestSessionExpiry: a session lasts session_ttl; a reload without its
// user ends it.
func TestSessionExpiry(t *testing.T) {
	g, c := guard(t, "ab")
	req := httptest.NewRequest("POST", "http://127.0.0.1:9/api/v1/login", nil)
	_, cookie, err := g.Login(req, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	get := httptest.NewRequest("GET", "http://127.0.0.1:9/api/v1/me", nil)
	get.AddCookie(cookie)
	if p, err := g.Authenticate(get); err != nil || p.User != "alice" || !p.Can(access.ClientsView) || p.Can(access.ClientsDisconnect) {
		t.Fatalf("%+v %v", p, err)
	}
	c.add(time.Hour)
	if _, err := g.Authenticate(get); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("after the ttl: %v", err)
	}
	_, cookie, err = g.Login(req, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	get = httptest.NewRequest("GET", "http://127.0.0.1:9/api/v1/me", nil)
	get.AddCookie(cookie)
	g.Use(policyWithout(t))
	if _, err := g.Authenticate(get); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("after alice was removed: %v", err)
	}
}

// policyWithout is a policy without alice: its one user is carol.
func policyWithout(t *testing.T) *access.Policy {
	t.Helper()
	hash, err := passwd.New([]byte("pw"), passwd.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	a, file := parse(t, t.TempDir(), "admin:\n  users:\n    - name: carol\n      roles: [viewer]\n      password_hash: \""+hash+"\"\n")
	p, err := access.Build(a, file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoginLimitRecovers: after the burst of failures a user is limited
// (even with the right password) until a token comes back.
func TestLoginLimitRecovers(t *testing.T) {
	g, c := guard(t, "a")
	req := httptest.NewRequest("POST", "http://127.0.0.1:9/api/v1/login", nil)
	for range access.DefaultLoginLimits.PerUserBurst {
		if _, _, err := g.Login(req, "alice", "no"); !errors.Is(err, access.ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	var rl *access.RateLimitedError
	if _, _, err := g.Login(req, "alice", "pw"); !errors.As(err, &rl) || rl.RetryAfter != access.DefaultLoginLimits.PerUserEvery {
		t.Fatalf("limited: %v", err)
	}
	c.add(access.DefaultLoginLimits.PerUserEvery)
	if _, _, err := g.Login(req, "alice", "pw"); err != nil {
		t.Fatalf("after a token came back: %v", err)
	}
}

// TestCheckHost: loopback names and the bound address pass; others fail.
func TestCheckHost(t *testing.T) {
	g, _ := guard(t, "a")
	for host, want := range map[string]bool{"127.0.0.1:9": true, "localhost": true, "LOCALHOST:80": true, "[::1]:5": true,
		"127.0.0.2": true, "evil.example": false, "10.0.0.1:9": false, "": false} {
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.Host = host
		if got := g.CheckHost(r); got != want {
			t.Errorf("Host %q: %v, want %v", host, got, want)
		}
	}
}
