// Package load is the repository's one MQTT publish load generator:
// publishers send PUBLISH packets on a topic and subscribers receive them,
// over the raw client of internal/rawmqtt, against a broker on loopback. The
// Go benchmarks of broker/ and host/ and the benchmark harness
// (bench/harness) all run it. A load is bounded in count and in time, and
// it counts what a broker dropped instead of waiting for it forever.
package load

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// Defaults of the Flow fields left zero.
const (
	defaultPayloadSize = 64
	defaultInFlight    = 64
	defaultTimeout     = 90 * time.Second
)

// window is how many deliveries per receiving connection may be on their way
// at once.
const window = 256

// defaultStallAfter is how long deliveries may stop, by default, before
// the load treats the missing ones as dropped.
const defaultStallAfter = 2 * time.Second

// ErrTimeout reports a load that did not finish within its Timeout.
var ErrTimeout = errors.New("load did not finish in time")

// Flow is one publish load. Publishers send Messages PUBLISH packets in all
// on one topic; every subscriber receives all of them (with Echo, each
// publisher receives its own).
//
// A window keeps at most 256 deliveries per receiving connection on their
// way, so that a broker is measured at the rate it sustains rather than the
// rate at which it drops. If deliveries stop progressing for 2 s (the broker
// dropped some), publishers go on without the window, and subscribers stop
// once the publishers are done and 2 s pass without a message; what never
// came is counted in Result.Lost.
type Flow struct {
	// Addr is the broker's MQTT listener, host:port.
	Addr string
	// PublisherAddrs, when not empty, replaces Addr for the publishers:
	// publisher i connects to PublisherAddrs[i % len]. With
	// SubscriberAddrs, it puts the two sides on different nodes of a
	// cluster, so that every message crosses it.
	PublisherAddrs []string
	// SubscriberAddrs, when not empty, replaces Addr for the subscribers:
	// subscriber i connects to SubscriberAddrs[i % len].
	SubscriberAddrs []string
	// Name prefixes the client ids: <Name>-pub-<i> and <Name>-sub-<i>.
	Name string
	// Topic is the topic published to; "bench/<Name>" when empty. With
	// Echo, "{clientid}" in it is replaced by each publisher's client id.
	Topic string
	// Publishers is the number of publishing connections, at least 1.
	Publishers int
	// Subscribers is the number of subscribing connections, at least 1
	// unless Echo is set.
	Subscribers int
	// Messages is the number of PUBLISH packets sent in all, shared among
	// the publishers (the first one sends the remainder).
	Messages int
	// QoS is the QoS of the PUBLISH packets, 0 or 1.
	QoS byte
	// SubscribeQoS is the QoS of the subscriptions, 0 or 1; subscribers
	// acknowledge QoS 1 deliveries. 0 measures the publish path alone.
	SubscribeQoS byte
	// PayloadSize is the payload of every PUBLISH in bytes; 64 when zero.
	PayloadSize int
	// InFlight is how many QoS 1 PUBLISH packets a publisher keeps
	// unacknowledged; 64 when zero.
	InFlight int
	// Echo subscribes every publisher to its own topic instead of opening
	// subscriber connections: a client confined to its own topic tree (the
	// topic-acl example). It needs QoS 0 and SubscribeQoS 0.
	Echo bool
	// Timeout bounds the whole load, connections included; 90 s when zero.
	Timeout time.Duration
	// StallAfter is how long deliveries may stop before the missing ones
	// count as lost; 2 s when zero. A test that expects no loss sets it
	// long, so that a slow machine is not mistaken for a dropping broker.
	StallAfter time.Duration
}

// Result is what a Flow measured.
type Result struct {
	// Delivered counts the PUBLISH packets the subscribers received.
	Delivered int64
	// Lost counts the deliveries that never came: a broker may drop
	// messages under load, and that is reported, not hidden.
	Lost int64
	// Elapsed runs from the first PUBLISH to the last delivery.
	Elapsed time.Duration
}

// Rate returns deliveries per second (0 for an empty result).
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Delivered) / r.Elapsed.Seconds()
}

