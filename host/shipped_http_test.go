package host

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The shipped http-auth extension (shipped/http-auth) in a real broker,
// with real MQTT clients and an auth endpoint on loopback.

// authEndpoint is an operator's auth webhook: alice with password "good"
// is allowed with permissions, "nobody" gets a 200 deny, "forbidden" a
// 403, "broken" a 500; user "slow" waits until the test ends. It keeps
// the requests' bodies and counts them.
type authEndpoint struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	bodies   []map[string]any
	release  chan struct{}
}

func newAuthEndpoint(t *testing.T) *authEndpoint {
	t.Helper()
	e := &authEndpoint{release: make(chan struct{})}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		var body map[string]any
		if r.Method != http.MethodPost || r.URL.Path != "/mqtt/auth" || r.Header.Get("Content-Type") != "application/json" ||
			r.Header.Get("Authorization") != "Bearer hook-token" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.bodies = append(e.bodies, body)
		e.mu.Unlock()
		switch body["username"] {
		case "alice":
			if body["password"] != "good" {
				_, _ = w.Write([]byte(`{"result":"deny","reason":"wrong password"}`))
				return
			}
			_, _ = w.Write([]byte(`{"result":"allow","permissions":{"publish":["devices/{clientid}/up"],"subscribe":["devices/{clientid}/down"]}}`))
		case "nobody":
			_, _ = w.Write([]byte(`{"result":"deny","reason":"unknown user"}`))
		case "forbidden":
			w.WriteHeader(http.StatusForbidden)
		case "broken":
			http.Error(w, "database down", http.StatusInternalServerError)
		case "slow":
			select {
			case <-e.release:
			case <-r.Context().Done():
			}
		default:
			_, _ = w.Write([]byte(`{"result":"ignore"}`))
		}
	}))
	t.Cleanup(func() {
		close(e.release)
		e.srv.Close()
	})
	return e
}

// last returns the last request body.
func (e *authEndpoint) last() map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.bodies) == 0 {
		return nil
	}
	return e.bodies[len(e.bodies)-1]
}

// startHTTPAuthShipped runs the shipped http-auth against url (host
// allow-listed), with config lines cfg (indented two spaces) and limits.
func startHTTPAuthShipped(t *testing.T, url, host, limits, cfg string) *wired {
	t.Helper()
	extDir := t.TempDir()
	installExtension(t, extDir, "http-auth", buildGuest(t, "shipped", "http-auth"), 0, fmt.Sprintf(`services: [http]
http:
  hosts: [%q]
limits:
  pool_size: 1
%s
config:
  url: %s
  headers: {Authorization: Bearer hook-token}
%s`, host, limits, url, cfg))
	w := startWired(t, extDir, Options{})
	if st := statusOf(t, w.h, "http-auth"); st.State != StateRunning {
		t.Fatalf("http-auth not running: %+v", st)
	}
	return w
}

// TestShippedHTTPAuth: the endpoint's allow (with permissions the broker
// enforces), deny, 403 and ignore; the request body; answers cached (the
// endpoint asked once per identity); a 500 falls back to deny.
func TestShippedHTTPAuth(t *testing.T) {
	e := newAuthEndpoint(t)
	w := startHTTPAuthShipped(t, e.srv.URL+"/mqtt/auth", strings.TrimPrefix(e.srv.URL, "http://"), "", "  cache_ttl: 1h\n  deny_cache_ttl: 1h\n")
	expect := func(step, id, user, pass string, code byte, reason string, requests int64) {
		t.Helper()
		if got, why := connectOnce(t, w.addr, id, user, pass); got != code || why != reason {
			t.Fatalf("%s: CONNACK %#x %q, want %#x %q", step, got, why, code, reason)
		}
		if n := e.requests.Load(); n != requests {
			t.Fatalf("%s: %d requests at the endpoint, want %d", step, n, requests)
		}
	}

	_, _, c := connack(t, w.addr, "dev1", "alice", "good")
	if c == nil {
		t.Fatal("alice refused")
	}
	body := e.last()
	if body["action"] != "connect" || body["clientid"] != "dev1" || body["username"] != "alice" || body["password"] != "good" ||
		body["password_encoding"] != "string" || body["protocol_version"] != 5.0 || body["listener"] != "tcp" || body["tls"] != false ||
		!strings.HasPrefix(fmt.Sprint(body["peer_addr"]), "127.0.0.1:") {
		t.Fatalf("request body %v", body)
	}
	checkPublishes(t, c, map[string]byte{"devices/dev1/up": 0, "devices/dev2/up": 0x87, "devices/dev1/down": 0x87})
	checkSubscribes(t, c, []string{"devices/dev1/down", "devices/dev1/up", "#"}, []byte{1, 0x87, 0x87})

	expect("alice again: cached", "dev1", "alice", "good", 0, "", 1)
	expect("alice from another client id", "dev2", "alice", "good", 0, "", 2)
	expect("wrong password", "dev1", "alice", "bad", 0x86, "wrong password", 3)
	expect("wrong password again: the denial is cached", "dev1", "alice", "bad", 0x86, "wrong password", 3)
	expect("deny", "n1", "nobody", "x", 0x86, "unknown user", 4)
	expect("403", "f1", "forbidden", "x", 0x86, "not authorized", 5)
	// ignore passes to the next extension; there is none, so 0x87.
	expect("ignore", "i1", "someone", "x", 0x87, "no extension accepted the client", 6)
	// A 500 is a failure: the fallback (deny, 0x88), never cached.
	expect("500", "b1", "broken", "x", 0x88, "authentication service unavailable", 7)
	expect("500 again: asked again", "b1", "broken", "x", 0x88, "authentication service unavailable", 8)
	if !strings.Contains(w.logs.String(), fmt.Sprintf("http-auth: endpoint %s/mqtt/auth: HTTP status 500; fallback deny for client", e.srv.URL)) {
		t.Fatalf("the log does not name the endpoint and the error:\n%s", w.logs.String())
	}
	// MQTT 3.1.1: a denial is 0x04, the fallback 0x03 (server unavailable).
	if code := v3ReturnCode(w.addr, "v3", "nobody", "x"); code != 4 {
		t.Fatalf("3.1.1 deny: return code %d, want 4", code)
	}
	if code := v3ReturnCode(w.addr, "v3b", "broken", "x"); code != 3 {
		t.Fatalf("3.1.1 fallback: return code %d, want 3", code)
	}
}

