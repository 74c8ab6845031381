package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin"
	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/passwd"
	"github.com/propolis-mqtt/propolis/trace"
)

// The admin API over a real broker, a real extension host running the
// hand-written wat-auth security extension (testdata/wasm/ok), real MQTT
// clients on loopback and a real HTTP server on loopback.

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rig is a running broker, host and API.
type rig struct {
	srv   *broker.Server
	h     *host.Host
	acc   *access.Access
	rec   *trace.Recorder
	url   string
	mqtt  string
	exts  string
	audit string
	// auditLog is the open audit log (a test closes it to make writes fail).
	auditLog *access.Audit
	logs     *logBuffer
}

// testPassword is every test user's password.
const testPassword = "correct horse"

// hashOf hashes testPassword with the fewest iterations passwd allows, to
// keep logins cheap in tests.
var hashOf = sync.OnceValue(func() string {
	h, err := passwd.New([]byte(testPassword), passwd.MinIterations)
	if err != nil {
		panic(err)
	}
	return h
})

// tokenFor is the API token of role (admin.tokens of testAdmin).
func tokenFor(role string) string { return "token-of-" + role }

// onlyRole and allButRole name the roles testAdmin makes for each
// permission.
func onlyRole(p access.Permission) string   { return "only-" + string(p) }
func allButRole(p access.Permission) string { return "all-but-" + string(p) }

// testAdmin is an admin section with users alice (admin), victor (viewer)
// and oscar (operator), and a token per role: the built-in ones and, for
// each permission, one role with only it and one with all but it.
func testAdmin() config.Admin {
	a := config.Default().Admin
	a.Users = []config.AdminUser{
		{Name: "alice", Roles: []string{"admin"}, PasswordHash: hashOf()},
		{Name: "victor", Roles: []string{"viewer"}, PasswordHash: hashOf()},
		{Name: "oscar", Roles: []string{"operator"}, PasswordHash: hashOf()},
	}
	roles := map[string]any{}
	names := []string{"admin", "operator", "viewer"}
	for _, p := range access.Permissions {
		roles[onlyRole(p)] = []any{string(p)}
		var rest []any
		for _, q := range access.Permissions {
			if q != p {
				rest = append(rest, string(q))
			}
		}
		roles[allButRole(p)] = rest
		names = append(names, onlyRole(p), allButRole(p))
	}
	a.Roles = roles
	for _, n := range names {
		a.Tokens = append(a.Tokens, config.AdminToken{Name: "tok-" + n, SHA256: access.TokenDigest(tokenFor(n)), Roles: []string{n}})
	}
	return a
}

