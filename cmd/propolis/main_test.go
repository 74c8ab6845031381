package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// bin is the propolis binary built once for these tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "propolis-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "propolis")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build propolis: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs the binary to completion and returns its exit code and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(poll.Timeout):
		_ = cmd.Process.Kill()
		t.Fatalf("propolis %v did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// fingerprint hashes every file under dir (names and contents), so a test
// can check that a refused start left the folder untouched.
func fingerprint(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintln(h, p, d.IsDir())
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"propolis ", "abi " + abi.Version, fmt.Sprint("data format ", store.FormatVersion)} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

// lastLine is the error line propolis prints before exiting.
func errorLine(t *testing.T, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "propolis: ") {
		t.Fatalf("last stderr line is not an error: %q\n%s", last, stderr)
	}
	return last
}

func TestStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, cfgFile, data string) []string // returns extra args
		want  *regexp.Regexp
	}{
		{
			name: "unknown config key",
			setup: func(t *testing.T, cfgFile, data string) []string {
				writeFile(t, cfgFile, "mqtt:\n  receive_maximum: 10\n  max_packet_sise: 5\n")
				return []string{"--config", cfgFile}
			},
			want: regexp.MustCompile(`^propolis: .*propolis\.yaml:3:3: mqtt\.max_packet_sise: unknown key`),
		},
		{
			name: "wrong type",
			setup: func(t *testing.T, cfgFile, data string) []string {
				writeFile(t, cfgFile, "mqtt:\n  receive_maximum: lots\n")
				return []string{"--config", cfgFile}
			},
			want: regexp.MustCompile(`^propolis: .*propolis\.yaml:2:\d+: mqtt\.receive_maximum: want an integer`),
		},
		{
			name: "port in use",
			setup: func(t *testing.T, cfgFile, data string) []string {
				return []string{"--listen", busy.Addr().String()}
			},
			want: regexp.MustCompile(`^propolis: bind listener "tcp" on 127\.0\.0\.1:\d+: .*address already in use`),
		},
		{
			name: "http port in use",
			setup: func(t *testing.T, cfgFile, data string) []string {
				return []string{"--http", busy.Addr().String()}
			},
			want: regexp.MustCompile(`^propolis: bind http\.address 127\.0\.0\.1:\d+: listen tcp 127\.0\.0\.1:\d+: bind: address already in use$`),
		},
		{
			name: "newer data format",
			setup: func(t *testing.T, cfgFile, data string) []string {
				writeFile(t, filepath.Join(data, "FORMAT"), "propolis-data 9\n")
				writeFile(t, filepath.Join(data, "000001.log"), "future data")
				return nil
			},
			want: regexp.MustCompile(fmt.Sprintf(`^propolis: .*format 9.* %d`, store.FormatVersion)),
		},
		{
			name: "corrupt data folder",
			setup: func(t *testing.T, cfgFile, data string) []string {
				writeFile(t, filepath.Join(data, "FORMAT"), fmt.Sprintf("propolis-data %d\n", store.FormatVersion))
				writeFile(t, filepath.Join(data, "CURRENT"), "MANIFEST-000099\n")
				writeFile(t, filepath.Join(data, "MANIFEST-000099"), "\x00\x01garbage")
				return nil
			},
			want: regexp.MustCompile(`^propolis: .*corrupt`),
		},
		{
			name: "not a data folder",
			setup: func(t *testing.T, cfgFile, data string) []string {
				writeFile(t, filepath.Join(data, "notes.txt"), "my files")
				return nil
			},
			want: regexp.MustCompile(`^propolis: .*not a propolis data folder`),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			data := filepath.Join(tmp, "data")
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"serve", "--http", "127.0.0.1:0", "--data", data, "--listen", "127.0.0.1:0"}, tc.setup(t, filepath.Join(tmp, "propolis.yaml"), data)...)
			before := fingerprint(t, data)
			code, _, stderr := runCLI(t, args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure\n%s", stderr)
			}
			line := errorLine(t, stderr)
			if !tc.want.MatchString(line) {
				t.Fatalf("error line %q does not match %s", line, tc.want)
			}
			if after := fingerprint(t, data); after != before {
				t.Fatal("the data folder was modified by a refused start")
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeDefaultDenyAndSignal starts the real binary with no extension:
// the log says every client will be refused, a client is refused, and
// SIGTERM stops it with exit code 0.
func TestServeDefaultDenyAndSignal(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext"))
	a, log := startServe(t, cmd)
	defer func() { _ = cmd.Process.Kill() }()
	if code := connackCode(t, a); code != 0x05 {
		t.Fatalf("CONNACK return code %#x, want 0x05", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(poll.Timeout):
		t.Fatal("broker did not stop on SIGTERM")
	}
	if !strings.Contains(log.String(), "NO SECURITY EXTENSION IS LOADED") {
		t.Fatalf("start-up log lacks the no-security banner:\n%s", log.String())
	}
}

// TestServeWithAllowAll: the binary loads the allow-all example from the
// extensions folder and accepts a client.
func TestServeWithAllowAll(t *testing.T) {
	tmp := t.TempDir()
	installAllowAll(t, filepath.Join(tmp, "ext"))

	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext"))
	a, log := startServe(t, cmd)
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	if code := connackCode(t, a); code != 0x00 {
		t.Fatalf("CONNACK return code %#x, want 0 (accepted)", code)
	}
	if !strings.Contains(log.String(), "DO NOT USE IT IN PRODUCTION") {
		t.Fatalf("allow-all's warning is not in the log:\n%s", log.String())
	}

	// The CLI sees the running broker's extensions, and disable/enable
	// take effect on it.
	dirs := []string{"--data", filepath.Join(tmp, "data"), "--extensions", filepath.Join(tmp, "ext")}
	code, out, errOut := runCLI(t, append([]string{"extensions", "list"}, dirs...)...)
	if code != 0 || !strings.Contains(out, "broker running") || !regexp.MustCompile(`allow-all\s+1\.0\.0\s+running\s+0\s+authenticate\s+4\s`).MatchString(out) { // 4: the pool's instances
		t.Fatalf("extensions list: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, append([]string{"extensions", "disable", "allow-all"}, dirs...)...); code != 0 {
		t.Fatalf("disable: exit %d\n%s%s", code, out, errOut)
	}
	poll.Until(t, "clients refused after `extensions disable allow-all`", func() bool { return connackCode(t, a) == 0x05 })
	// The broker takes the extension out of the chain before it writes its
	// status file.
	defer func() {
		if t.Failed() {
			t.Logf("last `extensions list`:\n%s", out)
		}
	}()
	poll.Until(t, "`extensions list` to show allow-all disabled", func() bool {
		_, out, _ = runCLI(t, append([]string{"extensions", "list"}, dirs...)...)
		return regexp.MustCompile(`allow-all\s+1\.0\.0\s+disabled`).MatchString(out)
	})
	if code, _, _ := runCLI(t, append([]string{"extensions", "enable", "allow-all"}, dirs...)...); code != 0 {
		t.Fatal("enable failed")
	}
	poll.Until(t, "clients accepted after `extensions enable allow-all`", func() bool { return connackCode(t, a) == 0x00 })
}

// allowAll is the allow-all example built once for these tests.
var allowAll struct {
	once sync.Once
	wasm []byte
	err  error
}

// installAllowAll puts the allow-all example extension in the extensions
// folder exts.
func installAllowAll(t *testing.T, exts string) {
	t.Helper()
	allowAll.once.Do(func() {
		out := filepath.Join(filepath.Dir(bin), "allow-all.wasm")
		build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./allow-all")
		build.Dir = filepath.Join("..", "..", "examples")
		build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := build.CombinedOutput(); err != nil {
			allowAll.err = fmt.Errorf("build allow-all: %v\n%s", err, msg)
			return
		}
		allowAll.wasm, allowAll.err = os.ReadFile(out)
	})
	if allowAll.err != nil {
		t.Fatal(allowAll.err)
	}
	manifest, err := os.ReadFile(filepath.Join("..", "..", "examples", "allow-all", "propolis-extension.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(exts, "allow-all", "propolis-extension.yaml"), string(manifest))
	writeFile(t, filepath.Join(exts, "allow-all", "allow-all.wasm"), string(allowAll.wasm))
}

// allowAllConfig writes propolis.yaml in dir: allow-all installed in
// dir/ext, data in dir/data, a tcp listener and the operator endpoint on
// free loopback ports, then extra (more top-level sections, "" for none).
// It returns the file.
func allowAllConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	installAllowAll(t, filepath.Join(dir, "ext"))
	file := filepath.Join(dir, "propolis.yaml")
	writeFile(t, file, fmt.Sprintf(`listeners:
  - name: tcp
    type: tcp
    address: 127.0.0.1:0
data_dir: %s
extensions_dir: %s
http:
  address: 127.0.0.1:0
`, filepath.Join(dir, "data"), filepath.Join(dir, "ext"))+extra)
	return file
}

// TestServeDamagedWAL: serve refuses a data folder whose write-ahead log
// was truncated after a clean shutdown, with one error line and the folder
// untouched; serve --repair copies the folder aside and starts.
func TestServeDamagedWAL(t *testing.T) {
	tmp := t.TempDir()
	data, exts := filepath.Join(tmp, "data"), filepath.Join(tmp, "ext")
	s, err := store.Open(store.Options{Dir: data})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 200; i++ {
		if err := s.PutInflight(&store.Message{ClientID: "sub", PacketID: uint16(i), QoS: 1, Topic: "a", Payload: make([]byte, 100)}, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(data, "*.log"))
	if len(logs) == 0 {
		t.Fatal("no write-ahead log")
	}
	wal := logs[len(logs)-1]
	info, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(wal, info.Size()/2); err != nil {
		t.Fatal(err)
	}

	before := fingerprint(t, data)
	code, _, stderr := runCLI(t, "serve", "--http", "127.0.0.1:0", "--data", data, "--extensions", exts, "--listen", "127.0.0.1:0")
	if code == 0 {
		t.Fatalf("exit 0 on a damaged write-ahead log\n%s", stderr)
	}
	want := regexp.MustCompile(`^propolis: open store \S+: write-ahead log ` + regexp.QuoteMeta(filepath.Base(wal)) +
		` damaged at offset \d+ \(the clean shutdown left records up to offset \d+\): data corrupt; serve --repair copies the data folder aside and starts without the damaged part$`)
	if line := errorLine(t, stderr); !want.MatchString(line) {
		t.Fatalf("error line %q does not match %s", line, want)
	}
	if strings.Count(stderr, "propolis: ") != 1 {
		t.Fatalf("more than one error line:\n%s", stderr)
	}
	if fingerprint(t, data) != before {
		t.Fatal("a refused start changed the data folder")
	}

	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--repair", "--data", data, "--extensions", exts, "--listen", "127.0.0.1:0")
	_, log := startServe(t, cmd)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve --repair: %v\n%s", err, log.String())
	}
	aside, _ := filepath.Glob(data + ".damaged-*")
	if len(aside) != 1 || !strings.Contains(log.String(), "copy="+aside[0]) {
		t.Fatalf("copies aside %v; log:\n%s", aside, log.String())
	}
}

func TestExtensionsCommandErrors(t *testing.T) {
	code, _, stderr := runCLI(t, "extensions", "disable", "nope", "--extensions", t.TempDir())
	if code == 0 || !strings.Contains(errorLine(t, stderr), `extension "nope": no propolis-extension.yaml in`) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "extensions", "enable")
	if code == 0 || !strings.Contains(stderr, "missing extension id") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// `extensions compile` fills extensions/.compiled, and a broker on a fresh
// data folder starts from it; a module that does not compile is named.
func TestExtensionsCompile(t *testing.T) {
	tmp := t.TempDir()
	exts := filepath.Join(tmp, "ext")
	wasm, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wasm", "ok", "wat_auth.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(exts, "wat-auth", "wat_auth.wasm"), string(wasm))
	writeFile(t, filepath.Join(exts, "wat-auth", "propolis-extension.yaml"), "id: wat-auth\nname: wat-auth\nversion: 1.0.0\nmodule: wat_auth.wasm\n")
	code, stdout, stderr := runCLI(t, "extensions", "compile", "--extensions", exts)
	if want := "compiled wat-auth into " + filepath.Join(exts, ".compiled") + "\n"; code != 0 || stdout != want {
		t.Fatalf("exit %d, stdout %q (want %q): %s", code, stdout, want, stderr)
	}

	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "data"), "--extensions", exts)
	_, log := startServe(t, cmd)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if !strings.Contains(log.String(), `msg="compilation cache filled from the shipped one"`) {
		t.Fatalf("the broker did not use the shipped cache:\n%s", log)
	}

	writeFile(t, filepath.Join(exts, "broken", "broken.wasm"), "not wasm")
	writeFile(t, filepath.Join(exts, "broken", "propolis-extension.yaml"), "id: broken\nname: broken\nversion: 1.0.0\nmodule: broken.wasm\n")
	code, _, stderr = runCLI(t, "extensions", "compile", "--extensions", exts)
	if code == 0 || !strings.Contains(errorLine(t, stderr), `extensions compile: extension "broken": compile broken.wasm: `) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// syncLog collects a child's log lines from a reader goroutine.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe starts cmd (a `propolis serve`), collects its log, and
// returns the address its tcp listener reports.
func startServe(t *testing.T, cmd *exec.Cmd) (string, *syncLog) {
	t.Helper()
	addr, _, log := startServeOps(t, cmd)
	return addr, log
}

// runServeOps is startServeOps for a broker that runs until the test ends:
// the operator's HTTP endpoint must be on (the test fails otherwise), and
// the broker gets SIGTERM at the end and must exit cleanly.
func runServeOps(t *testing.T, cmd *exec.Cmd) (addr, base string, log *syncLog) {
	t.Helper()
	addr, base, log = startServeOps(t, cmd)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(t, cmd); err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	})
	if base == "" {
		t.Fatalf("no operator HTTP endpoint in the log:\n%s", log.String())
	}
	return addr, base, log
}

