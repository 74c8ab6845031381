package host

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The shipped jwt-auth extension (shipped/jwt-auth) in a real broker, with
// real MQTT clients, tokens signed here, and a JWKS endpoint on loopback.

// jwtSecret is the HMAC secret of the HS256 tests (32 bytes).
const jwtSecret = "0123456789abcdef0123456789abcdef"

// signJWT returns a compact JWS of claims with header hdr, signed by priv:
// a string HMAC secret (HS256), *rsa.PrivateKey (RS256), *ecdsa.PrivateKey
// (ES256) or nil (no signature).
func signJWT(t testing.TB, hdr, claims map[string]any, priv any) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := priv.(type) {
	case string:
		m := hmac.New(sha256.New, []byte(k))
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case *rsa.PrivateKey:
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:]); err != nil {
			t.Fatal(err)
		}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jwtClaims returns claims valid for an hour, with changes (nil deletes).
func jwtClaims(changes map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{"sub": "alice", "iss": "https://idp.test", "aud": "mqtt",
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix()}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// jwkJSON returns the public JWK of an RSA or P-256 key.
func jwkJSON(pub any, kid string) map[string]any {
	b := func(n *big.Int, size int) string {
		buf := make([]byte, size)
		n.FillBytes(buf)
		return base64.RawURLEncoding.EncodeToString(buf)
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b(p.N, (p.N.BitLen()+7)/8), "e": b(big.NewInt(int64(p.E)), 3)}
	case *ecdsa.PublicKey:
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b(p.X, 32), "y": b(p.Y, 32)}
	}
	panic(fmt.Sprintf("%T", pub))
}

