package harness

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// The takeover load (issue 15, "Overload and mass disconnects"): N
// persistent sessions (MQTT 5, Clean Start 0, Session Expiry 1 h, one QoS
// 1 subscription each) are online on node 3 of a fresh three-node
// cluster; node 3 is killed with SIGKILL; every client reconnects at once
// to node 1 or 2 (round-robin) with Clean Start 0, again after a short
// pause when refused. Measured: the time from the kill until every client
// has an accepting CONNACK with Session Present 1, each client's time from
// its connection's end to that CONNACK, the CONNECTs refused on the way,
// and whether a steady QoS 0 load from node 1 to node 2 kept its rate and
// latency meanwhile ("does not stall the survivors"). A QoS 1 message
// published afterwards on the sessions' topic checks they kept their
// subscription.
//
// Each session is made in two steps, because a session's record holds the
// subscriptions of its previous connection (docs/cluster.md, "Replicated
// sessions", Limits): it connects to node 1 or 2, subscribes and
// disconnects, then connects to node 3, which claims it (Session Present
// 1) with its subscription.

// Take-over load settings.
const (
	takeoverExpiry = 3600 // the sessions' Session Expiry Interval, s
	takeoverTopic  = "bench/takeover/all"
	// steadyTopic's first level differs from takeoverTopic's: with
	// topic_level_distribution 1 they route on different subjects, so a
	// claim's replay of PROPOLIS_MESSAGES does not read the steady load's
	// messages (QoS 0 ones are stored there too).
	steadyTopic     = "steady/takeover"
	steadyRate      = 1000            // the survivors' steady QoS 0 load, messages/s
	steadyBefore    = 2 * time.Second // the window before the kill the rate is compared with
	takeoverWorkers = 50              // sessions set up at once
	// The clients' pause before trying again after a refused CONNECT: a
	// fixed part and a random part, so that refused clients do not come
	// back in step.
	retryPause, retryJitter = 200 * time.Millisecond, 200 * time.Millisecond
	// deadWatch bounds the watch for node 1's status calling node 3
	// dead, from the kill.
	deadWatch = 30 * time.Second
	// checkTimeout bounds the wait for the check message.
	checkTimeout = 30 * time.Second
)

// takeoverBound is how long the clients have to set up, and again to come
// back after the kill: 60 s and 25 ms per session.
func takeoverBound(n int) time.Duration { return 60*time.Second + time.Duration(n)*25*time.Millisecond }

// takeoverLoads runs the takeover load's rounds, each on a fresh cluster
// (the load kills a node), and adds the figures to rep under the
// cluster broker.
func takeoverLoads(rep *Report, work, propolis, examples string, sz sizes, logf func(string, ...any)) error {
	n := sz.takeoverSessions
	name := fmt.Sprintf("session take-over (%d persistent sessions on node 3, SIGKILL, back on nodes 1 and 2)", n)
	logf("load: %s, %d round(s), each on a fresh cluster", name, sz.takeoverRounds)
	for r := 0; r < sz.takeoverRounds; r++ {
		b, err := startCluster(work, fmt.Sprintf("%s-takeover%d", clusterBroker, r+1), propolis, []string{"allow-all"}, examples, "none")
		if err != nil {
			return fmt.Errorf("takeover round %d: %w", r+1, err)
		}
		if !slices.ContainsFunc(rep.Brokers, func(bi BrokerInfo) bool { return bi.Name == clusterBroker }) {
			rep.Brokers = append(rep.Brokers, BrokerInfo{Name: clusterBroker, Setup: b.Setup})
		}
		res, err := takeover(b, n, logf)
		b.Stop()
		if err != nil {
			return fmt.Errorf("takeover round %d (logs: %s): %w", r+1, strings.Join(nodeLogs(b), ", "), err)
		}
		add := func(metric, unit string, higher bool, v float64) {
			rep.add(name, metric, unit, higher, clusterBroker, v)
			logf("  %-34s %-48s %12.2f %s", "takeover", metric, v, unit)
		}
		add("kill → every session back (Session Present 1)", "ms", false, ms(res.allBack))
		add("connection end → CONNACK, p50", "ms", false, ms(percentile(res.reconnect, 0.50)))
		add("connection end → CONNACK, p99", "ms", false, ms(percentile(res.reconnect, 0.99)))
		add("CONNECTs refused and retried", "count", false, float64(res.refusedTotal()))
		add("sessions not back or not present", "count", false, float64(res.missing+res.notPresent))
		add("sessions missing the check message", "count", false, float64(res.unchecked))
		if res.deadSeen > 0 { // not seen within deadWatch: no figure rather than a best one
			add("node 3 seen dead by node 1 after", "ms", false, ms(res.deadSeen))
		}
		add("highest stress level, nodes 1 and 2 (0-10)", "level", false, res.maxStress)
		add("survivors' CPU, kill → every session back", "s", false, res.survivorsCPU.Seconds())
		add("survivors' CPU per second, before the kill (steady load alone)", "s/s", false, res.cpuBefore)
		add("survivors' CPU per second, kill → every session back", "s/s", false, ratio(res.survivorsCPU.Seconds(), res.allBack.Seconds()))
		add("steady QoS 0 rate, take-over / before", "×", true, ratio(res.during.rate, res.before.rate))
		add("steady QoS 0 lowest 500 ms, take-over / before", "×", true, ratio(res.during.lowest, res.before.rate))
		add("steady QoS 0 p99 latency before", "ms", false, res.before.p99)
		add("steady QoS 0 p99 latency during the take-over", "ms", false, res.during.p99)
		add("steady QoS 0 messages lost", "count", false, float64(res.steadyLost))
		rep.ClusterNotes = append(rep.ClusterNotes, fmt.Sprintf("take-over round %d (%d sessions): %s", r+1, n, res.note()))
	}
	return nil
}

