package harness

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/load"
	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The takeover load's steady QoS 0 load runs in a process of its own (this
// binary again, SteadyChildFlag): inside the load generator, whose 10,000
// reconnecting clients fill its Go run queue at the kill, its subscriber
// was scheduled late and the load measured stalls of the generator as
// stalls of the survivors. The child streams each arrival to the parent
// over a pipe (one line each: "A <unix ns> <latency ns>").

// SteadyChildFlag is the command-line flag that makes propolis-bench run
// a steady load for its parent (RunSteadyChild): "PUB,SUB,RATE".
const SteadyChildFlag = "steady-child"

// steady is the parent's side: a QoS 0 publish load at a fixed rate from
// one node to a subscriber on another, run by a child process, with the
// time each message arrived and how late.
type steady struct {
	base  time.Time
	cmd   *exec.Cmd
	in    io.WriteCloser
	acks  chan int64 // the number of each flush request answered
	ended chan int64 // the messages lost, once the child ends its load
	flush int64      // the number of the last flush request

	stopped sync.Once
	lost    int64

	mu       sync.Mutex
	arrivals []arrival
}

// arrival is one delivery of the steady load: when (since base) and its
// latency.
type arrival struct{ at, lat time.Duration }

// startSteady starts a child subscribing on subAddr and publishing on
// pubAddr at rate messages per second until stop.
func startSteady(pubAddr, subAddr string, rate int) (*steady, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("steady load: %w", err)
	}
	cmd := exec.Command(self, "--"+SteadyChildFlag, fmt.Sprintf("%s,%s,%d", pubAddr, subAddr, rate))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("steady load: %w", err)
	}
	s := &steady{base: time.Now(), cmd: cmd, in: in, acks: make(chan int64, 16), ended: make(chan int64, 1)}
	ready := make(chan error, 1)
	go s.read(out, ready)
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("steady load: %w", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("steady load: its process did not start within 30 s")
	}
	return s, nil
}

// read takes the child's lines: "R" (ready) or "X <error>" first, then
// arrivals, flush answers ("F <n>") and the end ("E <lost>").
func (s *steady) read(out io.Reader, ready chan<- error) {
	sc := bufio.NewScanner(out)
	first := true
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "R":
			ready <- nil
			first = false
		case "X":
			if first {
				ready <- fmt.Errorf("%s", rest)
				return
			}
		case "A":
			a, l, _ := strings.Cut(rest, " ")
			at, err1 := strconv.ParseInt(a, 10, 64)
			lat, err2 := strconv.ParseInt(l, 10, 64)
			if err1 == nil && err2 == nil {
				s.mu.Lock()
				s.arrivals = append(s.arrivals, arrival{at: time.Unix(0, at).Sub(s.base), lat: time.Duration(lat)})
				s.mu.Unlock()
			}
		case "F":
			if n, err := strconv.ParseInt(rest, 10, 64); err == nil {
				select {
				case s.acks <- n:
				default: // nobody waits for so many: sync skips older answers anyway
				}
			}
		case "E":
			lost, _ := strconv.ParseInt(rest, 10, 64)
			s.ended <- lost
			return
		}
	}
	if first {
		ready <- fmt.Errorf("its process ended before it was ready")
	}
	s.ended <- -1
}

// sync waits until every arrival the child has seen is in s.arrivals:
// the child answers flush request n after every arrival line it wrote
// before it.
func (s *steady) sync() error {
	s.flush++
	n := s.flush
	if _, err := fmt.Fprintf(s.in, "F %d\n", n); err != nil {
		return fmt.Errorf("steady load: flush request: %w", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-s.acks:
			if got == n {
				return nil
			} // an older request's late answer
		case <-timeout:
			return fmt.Errorf("steady load: its process did not answer flush request %d within 10 s", n)
		}
	}
}

// stop ends the steady load once and returns how many of its messages
// never arrived (the child waits a second for the last ones); -1 when the
// child ended without saying.
func (s *steady) stop() int64 {
	s.stopped.Do(func() {
		_, _ = io.WriteString(s.in, "Q\n")
		select {
		case s.lost = <-s.ended:
		case <-time.After(30 * time.Second):
			s.lost = -1
			_ = s.cmd.Process.Kill()
		}
		_ = s.in.Close()
		_ = s.cmd.Wait()
	})
	return s.lost
}