// jwksServer serves a JWK set that a test may replace, and counts the
// requests.
type jwksServer struct {
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	body     []byte
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(keys...)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.URL.Path != "/jwks.json" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// set replaces the key set served.
func (s *jwksServer) set(keys ...map[string]any) {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

// startJWTAuth runs the shipped jwt-auth with manifest lines extra
// against a broker and returns its address.
func startJWTAuth(t *testing.T, extra string) *wired {
	t.Helper()
	extDir := t.TempDir()
	installExtension(t, extDir, "jwt-auth", buildGuest(t, "shipped", "jwt-auth"), 0, extra)
	w := startWired(t, extDir, Options{})
	if st := statusOf(t, w.h, "jwt-auth"); st.State != StateRunning {
		t.Fatalf("jwt-auth not running: %+v", st)
	}
	return w
}

// TestShippedJWTAuthHMAC: an HS256 token logs in; expired, not yet valid,
// wrong audience, wrong issuer, badly signed, unsigned (alg none),
// other-alg and non-JWT passwords are refused with 0x86; the token's
// permissions claim decides the client's publishes and subscriptions.
func TestShippedJWTAuthHMAC(t *testing.T) {
	w := startJWTAuth(t, `tick: 1s
config:
  disconnect_on_expiry: false
  hmac_secret: `+jwtSecret+`
  algorithms: [HS256]
  issuer: https://idp.test
  audience: [mqtt, other]
  leeway: 5s
  username_claim: sub
  default_permissions:
    subscribe: [public/#]
`)
	hs := map[string]any{"alg": "HS256", "typ": "JWT"}
	now := time.Now()
	for _, tc := range []struct {
		name, user, token string
		code              byte
		reason            string
	}{
		{"valid", "alice", signJWT(t, hs, jwtClaims(nil), jwtSecret), 0, ""},
		{"expired", "alice", signJWT(t, hs, jwtClaims(map[string]any{"exp": now.Add(-time.Minute).Unix()}), jwtSecret), 0x86, "invalid token"},
		{"not yet valid", "alice", signJWT(t, hs, jwtClaims(map[string]any{"nbf": now.Add(time.Hour).Unix()}), jwtSecret), 0x86, "invalid token"},
		{"wrong audience", "alice", signJWT(t, hs, jwtClaims(map[string]any{"aud": "web"}), jwtSecret), 0x86, "invalid token"},
		{"wrong issuer", "alice", signJWT(t, hs, jwtClaims(map[string]any{"iss": "https://evil.test"}), jwtSecret), 0x86, "invalid token"},
		{"bad signature", "alice", signJWT(t, hs, jwtClaims(nil), strings.ToUpper(jwtSecret)), 0x86, "invalid token"},
		{"alg none", "alice", signJWT(t, map[string]any{"alg": "none"}, jwtClaims(nil), nil), 0x86, "invalid token"},
		{"HS512 not configured", "alice", signJWT(t, map[string]any{"alg": "HS512"}, jwtClaims(nil), jwtSecret), 0x86, "invalid token"},
		{"other user name", "bob", signJWT(t, hs, jwtClaims(nil), jwtSecret), 0x86, "token issued to another user name"},
		{"not a JWT", "alice", "hunter2", 0x86, "a JWT is required as the password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, reason := connectOnce(t, w.addr, "c-"+strings.ReplaceAll(tc.name, " ", "-"), tc.user, tc.token); code != tc.code || reason != tc.reason {
				t.Fatalf("CONNACK %#x %q, want %#x %q", code, reason, tc.code, tc.reason)
			}
		})
	}
	if !strings.Contains(w.logs.String(), `expired at`) || !strings.Contains(w.logs.String(), `unsigned token (alg \"none\") refused`) {
		t.Fatalf("the log does not say why tokens were refused:\n%s", w.logs.String())
	}
	// MQTT 3.1.1 clients get 0x04 (bad user name or password) and 0x00.
	if code := v3ReturnCode(w.addr, "v3-bad", "alice", signJWT(t, map[string]any{"alg": "none"}, jwtClaims(nil), nil)); code != 4 {
		t.Fatalf("3.1.1 alg none: return code %d, want 4", code)
	}
	if code := v3ReturnCode(w.addr, "v3-good", "alice", signJWT(t, hs, jwtClaims(nil), jwtSecret)); code != 0 {
		t.Fatalf("3.1.1 valid token: return code %d, want 0", code)
	}

	// Permissions from the claim, with {username} (bound by
	// username_claim) and {clientid} in deny (it only narrows).
	acl := map[string]any{"publish": []string{"users/{username}/#"}, "subscribe": []string{"users/{username}/in/+"}, "deny": []string{"users/{username}/secret", "users/+/in/{clientid}"}}
	_, _, c := connack(t, w.addr, "dev1", "alice", signJWT(t, hs, jwtClaims(map[string]any{"acl": acl}), jwtSecret))
	if c == nil {
		t.Fatal("token with an acl claim refused")
	}
	checkPublishes(t, c, map[string]byte{"users/alice/x": 0, "users/alice/secret": 0x87, "users/bob/x": 0x87, "public/news": 0x87})
	checkSubscribes(t, c, []string{"users/alice/in/a", "users/alice/in/dev1", "users/bob/in/a", "public/#"}, []byte{1, 0x87, 0x87, 0x87})
	// A claim granting by {clientid} while clientid_claim is not set: any
	// holder of the token could pick another client's id; refused.
	unbound := map[string]any{"publish": []string{"devices/{clientid}/up"}}
	if code, reason := connectOnce(t, w.addr, "dev9", "alice", signJWT(t, hs, jwtClaims(map[string]any{"acl": unbound}), jwtSecret)); code != 0x86 || reason != "invalid token" {
		t.Fatalf("unbound {clientid}: CONNACK %#x %q", code, reason)
	}
	if !strings.Contains(w.logs.String(), `grants by {clientid}, but config.clientid_claim is not set`) {
		t.Fatal("the log does not say why the unbound {clientid} token was refused")
	}
	// Without the claim: config.default_permissions.
	_, _, d := connack(t, w.addr, "dev2", "alice", signJWT(t, hs, jwtClaims(nil), jwtSecret))
	if d == nil {
		t.Fatal("token without acl refused")
	}
	checkPublishes(t, d, map[string]byte{"public/news": 0x87, "devices/dev2/up": 0x87})
	checkSubscribes(t, d, []string{"public/#", "devices/#"}, []byte{1, 0x87})
}

