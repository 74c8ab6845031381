package brokertest

import (
	"fmt"
	"strconv"
)

// PublishLoad sends n messages of payload to topic from publishers
// connections (QoS 0, or QoS 1 keeping up to 256 unacknowledged per
// connection) and waits until one subscriber, subscribed at QoS 0, has
// received all of them. It is the publish benchmark shared by the broker's
// and the host's benchmarks.
func PublishLoad(addr, topic string, qos byte, publishers, n int, payload []byte) error {
	sub, err := Dial(addr, "load-sub")
	if err != nil {
		return err
	}
	defer sub.Close()
	if err := sub.Subscribe(topic, 0); err != nil {
		return err
	}
	pubs := make([]*Conn, publishers)
	for i := range pubs {
		if pubs[i], err = Dial(addr, "load-pub-"+strconv.Itoa(i)); err != nil {
			return err
		}
		defer pubs[i].Close()
	}
	received := make(chan error, 1)
	go func() {
		for got := 0; got < n; {
			typ, _, err := sub.ReadPacket()
			if err != nil {
				received <- fmt.Errorf("subscriber: read after %d messages: %w", got, err)
				return
			}
			if typ>>4 == 3 {
				got++
			}
		}
		received <- nil
	}()
	errs := make(chan error, publishers)
	for p, pub := range pubs {
		count := n / publishers
		if p == 0 {
			count += n % publishers
		}
		go func() { errs <- publishN(pub, topic, qos, count, payload) }()
	}
	for range pubs {
		if err := <-errs; err != nil {
			return err
		}
	}
	return <-received
}

// publishN publishes count messages on one connection.
func publishN(pub *Conn, topic string, qos byte, count int, payload []byte) error {
	window := make(chan struct{}, 256)
	acked := make(chan error, 1)
	if qos > 0 {
		go func() {
			for i := 0; i < count; i++ {
				typ, body, err := pub.ReadPacket()
				if err != nil || typ != 0x40 {
					acked <- fmt.Errorf("publisher: packet %#x % x after %d acks: %v", typ, body, i, err)
					return
				}
				if len(body) > 2 && body[2] >= 0x80 {
					acked <- fmt.Errorf("publisher: PUBACK reason %#x", body[2])
					return
				}
				<-window
			}
			acked <- nil
		}()
	}
	for i := 0; i < count; i++ {
		if qos > 0 {
			select {
			case window <- struct{}{}:
			default:
				if err := pub.Flush(); err != nil {
					return err
				}
				window <- struct{}{}
			}
		}
		pub.Publish(topic, qos, uint16(i%65535+1), payload)
		if i%64 == 63 {
			if err := pub.Flush(); err != nil {
				return err
			}
		}
	}
	if err := pub.Flush(); err != nil {
		return err
	}
	if qos > 0 {
		return <-acked
	}
	return nil
}