// RunSteadyChild is the child's side of the steady load (SteadyChildFlag,
// arg "PUB,SUB,RATE"): it runs the load, writes "R" once it runs, then
// an "A" line per arrival; on "F <n>" from in it flushes and answers
// "F <n>"; on
// "Q" (or in's end) it stops, waits a second for the last arrivals and
// writes "E <lost>".
func RunSteadyChild(arg string, in io.Reader, out io.Writer) error {
	parts := strings.Split(arg, ",")
	if len(parts) != 3 {
		return fmt.Errorf("--%s %q: want PUB,SUB,RATE", SteadyChildFlag, arg)
	}
	rate, err := strconv.Atoi(parts[2])
	if err != nil || rate <= 0 {
		return fmt.Errorf("--%s %q: rate %q is not a positive number", SteadyChildFlag, arg, parts[2])
	}
	w := bufio.NewWriter(out)
	var wmu sync.Mutex
	line := func(format string, a ...any) {
		wmu.Lock()
		fmt.Fprintf(w, format+"\n", a...)
		wmu.Unlock()
	}
	flush := func() {
		wmu.Lock()
		_ = w.Flush()
		wmu.Unlock()
	}
	l, err := startSteadyLoad(parts[0], parts[1], rate, func(at time.Time, lat time.Duration) {
		line("A %d %d", at.UnixNano(), int64(lat))
	})
	if err != nil {
		line("X %v", err)
		flush()
		return err
	}
	line("R")
	flush()
	tick := time.NewTicker(100 * time.Millisecond) // arrivals reach the parent in batches
	defer tick.Stop()
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
	for {
		select {
		case <-tick.C:
			flush()
		case c, ok := <-cmds:
			if n, ok := strings.CutPrefix(c, "F "); ok {
				line("F %s", n)
				flush()
				continue
			}
			if !ok || c == "Q" {
				lost := l.stop()
				line("E %d", lost)
				flush()
				return nil
			}
		}
	}
}

// steadyLoad is the child's load: a subscriber and a publisher.
type steadyLoad struct {
	pub, sub *rawmqtt.Conn
	base     time.Time
	sent     atomic.Int64
	got      atomic.Int64
	quit     chan struct{}
	pubDone  chan struct{}
	subDone  chan struct{}
}

// startSteadyLoad subscribes on subAddr and publishes on pubAddr at rate
// messages per second until stop, calling arrived for each delivery.
func startSteadyLoad(pubAddr, subAddr string, rate int, arrived func(at time.Time, lat time.Duration)) (*steadyLoad, error) {
	sub, err := rawmqtt.Dial(subAddr, "takeover-steady-sub")
	if err != nil {
		return nil, fmt.Errorf("steady subscriber: %w", err)
	}
	if err := sub.Subscribe(steadyTopic, 0); err != nil {
		sub.Close()
		return nil, fmt.Errorf("steady subscriber: %w", err)
	}
	pub, err := rawmqtt.Dial(pubAddr, "takeover-steady-pub")
	if err != nil {
		sub.Close()
		return nil, fmt.Errorf("steady publisher: %w", err)
	}
	s := &steadyLoad{pub: pub, sub: sub, base: time.Now(), quit: make(chan struct{}), pubDone: make(chan struct{}), subDone: make(chan struct{})}
	go func() {
		defer close(s.subDone)
		for {
			_, _, payload, err := sub.ReadPublish()
			if err != nil {
				return
			}
			now := time.Now()
			if lat, ok := load.Latency(payload, s.base, now); ok {
				s.got.Add(1)
				arrived(now, lat)
			}
		}
	}()
	go func() {
		defer close(s.pubDone)
		interval := time.Second / time.Duration(rate)
		payload := make([]byte, 16)
		for i := 0; ; i++ {
			if wait := time.Duration(i)*interval - time.Since(s.base); wait > 0 {
				select {
				case <-s.quit:
					return
				case <-time.After(wait): // load pacing: publish at the fixed rate
				}
			}
			select {
			case <-s.quit:
				return
			default:
			}
			load.Stamp(payload, s.base)
			pub.Publish(steadyTopic, 0, 0, payload)
			if err := pub.Flush(); err != nil {
				return
			}
			s.sent.Add(1)
		}
	}()
	return s, nil
}

// stop ends the load and returns how many of its messages never arrived
// (waiting a second for the last ones).
func (s *steadyLoad) stop() int64 {
	close(s.quit)
	<-s.pubDone
	for end := time.Now().Add(time.Second); time.Now().Before(end) && s.got.Load() < s.sent.Load(); {
		time.Sleep(20 * time.Millisecond) // poll interval of the last arrivals
	}
	_ = s.pub.Close()
	_ = s.sub.Drop()
	<-s.subDone
	return s.sent.Load() - s.got.Load()
}
