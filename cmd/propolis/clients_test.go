package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The API tokens of the clients commands' broker: one with the role
// operator (every client action), one with viewer (no clients.disconnect,
// no sessions.invalidate).
const (
	cliOperatorToken = "ppt_cli-operator-test-token"
	cliViewerToken   = "ppt_cli-viewer-test-token"
)

// startClientsBroker runs `propolis serve` with allow-all, the endpoint on
// a free loopback port and the two tokens; it returns the broker and the
// token files (operator, viewer).
func startClientsBroker(t *testing.T) (b *ccBroker, operator, viewer string) {
	t.Helper()
	tmp := t.TempDir()
	file := allowAllConfig(t, tmp, fmt.Sprintf(`admin:
  tokens:
    - name: cli-op
      sha256: %s
      roles: [operator]
    - name: cli-view
      sha256: %s
      roles: [viewer]
`, access.TokenDigest(cliOperatorToken), access.TokenDigest(cliViewerToken)))
	operator, viewer = filepath.Join(tmp, "operator.token"), filepath.Join(tmp, "viewer.token")
	writeFile(t, operator, cliOperatorToken+"\n")
	writeFile(t, viewer, cliViewerToken+"\n")
	return serveForClients(t, exec.Command(bin, "serve", "--config", file)), operator, viewer
}