// startServeOps is startServe that also returns the base URL of the
// operator's HTTP endpoint ("" when it is off). It fails the test if the
// endpoint is on the default port 9090: tests use port 0 (--http
// 127.0.0.1:0), so that they never meet a broker running on the machine
// or each other.
func startServeOps(t *testing.T, cmd *exec.Cmd) (string, string, *syncLog) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrRe := regexp.MustCompile(`msg=listening .*address=(\S+)`)
	opsRe := regexp.MustCompile(`msg="operator HTTP endpoint" address=(\S+)`)
	log := &syncLog{}
	addr := make(chan string, 1)
	var opsAddr atomic.Pointer[string]
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
			if m := opsRe.FindStringSubmatch(sc.Text()); m != nil {
				opsAddr.Store(&m[1])
			}
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		// The endpoint is logged before the listeners, by the same
		// reader goroutine.
		url := ""
		if o := opsAddr.Load(); o != nil {
			if strings.HasSuffix(*o, ":9090") {
				t.Fatalf("the test's broker serves HTTP on the default port (%s): pass --http 127.0.0.1:0", *o)
			}
			url = "http://" + *o
		}
		return a, url, log
	case <-time.After(poll.Timeout):
		t.Fatalf("broker did not report its address:\n%s", log.String())
		return "", "", nil
	}
}