// check validates f.
func (f *Flow) check() error {
	switch {
	case f.Publishers < 1:
		return fmt.Errorf("load %s: %d publishers, want at least 1", f.Name, f.Publishers)
	case f.Subscribers < 1 && !f.Echo:
		return fmt.Errorf("load %s: %d subscribers, want at least 1", f.Name, f.Subscribers)
	case f.QoS > 1 || f.SubscribeQoS > 1:
		return fmt.Errorf("load %s: QoS %d, subscribe QoS %d: only 0 and 1 are supported", f.Name, f.QoS, f.SubscribeQoS)
	case f.Echo && (f.QoS != 0 || f.SubscribeQoS != 0):
		return fmt.Errorf("load %s: echo needs QoS 0 publishes and subscriptions", f.Name)
	}
	return nil
}

// Run opens the connections, runs the load and closes them. It returns an
// error when a connection is refused or fails while messages are still
// expected, or ErrTimeout.
func (f Flow) Run() (Result, error) {
	if err := f.check(); err != nil {
		return Result{}, err
	}
	payload := make([]byte, orDefault(f.PayloadSize, defaultPayloadSize))
	inFlight := orDefault(f.InFlight, defaultInFlight)
	timeout := orDefault(f.Timeout, defaultTimeout)
	deadline := time.Now().Add(timeout)
	topic := f.Topic
	if topic == "" {
		topic = "bench/" + f.Name
	}

	// Connections, subscriptions first so that none misses a message.
	count := make([]int, f.Publishers) // messages per publisher
	for i := range count {
		count[i] = f.Messages / f.Publishers
	}
	count[0] += f.Messages % f.Publishers
	var conns []*rawmqtt.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	dial := func(role string, i int, addrs []string) (*rawmqtt.Conn, string, error) {
		id := f.Name + "-" + role + "-" + strconv.Itoa(i)
		addr := f.Addr
		if len(addrs) > 0 {
			addr = addrs[i%len(addrs)]
		}
		c, err := rawmqtt.Dial(addr, id)
		if err != nil {
			return nil, id, fmt.Errorf("load %s: %w", id, err)
		}
		conns = append(conns, c)
		return c, id, c.SetDeadline(deadline)
	}
	pubs, topics := make([]*rawmqtt.Conn, f.Publishers), make([]string, f.Publishers)
	var subs []*rawmqtt.Conn
	var expect []int // messages each subscriber receives
	for i := range pubs {
		c, id, err := dial("pub", i, f.PublisherAddrs)
		if err != nil {
			return Result{}, err
		}
		pubs[i], topics[i] = c, topic
		if f.Echo {
			topics[i] = strings.ReplaceAll(topic, "{clientid}", id)
			if err := c.Subscribe(topics[i], 0); err != nil {
				return Result{}, fmt.Errorf("load %s: %w", id, err)
			}
			subs, expect = append(subs, c), append(expect, count[i])
		}
	}
	for i := 0; i < f.Subscribers && !f.Echo; i++ {
		c, id, err := dial("sub", i, f.SubscriberAddrs)
		if err != nil {
			return Result{}, err
		}
		if err := c.Subscribe(topic, f.SubscribeQoS); err != nil {
			return Result{}, fmt.Errorf("load %s: %w", id, err)
		}
		subs, expect = append(subs, c), append(expect, f.Messages)
	}
	fanOut := int64(len(subs)) // deliveries per message
	if f.Echo {
		fanOut = 1
	}
	total := int64(f.Messages) * fanOut

	start := time.Now() // no delivery can come before the first PUBLISH
	var delivered, lastDelivery atomic.Int64
	lastDelivery.Store(start.UnixNano())
	stallAfter := f.StallAfter
	if stallAfter <= 0 {
		stallAfter = defaultStallAfter
	}
	stalled := func() bool { return time.Since(time.Unix(0, lastDelivery.Load())) > stallAfter }
	errs := make(chan error, len(subs)+len(pubs))
	var pubsDone atomic.Bool
	var subWG sync.WaitGroup
	for i, c := range subs {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			unsent := 0 // PUBACKs buffered, not yet written
			for n := 0; n < expect[i]; {
				_, id, _, err := c.ReadPublish()
				if err != nil {
					if !pubsDone.Load() {
						errs <- fmt.Errorf("load %s: subscriber %d after %d of %d: %w", f.Name, i, n, expect[i], err)
					}
					return // dropped once deliveries stalled: the rest was lost
				}
				if f.SubscribeQoS > 0 {
					c.Puback(id)
					unsent++
					// Send the acks before waiting for more (a broker
					// waits for them once its in-flight window is full),
					// and every 16 while reading a backlog: held back, they
					// would let the broker's count of unacknowledged
					// deliveries outgrow the load's window and fill the
					// broker's queue.
					if unsent == 16 || c.Buffered() == 0 {
						_ = c.Flush()
						unsent = 0
					}
				}
				n++
				delivered.Add(1)
				lastDelivery.Store(time.Now().UnixNano())
			}
			if f.SubscribeQoS > 0 { // the last acks (never with Echo, where the publisher writes)
				_ = c.Flush()
			}
		}()
	}
	// stop ends the subscribers still reading (by closing their sockets,
	// as only their goroutine may write to them) before Run returns.
	stop := func() {
		for _, c := range subs {
			_ = c.Drop()
		}
		subWG.Wait()
	}

	var sent atomic.Int64
	limit := int64(window * len(subs))
	var pubWG sync.WaitGroup
	for i, c := range pubs {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			batch := 16 // QoS 0 is written message by message, as a sensor would
			if f.QoS == 0 {
				batch = 1
			}
			err := publish(c, topics[i], f.QoS, count[i], inFlight, batch, payload, func() {
				if sent.Load()*fanOut-delivered.Load() > limit {
					_ = c.Flush() // what waits to be sent must not wait for delivery
					for sent.Load()*fanOut-delivered.Load() > limit && !stalled() && time.Now().Before(deadline) {
						time.Sleep(50 * time.Microsecond) // load pacing: wait for the window to open
					}
				}
				sent.Add(1)
			})
			if err != nil {
				errs <- fmt.Errorf("load %s: publisher %d: %w", f.Name, i, err)
			}
		}()
	}
	pubWG.Wait()
	pubsDone.Store(true)
	done := make(chan struct{})
	go func() { subWG.Wait(); close(done) }()
	idle := time.NewTicker(100 * time.Millisecond)
	defer idle.Stop()
	for {
		select {
		case <-done:
			select {
			case err := <-errs: // a subscriber failed before it was done
				return Result{}, err
			default:
			}
			elapsed := time.Since(start)
			if stalled() { // the last 2 s waited for messages that never came
				elapsed = time.Unix(0, lastDelivery.Load()).Sub(start)
			}
			return Result{Delivered: delivered.Load(), Lost: total - delivered.Load(), Elapsed: elapsed}, nil
		case err := <-errs:
			stop()
			return Result{}, err
		case <-idle.C:
			if stalled() {
				stop()
			} else if time.Now().After(deadline) {
				stop()
				return Result{}, fmt.Errorf("load %s: %w (%v)", f.Name, ErrTimeout, timeout)
			}
		}
	}
}