// checkPublishes publishes at QoS 1 to each topic and checks the PUBACK's
// reason code.
func checkPublishes(t *testing.T, c *paho.Client, want map[string]byte) {
	t.Helper()
	for topic, code := range want {
		r, err := c.Publish(ctx(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
		if r == nil || r.ReasonCode != code {
			t.Errorf("publish %s: %+v (%v), want reason %#x", topic, r, err, code)
		}
	}
}

// checkSubscribes subscribes to filters at QoS 1 and checks the SUBACK.
func checkSubscribes(t *testing.T, c *paho.Client, filters []string, want []byte) {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := c.Subscribe(ctx(t), s)
	if ack == nil {
		t.Fatalf("subscribe: %v", err)
	}
	if string(ack.Reasons) != string(want) {
		t.Fatalf("SUBACK for %q: %x, want %x", filters, ack.Reasons, want)
	}
}

// TestShippedJWTAuthJWKS: RS256 and ES256 tokens verified with keys from a
// JWKS URL, fetched through the outbound HTTP service; after a key
// rotation, a token with the new kid makes the extension fetch again; a
// bad signature and an RS256 token with the EC key's kid are refused.
func TestShippedJWTAuthJWKS(t *testing.T) {
	rsa1, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idp := newJWKSServer(t, jwkJSON(&rsa1.PublicKey, "r1"), jwkJSON(&ec1.PublicKey, "e1"))
	host := strings.TrimPrefix(idp.srv.URL, "http://")
	w := startJWTAuth(t, fmt.Sprintf(`services: [http, storage, clients]
tick: 1s
http:
  hosts: [%q]
limits:
  pool_size: 1
  max_pool_size: 1
config:
  jwks_url: %s/jwks.json
  jwks_min_refetch: 1s
  issuer: https://idp.test
  audience: mqtt
`, host, idp.srv.URL))
	ok := func(id string, hdr map[string]any, priv any) bool {
		code, _ := connectOnce(t, w.addr, id, "u", signJWT(t, hdr, jwtClaims(nil), priv))
		return code == 0
	}
	if !ok("rs", map[string]any{"alg": "RS256", "kid": "r1"}, rsa1) || !ok("es", map[string]any{"alg": "ES256", "kid": "e1"}, ec1) {
		t.Fatal("RS256 or ES256 token with a JWKS key refused")
	}
	if ok("rs-bad", map[string]any{"alg": "RS256", "kid": "r1"}, rsa2) || ok("es-bad", map[string]any{"alg": "ES256", "kid": "e1"}, ec2) {
		t.Fatal("token signed by another key accepted")
	}
	if ok("confused", map[string]any{"alg": "HS256", "kid": "r1"}, "any secret at all, 32 bytes long!!") {
		t.Fatal("HS256 token accepted with an RSA key's kid")
	}

	// Rotation: the IdP now publishes r2 and e2 only.
	idp.set(jwkJSON(&rsa2.PublicKey, "r2"), jwkJSON(&ec2.PublicKey, "e2"))
	before := idp.requests.Load()
	poll.Until(t, "a token signed with the rotated RSA key accepted", func() bool {
		return ok("rs2", map[string]any{"alg": "RS256", "kid": "r2"}, rsa2)
	})
	if n := idp.requests.Load() - before; n < 1 {
		t.Fatalf("%d JWKS requests after the rotation", n)
	}
	if !ok("es2", map[string]any{"alg": "ES256", "kid": "e2"}, ec2) {
		t.Fatal("ES256 token with the rotated key refused")
	}
	if ok("rs1-old", map[string]any{"alg": "RS256", "kid": "r1"}, rsa1) {
		t.Fatal("token of a key removed from the set accepted")
	}
}

// TestShippedJWTAuthJWKSRefetchFloor: a flood of tokens with unknown kids
// makes no request to the JWKS endpoint within jwks_min_refetch, and an
// endpoint that is down leaves every token refused, not accepted.
func TestShippedJWTAuthJWKSRefetchFloor(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	idp := newJWKSServer(t, jwkJSON(&key.PublicKey, "k1"))
	w := startJWTAuth(t, fmt.Sprintf(`services: [http, storage, clients]
tick: 1s
http:
  hosts: [%q]
limits:
  pool_size: 1
  max_pool_size: 1
config:
  jwks_url: %s/jwks.json
  jwks_min_refetch: 1h
`, strings.TrimPrefix(idp.srv.URL, "http://"), idp.srv.URL))
	if code, _ := connectOnce(t, w.addr, "good", "u", signJWT(t, map[string]any{"alg": "RS256", "kid": "k1"}, jwtClaims(nil), key)); code != 0 {
		t.Fatalf("valid token: CONNACK %#x", code)
	}
	before := idp.requests.Load()
	for i := range 20 {
		tok := signJWT(t, map[string]any{"alg": "RS256", "kid": fmt.Sprint("made-up-", i)}, jwtClaims(nil), key)
		if code, _ := connectOnce(t, w.addr, fmt.Sprint("flood", i), "u", tok); code != 0x86 {
			t.Fatalf("unknown kid %d: CONNACK %#x, want 0x86", i, code)
		}
	}
	if n := idp.requests.Load() - before; n != 0 {
		t.Fatalf("%d JWKS requests during the flood, want 0 within jwks_min_refetch", n)
	}

	// A JWKS endpoint that was never reachable: no key, every token refused.
	down := startJWTAuth(t, `services: [http, storage, clients]
tick: 1s
http:
  hosts: ["127.0.0.1:9"]
config:
  jwks_url: http://127.0.0.1:9/jwks.json
`)
	if code, _ := connectOnce(t, down.addr, "c", "u", signJWT(t, map[string]any{"alg": "RS256", "kid": "k1"}, jwtClaims(nil), key)); code != 0x86 {
		t.Fatalf("with the JWKS endpoint down: CONNACK %#x, want 0x86", code)
	}
	if !strings.Contains(down.logs.String(), "jwt-auth: JWKS http://127.0.0.1:9/jwks.json:") {
		t.Fatalf("the log does not name the JWKS URL:\n%s", down.logs.String())
	}
}

// TestShippedJWTAuthBadConfig: a config error refuses the start and names
// the key.
func TestShippedJWTAuthBadConfig(t *testing.T) {
	extDir := t.TempDir()
	installExtension(t, extDir, "jwt-auth", buildGuest(t, "shipped", "jwt-auth"), 0, "tick: 1s\nconfig:\n  hmac_secret: short\n  leway: 5s\n")
	w := startWired(t, extDir, Options{})
	st := statusOf(t, w.h, "jwt-auth")
	if st.State != StateFailed || !strings.Contains(st.Reason, `config: unknown key "leway"`) {
		t.Fatalf("status %+v, want a start refused for the unknown key", st)
	}
}

// TestShippedJWTAuthDisconnectOnExpiry: a client is disconnected (MQTT 5:
// DISCONNECT 0x87 "token expired") once its token expires; a client that
// reconnected with a fresh token under the same client id is not; without
// the storage and clients services the start is refused, naming the key.
func TestShippedJWTAuthDisconnectOnExpiry(t *testing.T) {
	w := startJWTAuth(t, `services: [storage, clients]
tick: 100ms
limits:
  call_deadline: 1s
config:
  hmac_secret: `+jwtSecret+`
  leeway: 0
  default_permissions: {all: ["#"]}
`)
	hs := map[string]any{"alg": "HS256"}
	// A connection that reports the server's DISCONNECT.
	connectWatched := func(id string, exp time.Time) (*paho.Client, chan *paho.Disconnect) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", w.addr, poll.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		gone := make(chan *paho.Disconnect, 1)
		c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { gone <- d }})
		tok := signJWT(t, hs, jwtClaims(map[string]any{"exp": exp.Unix()}), jwtSecret)
		ack, err := c.Connect(ctx(t), &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, Username: "u", UsernameFlag: true, Password: []byte(tok), PasswordFlag: true})
		if err != nil || ack.ReasonCode != 0 {
			t.Fatalf("connect %s: %+v, %v", id, ack, err)
		}
		return c, gone
	}
	_, short := connectWatched("short", time.Now().Add(2*time.Second))
	// A client id longer than a storage key (1,024 bytes) is disconnected
	// too: the record's key holds a hash of it.
	_, longID := connectWatched(strings.Repeat("x", 1100), time.Now().Add(2*time.Second))
	_, long := connectWatched("long", time.Now().Add(time.Hour))
	for _, gone := range []chan *paho.Disconnect{short, longID} {
		select {
		case d := <-gone:
			if d.ReasonCode != 0x87 || d.Properties == nil || d.Properties.ReasonString != "token expired" {
				t.Fatalf("DISCONNECT %+v", d)
			}
		case <-time.After(poll.Timeout):
			t.Fatal("the client with an expired token is still connected")
		}
	}
	select {
	case d := <-long:
		t.Fatalf("the client with a valid token was disconnected: %+v", d)
	default:
	}

	// Reconnecting with a fresh token: the first token's expiry does not
	// disconnect the new connection. Tokens are handled in the order they
	// expire, so once "late" is disconnected, the first token of "re" has
	// been handled too.
	now := time.Now()
	_, first := connectWatched("re", now.Add(2*time.Second))
	_, late := connectWatched("late", now.Add(4*time.Second))
	_, second := connectWatched("re", now.Add(time.Hour)) // takes the session over
	if d := <-first; d.ReasonCode != 0x8E {
		t.Fatalf("take-over: DISCONNECT %+v, want 0x8E", d)
	}
	select {
	case <-late:
	case <-time.After(poll.Timeout):
		t.Fatal("the client with an expired token is still connected")
	}
	select {
	case d := <-second:
		t.Fatalf("the reconnected client was disconnected: %+v", d)
	default:
	}

	extDir := t.TempDir()
	installExtension(t, extDir, "jwt-auth", buildGuest(t, "shipped", "jwt-auth"), 0, "tick: 1s\nconfig:\n  hmac_secret: "+jwtSecret+"\n")
	st := statusOf(t, startWired(t, extDir, Options{}).h, "jwt-auth")
	if st.State != StateFailed || !strings.Contains(st.Reason, "config.disconnect_on_expiry: needs the storage service") {
		t.Fatalf("status %+v, want a start refused naming disconnect_on_expiry", st)
	}
}