// ratio returns a / b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// nodeLogs returns the log files of a cluster broker's nodes.
func nodeLogs(b *Broker) []string {
	var fs []string
	for _, n := range b.Nodes {
		fs = append(fs, n.logFile)
	}
	return fs
}

// takeoverResult is what one round of the takeover load measured.
type takeoverResult struct {
	allBack    time.Duration   // kill → the last accepting CONNACK
	reconnect  []time.Duration // per client back: its connection's end → its accepting CONNACK
	attempts   int             // CONNECTs sent after the kill
	refused    map[string]int  // failed CONNECTs after the kill, by error
	notPresent int             // accepting CONNACKs with Session Present 0
	lostIDs    []string        // the first client ids back with Session Present 0
	missing    int             // clients not back within takeoverBound
	unchecked  int             // clients back with their session that missed the check message
	deadSeen   time.Duration   // kill → node 1's status shows node 3 not alive (0: not within deadWatch)
	maxStress  float64         // the highest stress node 1 reported for nodes 1 and 2 meanwhile
	// survivorsCPU is the CPU time of nodes 1 and 2 from the kill until
	// every client was back; cpuBefore theirs per second over the
	// steady load's window before the kill (the steady load alone).
	survivorsCPU   time.Duration
	cpuBefore      float64
	before, during window // the steady load before the kill and during the take-over
	steadyLost     int64
}

// refusedTotal counts the failed CONNECTs after the kill.
func (r *takeoverResult) refusedTotal() int {
	n := 0
	for _, c := range r.refused {
		n += c
	}
	return n
}

// note says in a line what the figures do not: why CONNECTs failed.
func (r *takeoverResult) note() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d CONNECTs after the kill, %d refused", r.attempts, r.refusedTotal())
	type reason struct {
		err string
		n   int
	}
	var rs []reason
	for e, n := range r.refused {
		rs = append(rs, reason{e, n})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n })
	for i, x := range rs {
		if i == 3 {
			fmt.Fprintf(&b, "; %d other errors", len(rs)-3)
			break
		}
		fmt.Fprintf(&b, "; %d× %q", x.n, x.err)
	}
	if r.notPresent > 0 {
		fmt.Fprintf(&b, "; Session Present 0 for %d (%s)", r.notPresent, strings.Join(r.lostIDs, ", "))
	}
	fmt.Fprintf(&b, "; steady load before %.0f/s (p99 %.1f ms), during %.0f/s (lowest 500 ms %.0f/s, %.1f s after the kill; p99 %.1f ms)",
		r.before.rate, r.before.p99, r.during.rate, r.during.lowest, r.during.lowestAt.Seconds(), r.during.p99)
	return b.String()
}

