package access_test

import (
	"errors"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/passwd"
)

// policyOf is a policy with alice (role admin) whose password is pw,
// hashed with iterations.
func policyOf(t *testing.T, pw string, iterations int) *access.Policy {
	t.Helper()
	h, err := passwd.New([]byte(pw), iterations)
	if err != nil {
		t.Fatal(err)
	}
	p, err := access.Build(config.Admin{Users: []config.AdminUser{{Name: "alice", Roles: []string{"admin"}, PasswordHash: h}},
		SessionTTL: config.Duration(time.Hour)}, "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// loginFrom logs name in with pass from remote address addr.
func loginFrom(a *access.Access, addr, name, pass string) error {
	req := httptest.NewRequest("POST", "http://127.0.0.1:9/api/v1/login", nil)
	req.RemoteAddr = addr
	_, _, err := a.Login(req, name, pass)
	return err
}

// TestLimiterConcurrent: with a limit of one failure an hour, forty
// attempts at once check one password; the others are refused with 429
// without a password check.
func TestLimiterConcurrent(t *testing.T) {
	a := access.New(policyOf(t, "pw", 0), access.Options{Addr: "127.0.0.1:9",
		Limits: access.LoginLimits{PerIPBurst: 1, PerIPEvery: time.Hour, PerUserBurst: 1, PerUserEvery: time.Hour}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	tried, limited := 0, 0
	start := make(chan struct{})
	for i := range 40 {
		wg.Go(func() {
			<-start
			err := loginFrom(a, "192.0.2.1:1234", "alice", "guess"+string(rune('a'+i)))
			mu.Lock()
			defer mu.Unlock()
			var rl *access.RateLimitedError
			switch {
			case errors.As(err, &rl):
				limited++
			case errors.Is(err, access.ErrBadCredentials):
				tried++
			default:
				t.Errorf("attempt %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if tried != 1 || limited != 39 {
		t.Fatalf("%d passwords checked, %d refused with 429: want 1 and 39", tried, limited)
	}
}

// TestNoRemoteLockout: failures for alice from one IP do not refuse her
// right password from another, by login or basic auth; that IP itself is
// limited, and so is its whole IPv6 /64.
func TestNoRemoteLockout(t *testing.T) {
	a := access.New(policyOf(t, "pw", passwd.MinIterations), access.Options{Addr: "127.0.0.1:9"})
	for range access.DefaultLoginLimits.PerUserBurst {
		if err := loginFrom(a, "203.0.113.9:1", "alice", "x"); !errors.Is(err, access.ErrBadCredentials) {
			t.Fatal(err)
		}
	}
	var rl *access.RateLimitedError
	if err := loginFrom(a, "203.0.113.9:1", "alice", "pw"); !errors.As(err, &rl) {
		t.Fatalf("the failing IP, right password: %v, want 429", err)
	}
	if err := loginFrom(a, "127.0.0.1:2", "alice", "pw"); err != nil {
		t.Fatalf("alice from another IP: %v", err)
	}
	basic := httptest.NewRequest("GET", "http://127.0.0.1:9/api/v1/me", nil)
	basic.RemoteAddr = "127.0.0.1:3"
	basic.SetBasicAuth("alice", "pw")
	if _, err := a.Authenticate(basic); err != nil {
		t.Fatalf("alice's script from another IP: %v", err)
	}

	// An IPv6 host rotating through its /64 shares one bucket.
	for i := range access.DefaultLoginLimits.PerIPBurst {
		addr := "[2001:db8:1:2::" + strconv.FormatInt(int64(i+1), 16) + "]:1"
		if err := loginFrom(a, addr, "user"+string(rune('a'+i)), "x"); !errors.Is(err, access.ErrBadCredentials) {
			t.Fatalf("%s: %v", addr, err)
		}
	}
	if err := loginFrom(a, "[2001:db8:1:2:ffff::1]:1", "someone", "x"); !errors.As(err, &rl) || rl.Key != "ip 2001:db8:1:2::/64" {
		t.Fatalf("same /64: %v, want 429 for ip 2001:db8:1:2::/64", err)
	}
	if err := loginFrom(a, "[2001:db8:1:3::1]:1", "alice", "pw"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

// TestPasswordChangeEndsSessions: a reload that changes a user's password
// hash ends the user's sessions; one that keeps it keeps them.
func TestPasswordChangeEndsSessions(t *testing.T) {
	p := policyOf(t, "pw", passwd.MinIterations)
	a := access.New(p, access.Options{Addr: "127.0.0.1:9"})
	req := httptest.NewRequest("POST", "http://127.0.0.1:9/api/v1/login", nil)
	_, cookie, err := a.Login(req, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	me := func() error {
		get := httptest.NewRequest("GET", "http://127.0.0.1:9/api/v1/me", nil)
		get.AddCookie(cookie)
		_, err := a.Authenticate(get)
		return err
	}
	a.Use(p)
	if err := me(); err != nil {
		t.Fatalf("same policy again: %v", err)
	}
	changed := policyOf(t, "new-password", passwd.MinIterations)
	if got := changed.PasswordsChanged(p); len(got) != 1 || got[0] != "alice" {
		t.Fatalf("PasswordsChanged: %v", got)
	}
	a.Use(changed)
	if err := me(); !errors.Is(err, access.ErrUnauthenticated) {
		t.Fatalf("after the password change: %v, want not logged in", err)
	}
}
