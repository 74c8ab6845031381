package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// logLine is one line of a child broker's log, text or JSON, as key/value.
type logLine map[string]string

// parseLogLine reads a slog text or JSON line; ok is false for anything
// else (the no-security banner).
func parseLogLine(s string) (logLine, bool) {
	l := logLine{}
	if strings.HasPrefix(s, "{") {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) != nil {
			return nil, false
		}
		for k, v := range m {
			if f, ok := v.(float64); ok {
				l[k] = strconv.FormatFloat(f, 'f', -1, 64)
				continue
			}
			l[k], _ = v.(string)
		}
		l["format"] = "json"
		return l, true
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Split(splitLogfmt)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			return nil, false
		}
		if strings.HasPrefix(v, `"`) {
			var u string
			if json.Unmarshal([]byte(v), &u) == nil {
				v = u
			}
		}
		l[k] = v
	}
	l["format"] = "text"
	return l, len(l) > 1
}

// splitLogfmt splits a slog text line into key=value tokens, keeping
// quoted values whole.
func splitLogfmt(data []byte, atEOF bool) (int, []byte, error) {
	start := 0
	for start < len(data) && data[start] == ' ' {
		start++
	}
	quoted := false
	for i := start; i < len(data); i++ {
		switch {
		case data[i] == '\\' && quoted:
			i++
		case data[i] == '"':
			quoted = !quoted
		case data[i] == ' ' && !quoted:
			return i + 1, data[start:i], nil
		}
	}
	if atEOF && start < len(data) {
		return len(data), data[start:], nil
	}
	return start, nil, nil
}

// waitLog polls the child's log for a line after line skip (count of lines
// already seen) matching every key=value of want, and returns its index.
func waitLog(t *testing.T, log *syncLog, skip int, what string, want logLine) int {
	t.Helper()
	found := -1
	defer func() {
		if found < 0 {
			t.Logf("log:\n%s", log.String())
		}
	}()
	poll.Until(t, what, func() bool {
		lines := strings.Split(log.String(), "\n")
		for i := skip; i < len(lines); i++ {
			l, ok := parseLogLine(lines[i])
			if !ok {
				continue
			}
			match := true
			for k, v := range want {
				if l[k] != v {
					match = false
					break
				}
			}
			if match {
				found = i
				return true
			}
		}
		return false
	})
	return found
}