// serveForClients starts cmd (a serve with the endpoint on) and stops it
// with SIGTERM when the test ends.
func serveForClients(t *testing.T, cmd *exec.Cmd) *ccBroker {
	t.Helper()
	addr, base, log := startServeOps(t, cmd)
	b := &ccBroker{addr: addr, base: base, log: log, cmd: cmd}
	t.Cleanup(func() {
		if b.killed.Load() {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(t, cmd); err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	})
	if base == "" {
		t.Fatalf("no operator HTTP endpoint in the log:\n%s", log.String())
	}
	return b
}

// runClients runs `propolis clients ARGS...` with env added to the
// environment, $PROPOLIS_ADMIN_TOKEN unset unless env sets it.
func runClients(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	return runAdminCLI(t, env, append([]string{"clients"}, args...)...)
}

// runAdminCLI runs propolis with args, as runClients does.
func runAdminCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, tokenEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(poll.Timeout):
		_ = cmd.Process.Kill()
		t.Fatalf("propolis %v did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// mustClients runs `propolis clients ARGS...` and fails the test unless it
// exits 0; it returns stdout.
func mustClients(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runClients(t, nil, args...)
	if code != 0 {
		t.Fatalf("propolis clients %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// gone waits for the broker to end c's connection and returns why.
func gone(t *testing.T, c *ccClient, id string) error {
	t.Helper()
	select {
	case err := <-c.gone:
		return err
	case <-time.After(poll.Timeout):
		t.Fatalf("%s still connected after %v", id, poll.Timeout)
		return nil
	}
}

// nextMessage returns the next message delivered on ch.
func nextMessage(t *testing.T, ch <-chan *paho.Publish, what string) *paho.Publish {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(poll.Timeout):
		t.Fatalf("no message while waiting for %s", what)
		return nil
	}
}

// TestClientsCLI: the clients commands against a running broker, with
// real MQTT 5 clients: list shows a connected client (table and JSON,
// --prefix and --state); show gives its subscriptions; a viewer's token
// gets the API's 403 naming clients.disconnect and exit 1, the client
// staying connected; the operator's disconnect with --prevent-will
// really disconnects it (reason 0x98) and its will is not published (a
// marker published after arrives first), while a disconnect without it
// publishes the other client's will; invalidate removes the offline
// session (show: 404, a reconnect finds no session).
func TestClientsCLI(t *testing.T) {
	b, operator, viewer := startClientsBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	api := []string{"--url", b.base, "--token-file", operator}

	watched := make(chan *paho.Publish, 16)
	watcher, _ := b.connect5With(t, "cli-watcher", "", true, 0, nil, watched)
	if _, err := watcher.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cli/will/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	sub, _ := b.connect5With(t, "cli-sub-1", "dashboard", true, 3600,
		&paho.WillMessage{Topic: "cli/will/cli-sub-1", QoS: 1, Payload: []byte("cli-sub-1 lost")}, nil)
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cli/cmd/#", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	other, _ := b.connect5With(t, "cli-other-1", "", true, 0,
		&paho.WillMessage{Topic: "cli/will/cli-other-1", QoS: 1, Payload: []byte("cli-other-1 lost")}, nil)

	// list: the table, a prefix, a state, the JSON.
	out := mustClients(t, append([]string{"list"}, api...)...)
	if !hasRow(out, "cli-sub-1", "connected", "dashboard", "tcp", "127.0.0.1:", "5") || !strings.Contains(out, "3 of 3 sessions") {
		t.Fatalf("clients list:\n%s", out)
	}
	out = mustClients(t, append([]string{"list", "--prefix", "cli-sub", "--state", "connected"}, api...)...)
	if !hasRow(out, "cli-sub-1", "connected") || strings.Contains(out, "cli-other-1") || strings.Contains(out, "cli-watcher") {
		t.Fatalf("clients list --prefix cli-sub --state connected:\n%s", out)
	}
	if out = mustClients(t, append([]string{"list", "--state", "offline"}, api...)...); out != "no client matches\n" {
		t.Fatalf("clients list --state offline:\n%s", out)
	}
	var page struct {
		Clients []struct {
			ClientID  string `json:"client_id"`
			Connected bool   `json:"connected"`
		} `json:"clients"`
		Total int `json:"total"`
	}
	out = mustClients(t, append([]string{"list", "--json", "--prefix", "cli-sub"}, api...)...)
	if err := json.Unmarshal([]byte(out), &page); err != nil || page.Total != 1 || len(page.Clients) != 1 ||
		page.Clients[0].ClientID != "cli-sub-1" || !page.Clients[0].Connected {
		t.Fatalf("clients list --json: %v\n%s", err, out)
	}

	// show
	out = mustClients(t, append([]string{"show", "cli-sub-1"}, api...)...)
	for _, want := range []string{"state:", "connected since", "user:", "dashboard", "keepalive:", "30 s", "session expiry:", "3600 s", "cli/cmd/#", "subscriptions (1):"} {
		if !strings.Contains(out, want) {
			t.Errorf("clients show lacks %q:\n%s", want, out)
		}
	}

	// A viewer may not disconnect: the API's 403, exit 1, still connected.
	code, _, errOut := runClients(t, nil, "disconnect", "cli-sub-1", "--url", b.base, "--token-file", viewer)
	if code != 1 || !strings.Contains(errOut, "admin API at "+b.base+": 403 Forbidden: permission clients.disconnect required: cli-view (roles viewer) does not have it") {
		t.Fatalf("disconnect as a viewer: exit %d\n%s", code, errOut)
	}
	if out := mustClients(t, append([]string{"show", "cli-sub-1"}, api...)...); !strings.Contains(out, "connected since") {
		t.Fatalf("cli-sub-1 after the refused disconnect:\n%s", out)
	}
	// ... nor invalidate.
	if code, _, errOut := runClients(t, nil, "invalidate", "cli-sub-1", "--url", b.base, "--token-file", viewer); code != 1 ||
		!strings.Contains(errOut, "403 Forbidden: permission sessions.invalidate required") {
		t.Fatalf("invalidate as a viewer: exit %d\n%s", code, errOut)
	}

	// disconnect --prevent-will: the client sees the DISCONNECT, the will
	// stays unpublished.
	out = mustClients(t, append([]string{"disconnect", "cli-sub-1", "--prevent-will", "--reason", "maintenance"}, api...)...)
	if out != "client \"cli-sub-1\" disconnected; its will is not published\n" {
		t.Fatalf("disconnect output %q", out)
	}
	if err := gone(t, sub, "cli-sub-1"); err == nil || err.Error() != "DISCONNECT reason 0x98" {
		t.Fatalf("cli-sub-1 ended with %v, want DISCONNECT reason 0x98", err)
	}
	poll.Until(t, "cli-sub-1 offline (the disconnect, and any will, done)", func() bool {
		code, out, _ := runClients(t, nil, append([]string{"show", "cli-sub-1"}, api...)...)
		return code == 0 && strings.Contains(out, "offline since")
	})
	if _, err := watcher.Publish(ctx, &paho.Publish{Topic: "cli/will/marker", QoS: 1, Payload: []byte("marker")}); err != nil {
		t.Fatalf("publish the marker: %v", err)
	}
	if p := nextMessage(t, watched, "the marker"); p.Topic != "cli/will/marker" {
		t.Fatalf("the watcher got %s %q before the marker: the will of a --prevent-will disconnect was published", p.Topic, p.Payload)
	}

	// Without --prevent-will the will is published: the check above can fail.
	if out := mustClients(t, append([]string{"disconnect", "cli-other-1"}, api...)...); !strings.Contains(out, "its will, if any, is published") {
		t.Fatalf("disconnect output %q", out)
	}
	if err := gone(t, other, "cli-other-1"); err == nil || err.Error() != "DISCONNECT reason 0x98" {
		t.Fatalf("cli-other-1 ended with %v", err)
	}
	if p := nextMessage(t, watched, "the will of cli-other-1"); p.Topic != "cli/will/cli-other-1" || string(p.Payload) != "cli-other-1 lost" {
		t.Fatalf("the watcher got %s %q, want the will of cli-other-1", p.Topic, p.Payload)
	}

	// invalidate the offline session: show answers 404 and a reconnect
	// finds no session.
	if out := mustClients(t, append([]string{"invalidate", "cli-sub-1"}, api...)...); out != "session of client \"cli-sub-1\" invalidated\n" {
		t.Fatalf("invalidate output %q", out)
	}
	code, _, errOut = runClients(t, nil, append([]string{"show", "cli-sub-1"}, api...)...)
	if code != 1 || errorLine(t, errOut) != "propolis: admin API at "+b.base+": 404 Not Found: client \"cli-sub-1\": no session" {
		t.Fatalf("show after invalidate: exit %d\n%s", code, errOut)
	}
	if _, present := b.connect5(t, "cli-sub-1", "dashboard", false, 3600); present {
		t.Fatal("cli-sub-1 reconnected to a session present after invalidate")
	}
	code, _, errOut = runClients(t, nil, append([]string{"disconnect", "nobody"}, api...)...)
	if code != 1 || !strings.HasSuffix(errorLine(t, errOut), `404 Not Found: client "nobody": no session`) {
		t.Fatalf("disconnect of an unknown client: exit %d\n%s", code, errOut)
	}

	// Credentials: none (401, naming the ways to give one), from the
	// environment, an unknown one.
	code, _, errOut = runClients(t, nil, "list", "--url", b.base)
	if code != 1 || !strings.Contains(errOut, "401 Unauthorized") || !strings.Contains(errOut, "--token-file FILE or $"+tokenEnv) {
		t.Fatalf("list without a token: exit %d\n%s", code, errOut)
	}
	if code, out, errOut := runClients(t, []string{tokenEnv + "=" + cliOperatorToken}, "list", "--url", b.base); code != 0 || !hasRow(out, "cli-sub-1", "connected") {
		t.Fatalf("list with $%s: exit %d\n%s%s", tokenEnv, code, out, errOut)
	}
	code, _, errOut = runClients(t, []string{tokenEnv + "=ppt_wrong"}, "list", "--url", b.base)
	if code != 1 || !strings.Contains(errOut, "401 Unauthorized: unknown API token") || !strings.Contains(errOut, "(sent the token of $"+tokenEnv+")") {
		t.Fatalf("list with a wrong token: exit %d\n%s", code, errOut)
	}
}

// hasRow reports whether a line of out has the fields want, in order,
// each a prefix of its column.
func hasRow(out string, want ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		i := 0
		for _, f := range fields {
			if i < len(want) && strings.HasPrefix(f, want[i]) {
				i++
			}
		}
		if len(fields) > 0 && fields[0] == want[0] && i == len(want) {
			return true
		}
	}
	return false
}

// TestClientsCLILocalMode: against a broker in local mode (no users, no
// tokens) the commands need no token; disconnect (a POST, which local
// mode guards with its CSRF token) disconnects the client.
func TestClientsCLILocalMode(t *testing.T) {
	tmp := t.TempDir()
	installAllowAll(t, filepath.Join(tmp, "ext"))
	b := serveForClients(t, exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0",
		"--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext")))
	c, _ := b.connect5(t, "local-1", "", true, 0)
	if out := mustClients(t, "list", "--url", b.base); !hasRow(out, "local-1", "connected") {
		t.Fatalf("clients list:\n%s", out)
	}
	mustClients(t, "disconnect", "local-1", "--url", b.base)
	if err := gone(t, c, "local-1"); err == nil || err.Error() != "DISCONNECT reason 0x98" {
		t.Fatalf("local-1 ended with %v", err)
	}
}

