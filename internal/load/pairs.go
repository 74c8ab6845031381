package load

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// Pairs is a publish-to-delivery latency load: Pairs publisher/subscriber
// pairs, each on its own topic, all at once. Each publisher sends Messages
// QoS 1 PUBLISH packets, the next one as soon as its subscriber (subscribed
// at QoS 1, acknowledging each delivery) has received the previous one: one
// message in flight per pair, so the figure is the broker's latency with
// Pairs streams competing for it, not the time a message waits behind its
// predecessors.
type Pairs struct {
	// Addr is the broker's MQTT listener, host:port.
	Addr string
	// Name prefixes client ids (<Name>-pub-<i>, <Name>-sub-<i>) and topics
	// (bench/<Name>/<i>).
	Name string
	// Pairs is the number of publisher/subscriber pairs, at least 1.
	Pairs int
	// Messages is the number of messages each pair sends, at least 1.
	Messages int
	// PayloadSize is the payload of every PUBLISH in bytes, at least 8 (the
	// send time travels in it); 64 when zero.
	PayloadSize int
	// Timeout bounds the whole load, connections included; 90 s when zero.
	Timeout time.Duration
}

// Latencies is what a Pairs load measured: one publish-to-delivery time
// per message, sorted.
type Latencies []time.Duration

// Mean returns the average latency (0 when empty).
func (l Latencies) Mean() time.Duration {
	if len(l) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	return sum / time.Duration(len(l))
}

// Percentile returns the p-th percentile, p from 0 to 1 (0 when empty).
func (l Latencies) Percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[int(float64(len(l)-1)*p)]
}

// Run opens the connections, runs the load and closes them. It returns an
// error when a connection is refused or fails, or a message does not arrive
// in time.
func (p Pairs) Run() (Latencies, error) {
	size := orDefault(p.PayloadSize, defaultPayloadSize)
	switch {
	case p.Pairs < 1 || p.Messages < 1:
		return nil, fmt.Errorf("load %s: %d pairs of %d messages, want at least 1 of 1", p.Name, p.Pairs, p.Messages)
	case size < StampSize:
		return nil, fmt.Errorf("load %s: payload of %d bytes, want at least %d", p.Name, size, StampSize)
	}
	timeout := orDefault(p.Timeout, defaultTimeout)
	deadline := time.Now().Add(timeout)
	var conns []*rawmqtt.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	dial := func(role string, i int) (*rawmqtt.Conn, error) {
		id := p.Name + "-" + role + "-" + strconv.Itoa(i)
		c, err := rawmqtt.Dial(p.Addr, id)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", id, err)
		}
		conns = append(conns, c)
		return c, c.SetDeadline(deadline)
	}
	pubs, subs := make([]*rawmqtt.Conn, p.Pairs), make([]*rawmqtt.Conn, p.Pairs)
	for i := range pubs {
		var err error
		if subs[i], err = dial("sub", i); err != nil {
			return nil, err
		}
		if err := subs[i].Subscribe(p.topic(i), 1); err != nil {
			return nil, fmt.Errorf("load %s: subscriber %d: %w", p.Name, i, err)
		}
		if pubs[i], err = dial("pub", i); err != nil {
			return nil, err
		}
	}
	base := time.Now()
	lats := make([][]time.Duration, p.Pairs)
	errs := make(chan error, 2*p.Pairs)
	var wg sync.WaitGroup
	for i := range pubs {
		lats[i] = make([]time.Duration, 0, p.Messages)
		wg.Add(2)
		go func() { // PUBACKs: read and dropped, the latency is the subscriber's
			defer wg.Done()
			for n := 0; n < p.Messages; {
				typ, _, err := pubs[i].ReadPacket()
				if err != nil {
					errs <- fmt.Errorf("load %s: publisher %d: PUBACK %d of %d: %w", p.Name, i, n+1, p.Messages, err)
					return
				}
				if typ>>4 == 4 {
					n++
				}
			}
		}()
		go func() {
			defer wg.Done()
			payload := make([]byte, size)
			topic := p.topic(i)
			for n := 0; n < p.Messages; n++ {
				Stamp(payload, base)
				pubs[i].Publish(topic, 1, uint16(n%65535+1), payload)
				if err := pubs[i].Flush(); err != nil {
					errs <- fmt.Errorf("load %s: publisher %d: message %d: %w", p.Name, i, n+1, err)
					return
				}
				_, id, got, err := subs[i].ReadPublish() // this message
				if err != nil {
					errs <- fmt.Errorf("load %s: subscriber %d: message %d of %d: %w", p.Name, i, n+1, p.Messages, err)
					return
				}
				lat, ok := Latency(got, base, time.Now())
				if !ok {
					errs <- fmt.Errorf("load %s: subscriber %d: a %d-byte payload, sent %d", p.Name, i, len(got), size)
					return
				}
				lats[i] = append(lats[i], lat)
				subs[i].Puback(id)
				if err := subs[i].Flush(); err != nil {
					errs <- fmt.Errorf("load %s: subscriber %d: %w", p.Name, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	var all Latencies
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all, nil
}

func (p Pairs) topic(i int) string { return "bench/" + p.Name + "/" + strconv.Itoa(i) }