// publish sends count messages on c, QoS 1 with up to inFlight
// unacknowledged, calling pace before each and writing to the socket every
// batch messages (and whenever it waits for a PUBACK).
func publish(c *rawmqtt.Conn, topic string, qos byte, count, inFlight, batch int, payload []byte, pace func()) error {
	slots := make(chan struct{}, inFlight)
	acked := make(chan error, 1)
	if qos > 0 {
		go func() {
			for n := 0; n < count; {
				typ, _, err := c.ReadPacket()
				if err != nil {
					acked <- fmt.Errorf("PUBACK %d of %d: %w", n+1, count, err)
					return
				}
				if typ>>4 != 4 {
					continue
				}
				<-slots
				n++
			}
			acked <- nil
		}()
	}
	for i := 0; i < count; i++ {
		pace()
		if qos > 0 {
			select {
			case slots <- struct{}{}:
			default:
				if err := c.Flush(); err != nil {
					return err
				}
				select {
				case slots <- struct{}{}:
				case err := <-acked: // the PUBACKs ended early
					return err
				}
			}
		}
		c.Publish(topic, qos, uint16(i%65535+1), payload)
		if i%batch == batch-1 {
			if err := c.Flush(); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	if qos > 0 {
		return <-acked
	}
	return nil
}

// dialClient connects as MQTT 3.1.1, or as MQTT 5 with the given Receive
// Maximum when it is not zero.
func dialClient(addr, id string, receiveMaximum uint16) (*rawmqtt.Conn, error) {
	if receiveMaximum > 0 {
		return rawmqtt.DialV5(addr, id, receiveMaximum)
	}
	return rawmqtt.Dial(addr, id)
}

// orDefault returns v, or def when v is zero.
func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
