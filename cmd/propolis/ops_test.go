package main

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/internal/scrape"
)

// request sends method url with auth (nil: no credentials) and returns
// the status and body.
func request(t *testing.T, method, url string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := (&http.Client{Timeout: poll.Timeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// get sends GET url with auth (nil: no credentials) and returns the
// status and body.
func get(t *testing.T, url string, auth func(*http.Request)) (int, string) {
	t.Helper()
	return request(t, "GET", url, auth)
}

// readyGauge scrapes propolis_ready from the endpoint at base.
func readyGauge(t *testing.T, base string) float64 {
	t.Helper()
	body, _, err := scrape.Get(base+"/metrics", scrape.AcceptText, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := scrape.Text(body)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := scrape.Value(fams, "propolis_ready")
	if !ok {
		t.Fatalf("no propolis_ready in\n%s", body)
	}
	return v
}

// startAllowAll runs `propolis serve` with the allow-all example in a
// fresh extensions folder, the HTTP endpoint on a free port; it returns
// the MQTT address, the endpoint's base URL, the folders' flags and the
// log. The broker gets SIGTERM when the test ends.
func startAllowAll(t *testing.T) (addr, base string, dirs []string, log *syncLog) {
	t.Helper()
	tmp := t.TempDir()
	installAllowAll(t, filepath.Join(tmp, "ext"))
	dirs = []string{"--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext")}
	cmd := exec.Command(bin, append([]string{"serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0"}, dirs...)...)
	addr, base, log = runServeOps(t, cmd)
	return addr, base, dirs, log
}

// TestServeReadyzFollowsSecurity: a broker with the allow-all extension is
// alive and ready; disabling allow-all (the DISABLED file, through the
// CLI) makes /readyz answer 503 saying why and propolis_ready 0, and
// enabling it again makes it ready again. /healthz stays 200 throughout.
func TestServeReadyzFollowsSecurity(t *testing.T) {
	addr, base, dirs, log := startAllowAll(t)
	if code, body := get(t, base+"/healthz", nil); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	// The endpoint serves from before the listeners open; by the time
	// they are logged the broker is ready.
	if code, body := get(t, base+"/readyz", nil); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz with allow-all = %d %q\n%s", code, body, log.String())
	}
	if v := readyGauge(t, base); v != 1 {
		t.Fatalf("propolis_ready = %v while ready", v)
	}

	if code, out, errOut := runCLI(t, append([]string{"extensions", "disable", "allow-all"}, dirs...)...); code != 0 {
		t.Fatalf("disable: exit %d\n%s%s", code, out, errOut)
	}
	var code int
	var body string
	poll.Until(t, "/readyz to answer 503 once allow-all is disabled", func() bool {
		code, body = get(t, base+"/readyz", nil)
		return code == 503
	})
	if want := "not ready:\nno security extension loaded: every CONNECT is refused\n"; body != want {
		t.Fatalf("/readyz body %q, want %q", body, want)
	}
	if v := readyGauge(t, base); v != 0 {
		t.Fatalf("propolis_ready = %v while not ready", v)
	}
	if c := connackCode(t, addr); c != 0x05 {
		t.Fatalf("CONNACK %#x while not ready, want 0x05", c)
	}
	if code, body := get(t, base+"/healthz", nil); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz while not ready = %d %q", code, body)
	}

	if code, out, errOut := runCLI(t, append([]string{"extensions", "enable", "allow-all"}, dirs...)...); code != 0 {
		t.Fatalf("enable: exit %d\n%s%s", code, out, errOut)
	}
	poll.Until(t, "/readyz to answer 200 once allow-all is enabled", func() bool {
		code, body = get(t, base+"/readyz", nil)
		return code == 200 && body == "ready\n"
	})
	if v := readyGauge(t, base); v != 1 {
		t.Fatalf("propolis_ready = %v ready again", v)
	}
	if !strings.Contains(log.String(), `msg="operator HTTP endpoint" address=127.0.0.1:`) {
		t.Fatalf("the start-up log does not give the endpoint's address:\n%s", log.String())
	}
}

// TestServeHTTPOff: http.address "" turns the endpoint off; the broker
// says so at start and serves MQTT all the same.
func TestServeHTTPOff(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "propolis.yaml")
	writeFile(t, file, "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\n"+
		"data_dir: "+filepath.Join(tmp, "data")+"\nextensions_dir: "+filepath.Join(tmp, "ext")+"\nhttp:\n  address: \"\"\n")
	cmd := exec.Command(bin, "serve", "--config", file)
	addr, base, log := startServeOps(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	if base != "" {
		t.Fatalf("endpoint %s served with http.address \"\"", base)
	}
	if !strings.Contains(log.String(), `msg="operator HTTP endpoint off (http.address is empty): no /metrics, /healthz or /readyz"`) {
		t.Fatalf("the log does not say the endpoint is off:\n%s", log.String())
	}
	if c := connackCode(t, addr); c != 0x05 {
		t.Fatalf("CONNACK %#x, want 0x05 (no extension)", c)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
	}
}