// installWatAuth puts the wat-auth extension in exts.
func installWatAuth(t *testing.T, exts string) {
	t.Helper()
	dir := filepath.Join(exts, "wat-auth")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(filepath.Join("..", "testdata", "wasm", "ok", "wat_auth.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ext.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	m := "id: wat-auth\nversion: 1.0.0\nmodule: ext.wasm\n"
	if err := os.WriteFile(filepath.Join(dir, host.ManifestFile), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startRig starts a broker with the wat-auth extension, watched, and the
// API with adm's users on a loopback HTTP server.
func startRig(t *testing.T, adm config.Admin) *rig { return startClusterRig(t, adm, nil) }

// startClusterRig is startRig with the API's options changed by set
// (the cluster's, for a node of a cluster), once the rig's extensions
// folder r.exts exists; nil: the broker runs alone.
func startClusterRig(t *testing.T, adm config.Admin, set func(r *rig, o *admin.Options)) *rig {
	t.Helper()
	r := &rig{logs: &logBuffer{}, exts: t.TempDir()}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	installWatAuth(t, r.exts)
	h, err := host.New(host.Options{Dir: r.exts, CacheDir: filepath.Join(os.TempDir(), "propolis-test-wasm-cache"), Logger: log, BrokerVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Admin = adm
	srv, err := broker.New(broker.Options{Config: cfg, Logger: log, Version: "test",
		Extensions: broker.Extensions{Authenticator: h, Events: h, Interceptors: h}})
	if err != nil {
		t.Fatal(err)
	}
	h.UseBroker(srv)
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	h.Watch()
	r.srv, r.h, r.mqtt = srv, h, srv.Addr("tcp")

	policy, err := access.Build(adm, "")
	if err != nil {
		t.Fatal(err)
	}
	r.audit = filepath.Join(cfg.DataDir, adm.AuditLog)
	audit, err := access.OpenAudit(r.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = audit.Close() })
	r.auditLog = audit
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.acc = access.New(policy, access.Options{Addr: ln.Addr().String(), Audit: audit, Logger: log})
	r.rec, err = trace.OpenDataDir(cfg.DataDir, cfg.Trace, log)
	if err != nil {
		t.Fatal(err)
	}
	r.rec.Attach(srv)
	t.Cleanup(func() { _ = r.rec.Close() })
	mux := http.NewServeMux()
	o := admin.Options{Broker: srv, Queries: srv, Host: h, Access: r.acc, Recorder: r.rec, ExtensionsDir: r.exts,
		Version: "test", Logger: log}
	if set != nil {
		set(r, &o)
	}
	admin.New(o).Mount(mux)
	hs := &http.Server{Handler: mux}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	r.url = "http://" + ln.Addr().String()
	return r
}

// call is one HTTP request's answer.
type call struct {
	code int
	body []byte
	hdr  http.Header
}

// json decodes the body into a generic value.
func (c call) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(c.body, &v); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v\n%s", c.code, err, c.body)
	}
	return v
}

// req sends method path with body (JSON-encoded unless nil or []byte) and
// the headers set by auth.
func (r *rig) req(t *testing.T, method, path string, body any, auth func(*http.Request)) call {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	hr, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(hr)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswer(t, method, hr.URL.EscapedPath(), resp.StatusCode, resp.Header.Get("Content-Type"), data)
	var sent []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		sent = b
	default:
		sent, _ = json.Marshal(b)
	}
	checkRequest(t, method, hr.URL, hr.Header.Get("Content-Type"), sent, resp.StatusCode)
	return call{code: resp.StatusCode, body: data, hdr: resp.Header}
}

// bearer authenticates with the token of role.
func bearer(role string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tokenFor(role)) }
}

// want fails unless c has code.
func (c call) want(t *testing.T, code int, what string) call {
	t.Helper()
	if c.code != code {
		t.Fatalf("%s: status %d, want %d: %s", what, c.code, code, c.body)
	}
	return c
}

// connect5 connects an MQTT 5 client as wat/secret with session expiry
// 120 s (wat-auth sets it), changed by opt.
func connect5(t *testing.T, addr, id string, opt func(*paho.Connect), cfg func(*paho.ClientConfig)) *paho.Client {
	t.Helper()
	cc := paho.ClientConfig{ClientID: id}
	if cfg != nil {
		cfg(&cc)
	}
	c := brokertest.DialV5(t, addr, cc)
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, Username: "wat", UsernameFlag: true,
		Password: []byte("secret"), PasswordFlag: true}
	if opt != nil {
		opt(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("connect %s: CONNACK %#x", id, ack.ReasonCode)
	}
	return c
}

// auditLines returns the audit log's entries.
func (r *rig) auditLines(t *testing.T) []access.Entry {
	t.Helper()
	data, err := os.ReadFile(r.audit)
	if err != nil {
		t.Fatal(err)
	}
	var out []access.Entry
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		var e access.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		out = append(out, e)
	}
	return out
}

// hasAudit reports whether the audit log has a line with user, action,
// target and result.
func (r *rig) hasAudit(t *testing.T, user, action, target, result string) bool {
	for _, e := range r.auditLines(t) {
		if e.User == user && e.Action == action && e.Target == target && e.Result == result {
			return true
		}
	}
	return false
}

// mustAudit fails unless the audit log has the line.
func (r *rig) mustAudit(t *testing.T, user, action, target, result string) {
	t.Helper()
	if !r.hasAudit(t, user, action, target, result) {
		data, _ := os.ReadFile(r.audit)
		t.Fatalf("no audit line user=%s action=%s target=%s result=%s in:\n%s", user, action, target, result, data)
	}
}

var _ = fmt.Sprint