// silentConnClosed dials addr, sends nothing, and reports whether the
// broker closes the connection before poll.Timeout.
func silentConnClosed(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(poll.Timeout))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestServeReload: SIGHUP reloads the --config file. A change of live keys
// is applied and logged key by key (the log switches to debug and JSON, a
// new CONNECT deadline closes a silent connection); a file changing a key
// that cannot change at runtime is refused whole, naming the file, the key
// and both values; a broken file is refused with its file and line. After each, the
// broker still accepts clients, and SIGTERM still stops it cleanly.
func TestServeReload(t *testing.T) {
	tmp := t.TempDir()
	exts, data, file := filepath.Join(tmp, "ext"), filepath.Join(tmp, "data"), filepath.Join(tmp, "propolis.yaml")
	installAllowAll(t, exts)
	base := "listeners:\n  - name: tcp\n    type: tcp\n    address: 127.0.0.1:0\n" +
		"data_dir: " + data + "\nextensions_dir: " + exts + "\n"
	writeFile(t, file, base+"mqtt:\n  connect_timeout: 5m\nlog:\n  level: info\n")

	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--config", file)
	addr, log := startServe(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	if code := connackCode(t, addr); code != 0 {
		t.Fatalf("CONNACK %#x before any reload, want 0", code)
	}
	hup := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// Live keys: applied, one line each with the old and new value.
	writeFile(t, file, base+"mqtt:\n  connect_timeout: 200ms\nlog:\n  level: debug\n  format: json\n")
	hup()
	n := waitLog(t, log, 0, "the log.level change", logLine{"msg": "configuration changed", "key": "log.level", "old": "info", "new": "debug", "format": "json"})
	waitLog(t, log, 0, "the log.format change", logLine{"msg": "configuration changed", "key": "log.format", "old": "text", "new": "json"})
	waitLog(t, log, 0, "the connect_timeout change", logLine{"msg": "configuration changed", "key": "mqtt.connect_timeout", "old": "5m", "new": "200ms", "applies_to": "connections accepted from now on"})
	waitLog(t, log, n, "the reload summary", logLine{"msg": "configuration reloaded", "file": file, "changes": "3"})
	// The new CONNECT deadline closes a silent connection (the old one would
	// keep it past poll.Timeout), and the debug level shows why.
	if !silentConnClosed(t, addr) {
		t.Fatal("a silent connection was not closed after connect_timeout was reloaded to 200ms")
	}
	n = waitLog(t, log, n, "a debug line after the reload", logLine{"level": "DEBUG", "msg": "connection closed"})
	if code := connackCode(t, addr); code != 0 {
		t.Fatalf("CONNACK %#x after a reload, want 0", code)
	}

	// A key that cannot change: the whole file is refused, the live change
	// in it included (the log stays at debug).
	writeFile(t, file, strings.Replace(base, "data_dir: "+data, "data_dir: "+data+"2", 1)+
		"mqtt:\n  connect_timeout: 200ms\nlog:\n  level: warn\n  format: json\n")
	hup()
	n = waitLog(t, log, n, "the refusal of data_dir", logLine{"level": "ERROR", "msg": "reload refused: key cannot change while running",
		"file": file, "key": "data_dir", "old": data, "new": data + "2"})
	waitLog(t, log, n, "the refusal summary", logLine{"msg": "reload refused, configuration unchanged; restart the broker to apply it", "keys": "1"})
	if !silentConnClosed(t, addr) {
		t.Fatal("a silent connection was not closed after a refused reload")
	}
	n = waitLog(t, log, n, "a debug line after the refused reload", logLine{"level": "DEBUG", "msg": "connection closed"})
	if code := connackCode(t, addr); code != 0 {
		t.Fatalf("CONNACK %#x after a refused reload, want 0", code)
	}

	// A broken file: refused with file, line and column.
	writeFile(t, file, base+"mqtt:\n  connect_timeout: 200ms\n max_clients: 5\n")
	hup()
	n = waitLog(t, log, n, "the syntax error", logLine{"level": "ERROR", "msg": "reload failed, configuration unchanged",
		"file": file, "line": "9", "column": "2", "error": "yaml: did not find expected key"})
	// An invalid value: refused with its key.
	writeFile(t, file, base+"mqtt:\n  connect_timeout: 200ms\n  max_clients: -1\n")
	hup()
	n = waitLog(t, log, n, "the invalid value", logLine{"level": "ERROR", "msg": "reload failed, configuration unchanged",
		"file": file, "line": "9", "key": "mqtt.max_clients"})
	if code := connackCode(t, addr); code != 0 {
		t.Fatalf("CONNACK %#x after a broken file, want 0", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
	}
	waitLog(t, log, n, "the stop line", logLine{"msg": "propolis stopped"})
}

// TestServeReloadWithoutConfig: SIGHUP to a broker on the embedded default
// configuration says there is nothing to reload, and the broker goes on.
func TestServeReloadWithoutConfig(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext"))
	addr, log := startServe(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	for range 2 {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitLog(t, log, 0, "the nothing-to-reload line", logLine{"level": "INFO",
		"msg": "SIGHUP: nothing to reload, the broker runs on the embedded default configuration (start it with --config FILE)"})
	if code := connackCode(t, addr); code != 0x05 { // no extension: refused, but answered
		t.Fatalf("CONNACK %#x after SIGHUP, want 0x05", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
	}
}

// waitExit waits for cmd to exit, up to poll.Timeout.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(poll.Timeout):
		t.Fatal("broker did not stop on SIGTERM")
		return nil
	}
}
