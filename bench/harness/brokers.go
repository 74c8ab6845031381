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
	"sync"
	"syscall"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
	"github.com/propolis-mqtt/propolis/internal/testport"
)

// Broker is one broker under test, running as a child process on
// loopback.
type Broker struct {
	// Name identifies the broker in the report.
	Name string
	// Setup says how it runs (security, durability), for the report.
	Setup string
	// Addr is its MQTT listener (a cluster's: node 1's).
	Addr string
	// Nodes are the processes of a broker made of several, a cluster,
	// node 1 first; such a broker has no process of its own. Nil for a
	// broker of one process.
	Nodes []*Broker

	ops     string // the operator HTTP address of a cluster node, else ""
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has ended
	logFile string
	started time.Time // when the process was started
}

// PID returns the broker's process id (a cluster's: node 1's).
func (b *Broker) PID() int {
	if len(b.Nodes) > 0 {
		return b.Nodes[0].PID()
	}
	return b.cmd.Process.Pid
}

// Addrs returns the MQTT listeners of the broker's nodes, node 1 first
// (one for a broker of one process).
func (b *Broker) Addrs() []string {
	if len(b.Nodes) == 0 {
		return []string{b.Addr}
	}
	var as []string
	for _, n := range b.Nodes {
		as = append(as, n.Addr)
	}
	return as
}

// CPU returns the CPU time the broker's processes (every node of a
// cluster still running) have run so far (Linux).
func (b *Broker) CPU() (time.Duration, error) {
	if len(b.Nodes) == 0 {
		return cpuTime(b.PID())
	}
	var total time.Duration
	for _, n := range b.Nodes {
		if n.exited() {
			continue
		}
		d, err := cpuTime(n.PID())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", n.Name, err)
		}
		total += d
	}
	return total, nil
}

// exited reports whether the broker's process has ended.
func (b *Broker) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// Kill ends the broker's process with SIGKILL (as a crash would) and
// waits for it.
func (b *Broker) Kill() {
	_ = b.cmd.Process.Kill()
	<-b.done
}

// Stop sends SIGTERM and waits up to 10 s, then kills; a cluster's
// nodes are stopped together.
func (b *Broker) Stop() {
	if len(b.Nodes) > 0 {
		var wg sync.WaitGroup
		for _, n := range b.Nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.Stop() }()
		}
		wg.Wait()
		return
	}
	if b.exited() {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.Kill()
	}
}

// start runs cmd with its output in logFile and waits until the broker
// answers an MQTT CONNECT with an accepting CONNACK. (A TCP connect is not
// enough: Propolis binds its port before loading its extensions, and the
// kernel queues connections until the broker accepts them.)
func start(name, setup string, cmd *exec.Cmd, addr, logFile string) (*Broker, error) {
	b, err := launch(name, setup, cmd, addr, logFile)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := rawmqtt.Dial(addr, "harness-ready-check")
		if err == nil {
			_ = c.Close()
			return b, nil
		}
		if b.exited() {
			return nil, fmt.Errorf("%s exited before listening; see %s", name, logFile)
		}
		if time.Now().After(deadline) {
			b.Stop()
			return nil, fmt.Errorf("%s: %s does not accept an MQTT client after 60 s (%v); see %s", name, addr, err, logFile)
		}
		time.Sleep(50 * time.Millisecond) // poll interval of the readiness check
	}
}

// launch runs cmd with its output in logFile and returns at once.
func launch(name, setup string, cmd *exec.Cmd, addr, logFile string) (*Broker, error) {
	log, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	started := time.Now()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b := &Broker{Name: name, Setup: setup, Addr: addr, cmd: cmd, done: make(chan struct{}), logFile: logFile, started: started}
	go func() { _ = cmd.Wait(); log.Close(); close(b.done) }()
	return b, nil
}