// TestShippedHTTPAuthTimeout: an endpoint slower than
// limits.authenticate_deadline gets the fallback decision (here allow with
// fallback_permissions), answered by the extension before the deadline
// (the request gets nine tenths of it, the extension the last 100 ms).
func TestShippedHTTPAuthTimeout(t *testing.T) {
	e := newAuthEndpoint(t)
	w := startHTTPAuthShipped(t, e.srv.URL+"/mqtt/auth", strings.TrimPrefix(e.srv.URL, "http://"), "  authenticate_deadline: 1s",
		"  fallback: allow\n  fallback_permissions: {subscribe: [status/#]}\n")
	code, reason, c := connack(t, w.addr, "s1", "slow", "x")
	if c == nil {
		t.Fatalf("fallback allow: CONNACK %#x %q\n%s", code, reason, w.logs.String())
	}
	checkSubscribes(t, c, []string{"status/a", "other"}, []byte{1, 0x87})
	checkPublishes(t, c, map[string]byte{"status/a": 0x87})
	if st := statusOf(t, w.h, "http-auth"); st.Errors != 0 {
		t.Fatalf("%d failed calls: the extension did not answer in time", st.Errors)
	}
	if !strings.Contains(w.logs.String(), fmt.Sprintf("http-auth: endpoint %s/mqtt/auth: no answer", e.srv.URL)) {
		t.Fatalf("the log does not name the endpoint:\n%s", w.logs.String())
	}
	// A real answer still comes through.
	if code, _ := connectOnce(t, w.addr, "n1", "nobody", "x"); code != 0x86 {
		t.Fatalf("deny after a timeout: %#x", code)
	}
}

// TestShippedHTTPAuthEndpointDown: with nothing listening, the default
// fallback denies with 0x88 each time (nothing cached), and fallback next
// passes to the next extension.
func TestShippedHTTPAuthEndpointDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	w := startHTTPAuthShipped(t, "http://"+addr+"/mqtt/auth", addr, "", "")
	for i := range 3 {
		if code, reason := connectOnce(t, w.addr, fmt.Sprint("c", i), "alice", "good"); code != 0x88 || reason != "authentication service unavailable" {
			t.Fatalf("endpoint down: CONNACK %#x %q, want 0x88", code, reason)
		}
	}
	if !strings.Contains(w.logs.String(), fmt.Sprintf("http-auth: endpoint http://%s/mqtt/auth: no answer", addr)) {
		t.Fatalf("the log does not name the endpoint:\n%s", w.logs.String())
	}

	// fallback: next, with allow-all after it in the chain.
	extDir := t.TempDir()
	installExtension(t, extDir, "http-auth", buildGuest(t, "shipped", "http-auth"), 10, fmt.Sprintf("services: [http]\nhttp:\n  hosts: [%q]\nconfig:\n  url: http://%s/mqtt/auth\n  fallback: next\n", addr, addr))
	installExtension(t, extDir, "allow-all", example(t, "allow-all"), 0, "")
	w2 := startWired(t, extDir, Options{})
	if code, _ := connectOnce(t, w2.addr, "c", "alice", "good"); code != 0 {
		t.Fatalf("fallback next: CONNACK %#x, want 0 from allow-all", code)
	}
}

// TestShippedHTTPAuthBadConfig: a config error refuses the start and names
// the key.
func TestShippedHTTPAuthBadConfig(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "http-auth", buildGuest(t, "shipped", "http-auth"), 0, "config:\n  url: http://127.0.0.1:1/\n  fallback: open\n")
	w := startWired(t, extDir, Options{})
	st := statusOf(t, w.h, "http-auth")
	if st.State != StateFailed || !strings.Contains(st.Reason, `config.fallback: "open", want deny, allow or next`) {
		t.Fatalf("status %+v, want a start refused naming config.fallback", st)
	}
}

// TestShippedHTTPAuthBadHeaderName: a header name the broker's HTTP
// service would refuse on every request ("X-Hook/Key" is no HTTP token)
// refuses the start, naming config.headers; with fallback allow it used
// to let every client in, the endpoint never asked.
func TestShippedHTTPAuthBadHeaderName(t *testing.T) {
	e := newAuthEndpoint(t)
	extDir := t.TempDir()
	installExtension(t, extDir, "http-auth", buildGuest(t, "shipped", "http-auth"), 0, fmt.Sprintf(`services: [http]
http:
  hosts: [%q]
config:
  url: %s/mqtt/auth
  headers: {"X-Hook/Key": s3cret}
  fallback: allow
  fallback_permissions: {all: ["#"]}
`, strings.TrimPrefix(e.srv.URL, "http://"), e.srv.URL))
	w := startWired(t, extDir, Options{})
	st := statusOf(t, w.h, "http-auth")
	if st.State != StateFailed || !strings.Contains(st.Reason, `config.headers: "X-Hook/Key" is not a valid header name`) {
		t.Fatalf("status %+v, want a start refused naming config.headers", st)
	}
	if code, _ := connectOnce(t, w.addr, "dev1", "nobody", "wrong"); code == 0 {
		t.Fatal("a client got in")
	}
}
