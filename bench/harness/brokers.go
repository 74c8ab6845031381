package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// Broker is one broker under test, running as a child process on
// loopback.
type Broker struct {
	// Name identifies the broker in the report.
	Name string
	// Setup says how it runs (security, durability), for the report.
	Setup string
	// Addr is its MQTT listener.
	Addr string

	cmd  *exec.Cmd
	done chan error
}

// PID returns the broker's process id.
func (b *Broker) PID() int { return b.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to 10 s, then kills.
func (b *Broker) Stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// start runs cmd with its output in logFile and waits until the broker
// answers an MQTT CONNECT with an accepting CONNACK. (A TCP connect is not
// enough: Propolis binds its port before loading its extensions, and the
// kernel queues connections until the broker accepts them.)
func start(name, setup string, cmd *exec.Cmd, addr, logFile string) (*Broker, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b := &Broker{Name: name, Setup: setup, Addr: addr, cmd: cmd, done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait(); log.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := rawmqtt.Dial(addr, "harness-ready-check")
		if err == nil {
			_ = c.Close()
			return b, nil
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("%s exited before listening; see %s", name, logFile)
		default:
		}
		if time.Now().After(deadline) {
			b.Stop()
			return nil, fmt.Errorf("%s: %s does not accept an MQTT client after 60 s (%v); see %s", name, addr, err, logFile)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of the readiness check
	}
}

// freePort returns a loopback address with a port free right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startPropolis runs bin/propolis with the given extensions (id -> wasm
// and manifest folder) and durability.
func startPropolis(work, name, propolis string, exts []string, examplesDir, durability string) (*Broker, error) {
	dir := filepath.Join(work, name)
	extDir := filepath.Join(dir, "extensions")
	for _, id := range exts {
		dst := filepath.Join(extDir, id)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return nil, err
		}
		for _, f := range []string{id + ".wasm", "propolis-extension.yaml"} {
			if err := copyFile(filepath.Join(examplesDir, id, f), filepath.Join(dst, f)); err != nil {
				return nil, err
			}
		}
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`listeners:
  - name: tcp
    type: tcp
    address: %s
data_dir: %s
extensions_dir: %s
durability:
  mode: %s
mqtt:
  max_queued_messages: 10000
log:
  level: warn
`, addr, filepath.Join(dir, "data"), extDir, durability)
	cfgFile := filepath.Join(dir, "propolis.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(propolis, "serve", "--config", cfgFile)
	cmd.Env = os.Environ()
	if p := os.Getenv("PROPOLIS_BENCH_CPUPROFILE"); p != "" && name == "propolis-wasm-publish" {
		cmd.Env = append(cmd.Env, "PROPOLIS_CPUPROFILE="+p)
	}
	setup := fmt.Sprintf("extensions: %s; durability: %s (Pebble store, no fsync)", strings.Join(exts, " + "), durability)
	return start(name, setup, cmd, addr, filepath.Join(work, name+".log"))
}

// startMochi runs the plain mochi-mqtt baseline.
func startMochi(work, bin string) (*Broker, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-addr", addr)
	return start("mochi", "mochi-mqtt, native allow-all hook, no persistence", cmd, addr, filepath.Join(work, "mochi.log"))
}

// startMosquitto runs Debian's mosquitto with allow_anonymous and no
// persistence, installing it with apt-get if missing.
func startMosquitto(work string) (*Broker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
			bin = "/usr/sbin/mosquitto"
		} else if bin, err = installMosquitto(); err != nil {
			return nil, err
		}
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(work, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\nset_tcp_nodelay true\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	return start("mosquitto", "mosquitto "+mosquittoVersion(bin)+", allow_anonymous, persistence false, set_tcp_nodelay true", cmd, addr, filepath.Join(work, "mosquitto.log"))
}

// installMosquitto installs Debian's package (the harness runs as root on
// the CI machines).
func installMosquitto() (string, error) {
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "mosquitto"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("install mosquitto (apt-get %s): %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err != nil {
		return "", errors.New("mosquitto installed but /usr/sbin/mosquitto not found")
	}
	// The package starts a system service on port 1883 where it can; the
	// harness uses its own instance on a free port.
	_ = exec.Command("service", "mosquitto", "stop").Run()
	return "/usr/sbin/mosquitto", nil
}

// mosquittoVersion asks mosquitto for its version.
func mosquittoVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "mosquitto version") {
			return strings.TrimPrefix(l, "mosquitto version ")
		}
	}
	return "(unknown version)"
}

// rss returns a process's resident set size in bytes (Linux).
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
