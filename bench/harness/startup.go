package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// Start-up and reload: how long clients wait after a broker starts, and
// what throughput they get while it warms up or reloads an extension.
//
// A sustained load starts together with the broker process: startClients
// publishers dial (again and again while the port is not bound yet), and
// once accepted publish QoS 1 with 64 in flight each until the load ends,
// three windows after the start. PUBACKs are counted in 100 ms buckets
// from the start, so the first window's rate (the "first 5 s")
// compares with the third's (steady state) on the same broker instance.

// startClients is the number of publishers of the sustained load.
const startClients = 10

// startLimit bounds how long the sustained load waits for a CONNACK.
const startLimit = time.Minute

// bucket is the resolution of the sustained load's PUBACK counts.
const bucket = 100 * time.Millisecond

// timeline is what a sustained load saw, from t0 (the broker's start).
type timeline struct {
	firstConnack time.Duration // until the first CONNACK
	acks         []int64       // PUBACKs per bucket
	dropped      int64         // connections the broker closed during the load
}

// rate returns PUBACKs per second in [from, to).
func (t *timeline) rate(from, to time.Duration) float64 {
	var n int64
	for i := int(from / bucket); i < int(to/bucket) && i < len(t.acks); i++ {
		n += t.acks[i]
	}
	return float64(n) / (to - from).Seconds()
}

// lowest returns the lowest rate over any 500 ms in [from, to).
func (t *timeline) lowest(from, to time.Duration) float64 {
	low := -1.0
	for s := from; s+500*time.Millisecond <= to; s += bucket {
		if r := t.rate(s, s+500*time.Millisecond); low < 0 || r < low {
			low = r
		}
	}
	return low
}

// sustained runs the sustained load against addr from t0 for total. at,
// if not nil, runs once at offset atOffset from t0, while the load runs.
func sustained(addr string, t0 time.Time, total time.Duration, at func(), atOffset time.Duration) (*timeline, error) {
	tl := &timeline{acks: make([]int64, int(total/bucket)+1)}
	counts := make([]atomic.Int64, len(tl.acks))
	end := t0.Add(total)
	var firstMu sync.Mutex
	first := time.Duration(-1)
	var dropped atomic.Int64
	errs := make(chan error, startClients)
	var wg sync.WaitGroup
	for i := 0; i < startClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "start-" + strconv.Itoa(i)
			for time.Now().Before(end) {
				// Connect, however long the broker takes (up to a minute):
				// a start slower than the load still gets its first CONNACK
				// timed.
				var c *rawmqtt.Conn
				for {
					var err error
					if c, err = rawmqtt.Dial(addr, id); err == nil {
						break
					}
					if time.Since(t0) > startLimit {
						errs <- fmt.Errorf("%s: no CONNACK in %v: %w", id, startLimit, err)
						return
					}
					time.Sleep(10 * time.Millisecond) // port not bound yet: the process is starting
				}
				since := time.Since(t0)
				firstMu.Lock()
				if first < 0 || since < first {
					first = since
				}
				firstMu.Unlock()
				if err := publishUntil(c, t0, end, counts); err != nil {
					dropped.Add(1) // the broker closed the connection: count it, connect again
				}
				_ = c.Drop()
			}
		}()
	}
	if at != nil {
		time.Sleep(time.Until(t0.Add(atOffset))) // the event's time within the load
		at()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	for i := range counts {
		tl.acks[i] = counts[i].Load()
	}
	tl.firstConnack = first
	tl.dropped = dropped.Load()
	return tl, nil
}