// takeover runs one round on cluster b (three fresh nodes), which it
// leaves with node 3 killed.
func takeover(b *Broker, n int, logf func(string, ...any)) (*takeoverResult, error) {
	if len(b.Nodes) != 3 {
		return nil, fmt.Errorf("takeover needs 3 nodes, %s has %d", b.Name, len(b.Nodes))
	}
	n1, n2, n3 := b.Nodes[0], b.Nodes[1], b.Nodes[2]
	survivors := []string{n1.Addr, n2.Addr}
	id := func(i int) string { return "takeover-" + strconv.Itoa(i) }

	// 1. Every session subscribed once on node 1 or 2, then online on
	// node 3 with Session Present 1.
	began := time.Now()
	bound := takeoverBound(n)
	err := parallel(n, func(i int) error {
		c, _, err := rawmqtt.DialV5Session(survivors[i%2], id(i), false, takeoverExpiry)
		if err != nil {
			return fmt.Errorf("set-up CONNECT of %s: %w", id(i), err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
			return err
		}
		return c.Subscribe(takeoverTopic, 1)
	})
	if err != nil {
		return nil, err
	}
	conns := make([]*rawmqtt.Conn, n)
	err = parallel(n, func(i int) error {
		c, present, err := rawmqtt.DialV5Session(n3.Addr, id(i), false, takeoverExpiry)
		if err != nil {
			return fmt.Errorf("CONNECT of %s to node 3: %w", id(i), err)
		}
		conns[i] = c
		if !present {
			return fmt.Errorf("%s on node 3: Session Present 0, its session (subscribed on node %d) not found", id(i), i%2+1)
		}
		return nil
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Drop()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	if time.Since(began) > bound {
		return nil, fmt.Errorf("setting up %d sessions took %v, over %v", n, time.Since(began).Round(time.Millisecond), bound)
	}
	logf("  %d sessions online on node 3 (set up in %v)", n, time.Since(began).Round(time.Millisecond))

	// 2. The steady load between the survivors, then the kill.
	st, err := startSteady(n1.Addr, n2.Addr, steadyRate)
	if err != nil {
		return nil, err
	}
	defer st.stop()
	time.Sleep(500 * time.Millisecond) // the steady load settles
	cpuB0, cpuErrB := survivorsCPU(n1, n2)
	time.Sleep(steadyBefore) // the steady load's "before" window
	res := &takeoverResult{refused: map[string]int{}}
	var killed atomic.Bool
	var mu sync.Mutex // res's slices and maps, conns
	var back, checked atomic.Int64
	deadline := time.Now().Add(bound)
	var wg sync.WaitGroup
	var lastBack atomic.Int64 // unix ns of the last accepting CONNACK
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[i]
			for {
				if _, _, err := c.ReadPacket(); err != nil {
					break
				}
			}
			ended := time.Now()
			_ = c.Drop() // its socket: 10,000 dead ones would hold as many descriptors
			if !killed.Load() {
				mu.Lock()
				res.refused["connection on node 3 ended before the kill"]++
				mu.Unlock()
				return
			}
			for {
				if time.Now().After(deadline) {
					mu.Lock()
					res.missing++
					mu.Unlock()
					return
				}
				c2, present, err := rawmqtt.DialV5Session(survivors[i%2], id(i), false, takeoverExpiry)
				mu.Lock()
				res.attempts++
				if err != nil {
					res.refused[err.Error()]++
					mu.Unlock()
					time.Sleep(retryPause + rand.N(retryJitter)) // the client's pause before it tries again
					continue
				}
				now := time.Now()
				conns[i] = c2
				res.reconnect = append(res.reconnect, now.Sub(ended))
				if !present {
					res.notPresent++
					if len(res.lostIDs) < 5 {
						res.lostIDs = append(res.lostIDs, id(i))
					}
				}
				mu.Unlock()
				lastBack.Store(now.UnixNano())
				back.Add(1)
				if !present {
					return
				}
				got := false
				for { // the check message; nothing else is published on its topic
					topic, pid, _, err := c2.ReadPublish()
					if err != nil {
						return
					}
					if pid != 0 {
						c2.Puback(pid)
						_ = c2.Flush()
					}
					if string(topic) == takeoverTopic && !got {
						got = true
						checked.Add(1)
					}
				}
			}
		}()
	}

	// Node 1's view of the cluster while the clients come back.
	watchDone := make(chan struct{})
	var watched sync.WaitGroup
	watched.Add(1)
	cpu0, cpuErr := survivorsCPU(n1, n2)
	killedAt := time.Now()
	if cpuErrB == nil && cpuErr == nil {
		res.cpuBefore = (cpu0 - cpuB0).Seconds() / steadyBefore.Seconds()
	}
	go func() {
		defer watched.Done()
		for {
			select {
			case <-watchDone:
				return
			case <-time.After(250 * time.Millisecond): // poll interval of node 1's status
			}
			s, err := clusterStatus(n1)
			if err != nil {
				continue
			}
			mu.Lock()
			for _, nd := range s.Nodes {
				if nd.Name == "n3" && !nd.Alive && res.deadSeen == 0 {
					res.deadSeen = time.Since(killedAt)
				}
				if nd.Name != "n3" && nd.Stress > res.maxStress {
					res.maxStress = nd.Stress
				}
			}
			mu.Unlock()
		}
	}()
	killed.Store(true)
	n3.Kill()
	logf("  node 3 killed (SIGKILL)")
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	for back.Load()+int64(res.gone(&mu)) < int64(n) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // poll interval of the clients' count
	}
	cpu1, cpuErr1 := survivorsCPU(n1, n2)
	if cpuErr == nil && cpuErr1 == nil {
		res.survivorsCPU = cpu1 - cpu0
	}
	if t := lastBack.Load(); t > 0 {
		res.allBack = time.Unix(0, t).Sub(killedAt)
	}
	logf("  %d of %d back %v after the kill", back.Load(), n, res.allBack.Round(time.Millisecond))
	// The sessions may be back before node 1's registry calls node 3
	// dead (8 s of silence): the watch goes on until it does, for
	// deadWatch after the kill at most.
	for end := killedAt.Add(deadWatch); time.Now().Before(end); {
		mu.Lock()
		seen := res.deadSeen > 0
		mu.Unlock()
		if seen {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll interval of the watch's finding
	}
	close(watchDone)
	watched.Wait()

	// 3. The steady load's windows, then the check message.
	during := res.allBack
	if during < time.Second {
		during = time.Second
	}
	time.Sleep(time.Until(killedAt.Add(during))) // the "during" window must have passed
	if err := st.sync(); err != nil {
		return nil, err
	}
	res.before = st.window(killedAt.Add(-steadyBefore), killedAt)
	res.during = st.window(killedAt, killedAt.Add(during))
	logf("  steady load, deliveries per 500 ms from the kill: %v", st.buckets(killedAt, killedAt.Add(during)))
	mu.Lock()
	present := int64(len(res.reconnect) - res.notPresent)
	mu.Unlock()
	if err := publishCheck(n1.Addr); err != nil {
		return nil, err
	}
	for end := time.Now().Add(checkTimeout); checked.Load() < present && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond) // poll interval of the check's count
	}
	res.unchecked = int(present - checked.Load())
	if res.steadyLost = st.stop(); res.steadyLost < 0 {
		return nil, fmt.Errorf("the steady load's process ended without its count of lost messages")
	}
	mu.Lock()
	for _, c := range conns {
		_ = c.Drop()
	}
	mu.Unlock()
	<-allDone
	if res.missing > 0 {
		logf("  %d sessions not back within %v", res.missing, bound)
	}
	return res, nil
}