// BenchmarkShippedJWTAuthenticate: one CONNECT's authentication by the
// shipped jwt-auth in Wasm, per algorithm, keys from the manifest.
func BenchmarkShippedJWTAuthenticate(b *testing.B) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(map[string]any{"keys": []any{jwkJSON(&rsaKey.PublicKey, "r1"), jwkJSON(&ecKey.PublicKey, "e1")}})
	extDir := b.TempDir()
	installExtension(b, extDir, "jwt-auth", buildGuest(b, "shipped", "jwt-auth"), 0, fmt.Sprintf("tick: 1s\nconfig:\n  disconnect_on_expiry: false\n  hmac_secret: %s\n  jwks: %s\n", jwtSecret, jwks))
	h, _ := newTestHost(b, extDir)
	for _, tc := range []struct {
		alg, kid string
		priv     any
	}{{"HS256", "", jwtSecret}, {"RS256", "r1", rsaKey}, {"ES256", "e1", ecKey}} {
		b.Run(tc.alg, func(b *testing.B) {
			hdr := map[string]any{"alg": tc.alg}
			if tc.kid != "" {
				hdr["kid"] = tc.kid
			}
			c := connect("u", signJWT(b, hdr, jwtClaims(nil), tc.priv))
			b.ResetTimer()
			for range b.N {
				if res := h.Authenticate(context.Background(), c); res.Decision != broker.Allow {
					b.Fatalf("%+v", res)
				}
			}
		})
	}
}