// publishUntil publishes QoS 1 on c, 64 in flight, until end, counting each
// PUBACK in its bucket (from t0). It returns an error if the connection
// fails before end.
func publishUntil(c *rawmqtt.Conn, t0, end time.Time, counts []atomic.Int64) error {
	_ = c.SetDeadline(end.Add(5 * time.Second))
	slots := make(chan struct{}, 64)
	dead := make(chan error, 1)
	go func() { // PUBACKs, counted in their bucket
		for {
			typ, _, err := c.ReadPacket()
			if err != nil {
				dead <- err
				return
			}
			if typ>>4 == 4 {
				if b := int(time.Since(t0) / bucket); b < len(counts) {
					counts[b].Add(1)
				}
				<-slots
			}
		}
	}()
	payload := make([]byte, 100)
	for n := 0; time.Now().Before(end); n++ {
		select {
		case slots <- struct{}{}:
		default:
			if err := c.Flush(); err != nil {
				return err
			}
			select {
			case slots <- struct{}{}:
			case err := <-dead:
				return err
			case <-time.After(time.Until(end)):
				return nil
			}
		}
		c.Publish("bench/start", 1, uint16(n%65535+1), payload)
		if n%16 == 15 {
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// startupCase is one start-up measurement.
type startupCase struct {
	name  string
	run   func() (*Broker, error)         // starts the broker without waiting
	event func(b *Broker) error           // the reload case's change, one window in
	after func(b *Broker) (string, error) // after the load, before the broker stops: a note for the report
	full  bool                            // not in a quick run
	// reload: part of the "reload" load (the reload case and the fresh
	// start that prepares the data folder it restarts)
	reload bool
}

// startupLoads measures start-up and reload and adds them to rep. With
// reloadOnly (the "reload" load alone) it runs the fresh start whose data
// folder the reload case restarts, then the reload case.
func startupLoads(rep *Report, work, propolis, mochi, examples string, sz sizes, reloadOnly bool, logf func(string, ...any)) error {
	w := sz.startWindow
	exts := []string{"allow-all", "publish-guard"}
	fresh := func(name string, shipped bool) func() (*Broker, error) {
		return func() (*Broker, error) {
			p, err := preparePropolis(filepath.Join(work, "start", name), name, propolis, exts, examples, "none", "info", nil)
			if err != nil {
				return nil, err
			}
			if shipped { // what `make build` does for the bundled extensions
				cmd := exec.Command(propolis, "extensions", "compile", "--extensions", filepath.Join(p.dir, "extensions"))
				if out, err := cmd.CombinedOutput(); err != nil {
					return nil, fmt.Errorf("propolis extensions compile: %w\n%s", err, out)
				}
			}
			return launch(name, p.setup, p.command(), p.addr, filepath.Join(work, "start", name+".log"))
		}
	}
	// restart starts the instance of an earlier case again, on its data
	// folder and its compilation cache.
	restart := func(name, of string) func() (*Broker, error) {
		return func() (*Broker, error) {
			dir := filepath.Join(work, "start", of)
			p := &propolisSetup{name: name, bin: propolis, dir: dir, cfgFile: filepath.Join(dir, "propolis.yaml")}
			addr, err := configuredAddr(p.cfgFile)
			if err != nil {
				return nil, err
			}
			p.addr = addr
			return launch(name, "restart of "+of, p.command(), p.addr, filepath.Join(work, "start", name+".log"))
		}
	}
	guard := filepath.Join(work, "start", "cold", "extensions", "publish-guard", "publish-guard.wasm")
	cases := []startupCase{
		{name: "propolis-wasm-publish, fresh data folder, compiled at start", run: fresh("cold", false), full: true, reload: true},
		{name: "propolis-wasm-publish, warm data folder (restart)", run: restart("warm", "cold"), full: true},
		{name: "propolis-wasm-publish, hot reload of publish-guard (new module) one window in", run: restart("reload", "cold"), full: true, reload: true,
			event: func(*Broker) error { return replaceModule(guard) },
			after: func(b *Broker) (string, error) {
				took, err := reloadSeen(b)
				return "reload took " + took + " (the broker's log)", err
			}},
		{name: "propolis-wasm-publish, fresh data folder, shipped compilation cache", run: fresh("shipped", true)},
		{name: "mochi, fresh start", full: true, run: func() (*Broker, error) {
			addr, err := freePort()
			if err != nil {
				return nil, err
			}
			return launch("mochi-start", "", mochiCommand(mochi, addr), addr, filepath.Join(work, "start", "mochi.log"))
		}},
		{name: "mosquitto, fresh start", full: true, run: func() (*Broker, error) {
			cmd, addr, _, err := mosquittoCommand(filepath.Join(work, "start"))
			if err != nil {
				return nil, err
			}
			return launch("mosquitto-start", "", cmd, addr, filepath.Join(work, "start", "mosquitto.log"))
		}},
	}
	if err := os.MkdirAll(filepath.Join(work, "start"), 0o755); err != nil {
		return err
	}
	logf("load: start-up and reload (sustained QoS 1 publish, %d clients, from the process start for %v)", startClients, 3*w)
	for _, c := range cases {
		if reloadOnly && !c.reload {
			continue
		}
		if c.full && !sz.warmup { // a quick run checks the harness's paths, and compiles once
			continue
		}
		b, err := c.run()
		if err != nil {
			return fmt.Errorf("start-up %s: %w", c.name, err)
		}
		t0 := b.started
		var eventErr error
		var at func()
		if c.event != nil {
			at = func() { eventErr = c.event(b) }
		}
		tl, err := sustained(b.Addr, t0, 3*w, at, w)
		if err == nil && eventErr != nil {
			err = eventErr
		}
		note := ""
		if err == nil && c.after != nil {
			note, err = c.after(b)
		}
		b.Stop()
		if err != nil {
			return fmt.Errorf("start-up %s: %w (log %s)", c.name, err, b.logFile)
		}
		if tl.dropped > 0 {
			if note != "" {
				note += "; "
			}
			note += fmt.Sprintf("the broker closed %d connections during the load (see its log)", tl.dropped)
		}
		s := StartupResult{Case: c.name, Note: note, FirstConnackMS: ms(tl.firstConnack), First: tl.rate(0, w), Steady: tl.rate(2*w, 3*w)}
		if c.event != nil {
			s.First = tl.rate(w, 2*w) // the window of the change
			s.Lowest = tl.lowest(w, 2*w)
		}
		if s.Steady > 0 {
			s.Ratio = s.First / s.Steady
		}
		for from := time.Duration(0); from+time.Second <= 3*w; from += time.Second {
			s.PerSecond = append(s.PerSecond, tl.rate(from, from+time.Second))
		}
		rep.Startup = append(rep.Startup, s)
		logf("  %-75s first CONNACK %7.1f ms, window %6.0f/s, steady %6.0f/s (%.2f×)", c.name, s.FirstConnackMS, s.First, s.Steady, s.Ratio)
	}
	return nil
}

// configuredAddr reads the listener address back from a harness-written
// propolis.yaml.
func configuredAddr(cfgFile string) (string, error) {
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`address: (\S+)`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s: no listener address", cfgFile)
	}
	return string(m[1]), nil
}

// replaceModule replaces a module by a different one that behaves the
// same: the original with a custom section appended (which a Wasm runtime
// ignores), so that its hash changes and the broker compiles it again.
// The new file is written aside and renamed over the old one, as an
// operator deploying an extension would.
func replaceModule(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	name := "propolis-bench-reload-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	// Custom section: id 0, size, name length, name, one byte of content
	// (sizes below 128; wazero v1.12 refuses an empty custom section at
	// the end of a module: "failed to read custom section name[...]: EOF").
	b = append(b, 0, byte(1+len(name)+1), byte(len(name)))
	b = append(b, name...)
	b = append(b, 1)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// reloadSeen waits (up to startLimit) for the broker's log to report the
// reload, and returns how long the reload took by the broker's account.
func reloadSeen(b *Broker) (string, error) {
	re := regexp.MustCompile(`msg="extension reloaded" extension=publish-guard .* took=(\S+)`)
	deadline := time.Now().Add(startLimit)
	for {
		log, err := os.ReadFile(b.logFile)
		if err != nil {
			return "", err
		}
		if m := re.FindSubmatch(log); m != nil {
			return string(m[1]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the broker did not reload the replaced extension within %v", startLimit)
		}
		time.Sleep(100 * time.Millisecond) // poll interval of the log check
	}
}