// connect is a raw MQTT 3.1.1 CONNECT of client "c1" with a clean session.
var connect = []byte{0x10, 0x0e, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x02, 'c', '1'}

// connackCode sends a CONNECT to addr and returns the CONNACK return code.
func connackCode(t *testing.T, addr string) byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, poll.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(poll.Timeout))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if b[0] != 0x20 {
		t.Fatalf("not a CONNACK: % x", b)
	}
	return b[3]
}

// TestListShowsHTTPHosts: `extensions list` shows the services an
// extension is granted and the hosts its manifest lets it call.
func TestListShowsHTTPHosts(t *testing.T) {
	tmp := t.TempDir()
	exts := filepath.Join(tmp, "ext")
	installAllowAll(t, exts)
	writeFile(t, filepath.Join(exts, "allow-all", "propolis-extension.yaml"),
		"id: allow-all\nversion: 1.0.0\nmodule: allow-all.wasm\nservices: [http, auth_cache]\nhttp:\n  hosts: [idp.example.com, \"10.0.0.5:8443\"]\n")
	code, out, errOut := runCLI(t, "extensions", "list", "--data", filepath.Join(tmp, "data"), "--extensions", exts)
	if code != 0 || !strings.Contains(out, "http,auth_cache (http to idp.example.com,10.0.0.5:8443)") {
		t.Fatalf("extensions list: exit %d\n%s%s", code, out, errOut)
	}
}

