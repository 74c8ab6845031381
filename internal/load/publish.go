package load

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/internal/rawmqtt"
)

// Publish is a publisher-side throughput load: Publishers connections each
// send Messages PUBLISH packets on one topic, with no subscriber, as fast as
// the broker takes them. It measures the publish path alone: reading,
// decoding, authorizing and routing a message that nobody receives.
//
// At QoS 1 a message counts once its PUBACK is read, with at most InFlight
// unacknowledged per publisher. At QoS 0 the broker acknowledges nothing,
// so after its last PUBLISH every publisher sends a PINGREQ and waits for
// the PINGRESP: a broker reads a connection's packets in order, so the
// PINGRESP proves it has read, and handled, every PUBLISH before it. The
// load ends when the last publisher has its PUBACKs or its PINGRESP; the
// rate is every message sent divided by that time, so the figure is the
// rate the broker keeps up with, not the rate at which sockets accept bytes.
type Publish struct {
	// Addr is the broker's MQTT listener, host:port.
	Addr string
	// Name prefixes the client ids, <Name>-pub-<i>, and names the topic,
	// "bench/<Name>", when Topic is empty.
	Name string
	// Topic is the one topic every publisher sends to.
	Topic string
	// Publishers is the number of publishing connections, at least 1.
	Publishers int
	// Messages is the number of PUBLISH packets each publisher sends.
	Messages int
	// QoS is 0 or 1.
	QoS byte
	// PayloadSize is the payload of every PUBLISH in bytes; 64 when zero.
	PayloadSize int
	// InFlight is how many QoS 1 PUBLISH packets a publisher keeps
	// unacknowledged; 64 when zero.
	InFlight int
	// ReceiveMaximum, when not zero, connects as MQTT 5 with this Receive
	// Maximum (the publishers receive no deliveries, so it only changes the
	// protocol version).
	ReceiveMaximum uint16
	// Timeout bounds the whole load, connections included; 90 s when zero.
	Timeout time.Duration
}

// PublishResult is what a Publish load measured.
type PublishResult struct {
	// Messages is the number of messages the broker acknowledged (QoS 1) or
	// read before the final PINGRESP (QoS 0): all of them when Run returns
	// no error.
	Messages int64
	// Elapsed runs from the first PUBLISH to the last PUBACK or PINGRESP.
	Elapsed time.Duration
}

// Rate returns messages per second (0 for an empty result).
func (r PublishResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Messages) / r.Elapsed.Seconds()
}

// Run opens the connections, runs the load and closes them. It returns an
// error when a connection is refused or fails, or ErrTimeout.
func (p Publish) Run() (PublishResult, error) {
	switch {
	case p.Publishers < 1 || p.Messages < 1:
		return PublishResult{}, fmt.Errorf("load %s: %d publishers of %d messages, want at least 1 of 1", p.Name, p.Publishers, p.Messages)
	case p.QoS > 1:
		return PublishResult{}, fmt.Errorf("load %s: QoS %d: only 0 and 1 are supported", p.Name, p.QoS)
	}
	payload := make([]byte, orDefault(p.PayloadSize, defaultPayloadSize))
	inFlight := orDefault(p.InFlight, defaultInFlight)
	timeout := orDefault(p.Timeout, defaultTimeout)
	deadline := time.Now().Add(timeout)
	topic := p.Topic
	if topic == "" {
		topic = "bench/" + p.Name
	}
	conns := make([]*rawmqtt.Conn, 0, p.Publishers)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < p.Publishers; i++ {
		id := p.Name + "-pub-" + strconv.Itoa(i)
		c, err := dialClient(p.Addr, id, p.ReceiveMaximum)
		if err != nil {
			return PublishResult{}, fmt.Errorf("load %s: %w", id, err)
		}
		conns = append(conns, c)
		if err := c.SetDeadline(deadline); err != nil {
			return PublishResult{}, err
		}
	}
	start := time.Now()
	errs := make(chan error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 16 messages per socket write: the generator must not be
			// what limits the rate on a machine it shares with the broker.
			err := publish(c, topic, p.QoS, p.Messages, inFlight, 16, payload, func() {})
			if err == nil && p.QoS == 0 {
				err = pingRoundTrip(c)
			}
			if err != nil {
				errs <- fmt.Errorf("load %s: publisher %d: %w", p.Name, i, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		if time.Now().After(deadline) {
			return PublishResult{}, fmt.Errorf("load %s: %w (%v): %w", p.Name, ErrTimeout, timeout, err)
		}
		return PublishResult{}, err
	default:
	}
	return PublishResult{Messages: int64(p.Publishers) * int64(p.Messages), Elapsed: elapsed}, nil
}

// pingRoundTrip sends a PINGREQ and reads until its PINGRESP.
func pingRoundTrip(c *rawmqtt.Conn) error {
	c.Pingreq()
	if err := c.Flush(); err != nil {
		return err
	}
	for {
		typ, _, err := c.ReadPacket()
		if err != nil {
			return fmt.Errorf("PINGRESP: %w", err)
		}
		if typ == 0xd0 {
			return nil
		}
	}
}