// TestClientsCLIErrors: an unreachable URL, a bad URL, a missing token
// file and a bad --state each get a clear error; the default URL comes
// from the configuration's http.address.
func TestClientsCLIErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().String()
	l.Close()
	code, _, errOut := runClients(t, nil, "list", "--url", "http://"+free)
	if want := "propolis: admin API at http://" + free + ": connection refused: is 'propolis serve' running with http.address " + free; code != 1 ||
		!strings.HasPrefix(errorLine(t, errOut), want) {
		t.Fatalf("unreachable URL: exit %d\n%s\nwant a line starting %q", code, errOut, want)
	}
	file := filepath.Join(t.TempDir(), "propolis.yaml")
	writeFile(t, file, "http:\n  address: 127.0.0.1:"+strings.Split(free, ":")[1]+"\n")
	if code, _, errOut := runClients(t, nil, "show", "x", "--config", file); code != 1 || !strings.Contains(errOut, "http://"+free+": connection refused") {
		t.Fatalf("URL from --config: exit %d\n%s", code, errOut)
	}
	writeFile(t, file, "http:\n  address: \"\"\n")
	if code, _, errOut := runClients(t, nil, "list", "--config", file); code != 1 || !strings.Contains(errOut, "http.address is empty") {
		t.Fatalf("endpoint off in --config: exit %d\n%s", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"list", "--url", "127.0.0.1:9"}, 1, `--url "127.0.0.1:9": want http://HOST:PORT or https://HOST:PORT`},
		{[]string{"list", "--url", "http://" + free, "--token-file", "/no/such/token"}, 1, "--token-file: open /no/such/token: no such file or directory"},
		{[]string{"list", "--url", "http://" + free, "--state", "gone"}, 2, `clients list: --state "gone": want connected or offline`},
		{[]string{"show", "--url", "http://" + free}, 2, "clients show: missing client id"},
	} {
		code, _, errOut := runClients(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("clients %v: exit %d\n%s\nwant exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// TestEndpointURL: the default URL of the clients commands follows
// http.address: a wildcard host is reached on loopback, TLS means https.
func TestEndpointURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:9999": "http://127.0.0.1:9999",
		"0.0.0.0:9999":   "http://127.0.0.1:9999",
		":9999":          "http://127.0.0.1:9999",
		"[::1]:9999":     "http://[::1]:9999",
		"[::]:9999":      "http://127.0.0.1:9999",
	} {
		cfg := config.Default()
		cfg.HTTP.Address = addr
		if got, err := endpointURL(cfg); err != nil || got != want {
			t.Errorf("endpointURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	cfg := config.Default()
	cfg.HTTP.TLS = &config.TLS{}
	if got, _ := endpointURL(cfg); got != "https://"+config.DefaultHTTPAddress {
		t.Errorf("with http.tls: %q", got)
	}
}