// TestListShowsInterceptors: `extensions list` shows the interceptors an
// extension has, the topics its publish interceptors are narrowed to and
// the clients its outbound one is.
func TestListShowsInterceptors(t *testing.T) {
	tmp := t.TempDir()
	exts := filepath.Join(tmp, "ext")
	wasm := filepath.Join(tmp, "probe.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", wasm, "./interceptprobe")
	build.Dir = filepath.Join("..", "..", "testdata", "guests")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build interceptprobe: %v\n%s", err, msg)
	}
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(exts, "probe", "probe.wasm"), string(bin))
	writeFile(t, filepath.Join(exts, "probe", "propolis-extension.yaml"), "id: probe\nversion: 1.0.0\nmodule: probe.wasm\nabi: \"1.2\"\n"+
		"config:\n  inbound_filters: [\"legacy/#\", \"old/+\"]\n  outbound_filters: [\"alerts/#\"]\n  outbound_clients: [\"app-*\", \"ops\"]\n")
	code, out, errOut := runCLI(t, "extensions", "list", "--data", filepath.Join(tmp, "data"), "--extensions", exts)
	want := "intercept_connect,intercept_connack,intercept_publish_inbound,intercept_publish_outbound,intercept_subscribe," +
		"intercept_disconnect (intercept inbound only legacy/#,old/+) (intercept outbound only alerts/#) (intercept outbound only to clients app-*,ops)"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("extensions list: exit %d, want %q in\n%s%s", code, want, out, errOut)
	}
}