// gone counts the clients that will not come back (their connection
// ended before the kill, or the time ran out).
func (r *takeoverResult) gone(mu *sync.Mutex) int {
	mu.Lock()
	defer mu.Unlock()
	return r.missing + r.refused["connection on node 3 ended before the kill"]
}

// survivorsCPU returns the CPU time nodes a and b have run so far.
func survivorsCPU(a, b *Broker) (time.Duration, error) {
	x, err := cpuTime(a.PID())
	if err != nil {
		return 0, err
	}
	y, err := cpuTime(b.PID())
	return x + y, err
}

// publishCheck publishes one QoS 1 message on takeoverTopic at addr and
// waits for its PUBACK.
func publishCheck(addr string) error {
	c, err := rawmqtt.Dial(addr, "takeover-check")
	if err != nil {
		return fmt.Errorf("check publisher: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(checkTimeout))
	c.Publish(takeoverTopic, 1, 1, []byte("check"))
	if err := c.Flush(); err != nil {
		return err
	}
	for {
		typ, _, err := c.ReadPacket()
		if err != nil {
			return fmt.Errorf("check publisher: PUBACK: %w", err)
		}
		if typ>>4 == 4 {
			return nil
		}
	}
}

// parallel runs f(0) ... f(n-1), takeoverWorkers at once, and returns the
// first error (the others still run).
func parallel(n int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(n, takeoverWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// window is the steady load over a span of time.
type window struct {
	rate     float64       // deliveries per second
	lowest   float64       // deliveries per second over the span's slowest 500 ms
	lowestAt time.Duration // where that 500 ms begins, from the span's start
	p99      float64       // publish-to-delivery latency, ms
}

// buckets returns the number of steady deliveries in each 500 ms of
// [from, to).
func (s *steady) buckets(from, to time.Time) []int {
	f, t := from.Sub(s.base), to.Sub(s.base)
	out := make([]int, max(1, int((t-f)/(500*time.Millisecond))))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.arrivals {
		if k := int((a.at - f) / (500 * time.Millisecond)); a.at >= f && k < len(out) {
			out[k]++
		}
	}
	return out
}

// window returns the steady load's figures for the messages that arrived
// in [from, to).
func (s *steady) window(from, to time.Time) window {
	f, t := from.Sub(s.base), to.Sub(s.base)
	buckets := s.buckets(from, to)
	s.mu.Lock()
	var lats []time.Duration
	for _, a := range s.arrivals {
		if a.at >= f && a.at < t {
			lats = append(lats, a.lat)
		}
	}
	s.mu.Unlock()
	span := (t - f).Seconds()
	w := window{rate: float64(len(lats)) / span, p99: ms(percentile(lats, 0.99))}
	low := slices.Index(buckets, slices.Min(buckets))
	w.lowest, w.lowestAt = float64(buckets[low])/0.5, time.Duration(low)*500*time.Millisecond
	if t-f < 500*time.Millisecond {
		w.lowest = w.rate
	}
	return w
}