// freePort returns a loopback address with a port free right now, below
// the kernel's ephemeral range, so that none of the harness's many client
// connections takes it as its local port before the broker binds it
// (internal/testport).
func freePort() (string, error) {
	addrs, err := testport.Pick(1)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// startPropolis runs bin/propolis with the given extensions (folders of
// examplesDir) and durability, in work/name, and waits until it is ready.
func startPropolis(work, name, propolis string, exts []string, examplesDir, durability string) (*Broker, error) {
	p, err := preparePropolis(filepath.Join(work, name), name, propolis, exts, examplesDir, durability, "warn", nil)
	if err != nil {
		return nil, err
	}
	return start(name, p.setup, p.command(), p.addr, filepath.Join(work, name+".log"))
}

// propolisSetup is a prepared Propolis instance: its folder, with the
// extensions in place and the configuration written.
type propolisSetup struct {
	name, bin, dir, cfgFile, addr, setup string
	ops                                  string // operator HTTP address, when fixed (cluster nodes)
}

// command returns the command that runs the instance.
func (p *propolisSetup) command() *exec.Cmd {
	cmd := exec.Command(p.bin, "serve", "--config", p.cfgFile)
	cmd.Env = os.Environ()
	if prof := os.Getenv("PROPOLIS_BENCH_CPUPROFILE"); prof != "" && p.name == os.Getenv("PROPOLIS_BENCH_PROFILE_BROKER") {
		cmd.Env = append(cmd.Env, "PROPOLIS_CPUPROFILE="+prof)
	}
	return cmd
}

// preparePropolis lays out a Propolis instance in dir: the extensions
// folder with the given example extensions, and propolis.yaml with the
// harness's limits, listening on a free loopback port. With node, the
// instance is that node of a cluster, its operator HTTP endpoint on a
// free port of its own (to read the cluster's status).
func preparePropolis(dir, name, propolis string, exts []string, examplesDir, durability, logLevel string, node *clusterNode) (*propolisSetup, error) {
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
  receive_maximum: %d
  max_queued_messages: %d
log:
  level: %s
`, addr, filepath.Join(dir, "data"), extDir, durability, receiveMaximum, queueLimit, logLevel)
	ops := ""
	if node == nil {
		cfg += "http:\n  address: 127.0.0.1:0\n"
	} else {
		if ops, err = freePort(); err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf("http:\n  address: %s\n", ops) + node.yaml()
	}
	cfgFile := filepath.Join(dir, "propolis.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	setup := fmt.Sprintf("extensions: %s; durability: %s (Pebble store, no fsync); receive_maximum %d, max_queued_messages %d (1024 writes pending, fixed)",
		strings.Join(exts, " + "), durability, receiveMaximum, queueLimit)
	if node != nil {
		setup += "; " + node.setup()
	}
	return &propolisSetup{name: name, bin: propolis, dir: dir, cfgFile: cfgFile, addr: addr, setup: setup, ops: ops}, nil
}

// startMochi runs the plain mochi-mqtt baseline.
func startMochi(work, bin string) (*Broker, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	return start("mochi", fmt.Sprintf("mochi-mqtt, native allow-all hook, no persistence; receive maximum %d, maximum inflight (queue) %d, writes pending %d",
		receiveMaximum, queueLimit, qos0Pending), mochiCommand(bin, addr), addr, filepath.Join(work, "mochi.log"))
}

// mochiCommand runs mochi-baseline on addr with the harness's limits.
func mochiCommand(bin, addr string) *exec.Cmd {
	return exec.Command(bin, "-addr", addr, "-receive-maximum", strconv.Itoa(receiveMaximum),
		"-maximum-inflight", strconv.Itoa(queueLimit), "-writes-pending", strconv.Itoa(qos0Pending))
}

// startMosquitto runs Debian's mosquitto with allow_anonymous and no
// persistence, installing it with apt-get if missing.
func startMosquitto(work string) (*Broker, error) {
	cmd, addr, setup, err := mosquittoCommand(work)
	if err != nil {
		return nil, err
	}
	return start("mosquitto", setup, cmd, addr, filepath.Join(work, "mosquitto.log"))
}

// mosquittoCommand writes a mosquitto.conf with the harness's limits in
// dir, for a free loopback port, and returns the command, the address and
// the setup line for the report.
func mosquittoCommand(dir string) (*exec.Cmd, string, string, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
			bin = "/usr/sbin/mosquitto"
		} else if bin, err = installMosquitto(); err != nil {
			return nil, "", "", err
		}
	}
	addr, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	// mosquitto's queue is what waits beyond the in-flight window; the
	// others count in-flight messages in their queue limit.
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages %d\nmax_queued_messages %d\nset_tcp_nodelay true\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n",
		port, inFlightWindow, queueLimit-inFlightWindow)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, "", "", err
	}
	setup := fmt.Sprintf("mosquitto %s, allow_anonymous, persistence false, set_tcp_nodelay true; max_inflight_messages %d, max_queued_messages %d",
		mosquittoVersion(bin), inFlightWindow, queueLimit-inFlightWindow)
	return exec.Command(bin, "-c", conf), addr, setup, nil
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

// cpuTime returns the CPU time a process's threads have run so far
// (Linux: the first field of each thread's schedstat, in nanoseconds). A
// thread that exited is no longer counted; the brokers' threads live as
// long as they do.
func cpuTime(pid int) (time.Duration, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, fmt.Errorf("%s/%s/schedstat: empty", dir, t.Name())
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		total += time.Duration(ns)
	}
	return total, nil
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

// dropLines reads a stopped broker's log for lines about dropped messages
// (Mosquitto: "Outgoing messages are being dropped for client ..."; mochi
// and Propolis log a dropped QoS 1 message as a quota or slow-consumer
// warning).
func dropLines(b *Broker) DropLog {
	d := DropLog{Broker: b.Name}
	files := []string{b.logFile}
	if len(b.Nodes) > 0 {
		files = nil
		for _, n := range b.Nodes {
			files = append(files, n.logFile)
		}
	}
	var lines []string
	for _, f := range files {
		log, err := os.ReadFile(f)
		if err != nil {
			d.First = "log unreadable: " + err.Error()
			return d
		}
		lines = append(lines, strings.Split(string(log), "\n")...)
	}
	for _, l := range lines {
		low := strings.ToLower(l)
		if strings.Contains(low, "drop") || strings.Contains(low, "quota reached") || strings.Contains(low, "slow consumer") {
			if d.Lines == 0 {
				d.First = strings.TrimSpace(l)
				if len(d.First) > 200 {
					d.First = d.First[:200] + "…"
				}
			}
			d.Lines++
		}
	}
	return d
}
