package host

import (
	"context"
	"errors"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
)

// OnEvent queues the event for every extension that takes events. It never
// blocks: an extension whose queue is full loses the event (counted and
// logged).
func (h *Host) OnEvent(ev *broker.Event) {
	exts := h.chain.Load().callers(abi.CallbackOnEvent)
	if len(exts) == 0 {
		return
	}
	// broker.EventKind and broker.DisconnectKind take their values from
	// abi's tables.
	rec := &abi.EventRecord{Event: uint8(ev.Kind), DisconnectKind: uint8(ev.Disconnect), ReasonCode: ev.ReasonCode,
		ProtocolVersion: ev.ProtocolVersion, Time: uint64(ev.Time.UnixNano()), ClientID: ev.ClientID, Username: ev.Username,
		Listener: ev.Listener, RemoteAddr: ev.RemoteAddr, ReasonString: ev.ReasonString}
	for _, f := range ev.Filters {
		rec.Filters = append(rec.Filters, abi.FilterResult{Filter: f.Filter, QoS: f.QoS, Code: f.Code})
	}
	for _, e := range exts {
		e.queueEvent(queuedEvent{rec: rec, conn: ev.Conn})
	}
}

// queuedEvent is an event waiting for an extension's on_event, with the
// connection it is about (connection attributes).
type queuedEvent struct {
	rec  *abi.EventRecord
	conn broker.Conn
}

// eventQueue is how many events wait per extension before new ones drop.
const eventQueue = 4096

// errEventQueueFull is why an event is dropped when its queue is full.
var errEventQueueFull = errors.New("event queue full")

func (e *extension) queueEvent(rec queuedEvent) {
	if e.stopped.Load() {
		return // its successor, if any, is in the chain the next event sees
	}
	select {
	case e.events <- rec:
	default:
		e.dropEvent(errEventQueueFull)
	}
}

// deliverEvents calls on_event for each queued event, one at a time, on
// the extension's own goroutine, until the extension stops. Events still
// queued then are handed to its successor after a reload, when it takes
// events, or dropped and counted.
func (e *extension) deliverEvents() {
	for {
		select {
		case rec := <-e.events:
			_, _ = e.host.invokeFor(context.Background(), e, abi.CallbackOnEvent, rec.rec, rec.conn)
		case <-e.quit:
			next := e.host.successor(e, abi.CallbackOnEvent)
			for {
				select {
				case rec := <-e.events:
					if next != nil {
						next.queueEvent(rec)
					} else {
						e.dropEvent(ErrStopped)
					}
				default:
					return
				}
			}
		}
	}
}

// dropEvent counts (and now and then logs) an event that could not be
// delivered.
func (e *extension) dropEvent(cause error) {
	if n := e.dropped.Add(1); n == 1 || n%1000 == 0 {
		e.log.Warn("event dropped", "dropped", n, "error", cause)
	}
}
