package broker

import (
	"errors"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file builds lifecycle Events and hands them to the EventListener.
// Every emit runs on the goroutine of the mochi callback that caused it
// (mostly the client's own) and does nothing without an EventListener.

// newEvent fills the fields every Event carries from cl.
func newEvent(kind EventKind, cl *mqtt.Client, t time.Time) *Event {
	return &Event{
		Kind:            kind,
		Time:            t,
		ClientID:        cl.ID,
		Username:        string(cl.Properties.Username),
		Listener:        cl.Net.Listener,
		RemoteAddr:      cl.Net.Remote,
		ProtocolVersion: cl.Properties.ProtocolVersion,
	}
}

// emit sends a connection event (connection start, authentication
// succeeded or failed) of connection conn with a reason code and string.
func (h *hook) emit(kind EventKind, cl *mqtt.Client, conn Conn, code byte, reason string) {
	if h.ext.Events == nil {
		return
	}
	e := newEvent(kind, cl, time.Now())
	e.ReasonCode, e.ReasonString, e.Conn = code, reason, conn
	h.ext.Events.OnEvent(e)
}

// emitDisconnect sends EventDisconnect for a connection that ended at now
// with mochi's error err (see disconnectCause).
func (h *hook) emitDisconnect(cl *mqtt.Client, err error, now time.Time) {
	if h.ext.Events == nil {
		return
	}
	e := newEvent(EventDisconnect, cl, now)
	e.Disconnect, e.ReasonCode, e.ReasonString = disconnectCause(cl, err)
	e.Conn = h.conn(cl)
	if st := h.state(cl); st != nil && e.Disconnect == DisconnectByClient {
		if r := st.leaving.Load(); r != nil {
			e.ReasonString = *r // the client's, as interceptors left it
		}
	}
	h.ext.Events.OnEvent(e)
}

// emitSubscribe sends EventSubscribe with the filters of a SUBSCRIBE and
// the codes the SUBACK carries (from finishSubscribe).
func (h *hook) emitSubscribe(cl *mqtt.Client, results []FilterResult) {
	if h.ext.Events == nil {
		return
	}
	e := newEvent(EventSubscribe, cl, time.Now())
	e.Filters, e.Conn = results, h.conn(cl)
	h.ext.Events.OnEvent(e)
}

// emitUnsubscribe sends EventUnsubscribe for the filters of an UNSUBSCRIBE
// (or of mochi unsubscribing a session that ends with its connection).
// Nothing is sent for a connection that was taken over, or for a client
// without a network connection (a session restored from the store).
func (h *hook) emitUnsubscribe(cl *mqtt.Client, pk packets.Packet) {
	if h.ext.Events == nil || cl.IsTakenOver() || cl.Net.Conn == nil {
		return
	}
	results := make([]FilterResult, len(pk.Filters))
	for i, f := range pk.Filters {
		results[i] = FilterResult{Filter: f.Filter, QoS: f.Qos}
	}
	e := newEvent(EventUnsubscribe, cl, time.Now())
	e.Filters, e.Conn = results, h.conn(cl)
	h.ext.Events.OnEvent(e)
}

// conn returns the connection of an authenticated client, the zero Conn
// for one without a clientState.
func (h *hook) conn(cl *mqtt.Client) Conn {
	if st := h.state(cl); st != nil {
		return st.conn
	}
	return Conn{}
}

// disconnectCause tells who ended a connection, from mochi's error and stop
// cause: nil (or "disconnect with will") is the client's DISCONNECT; a
// reason code the broker sent is the server's (a malformed packet
// included: mochi ends it with 0x81 Malformed Packet or 0x82 Protocol
// Error); anything else was lost.
func disconnectCause(cl *mqtt.Client, err error) (DisconnectKind, byte, string) {
	var c packets.Code
	if errors.As(cl.StopCause(), &c) && c.Code >= 0x80 {
		return DisconnectByServer, c.Code, c.Reason
	}
	if err == nil || errors.Is(err, packets.CodeDisconnectWillMessage) {
		code := byte(0)
		if err != nil {
			code = packets.CodeDisconnectWillMessage.Code
		}
		return DisconnectByClient, code, ""
	}
	if errors.As(err, &c) && c.Code >= 0x80 {
		return DisconnectByServer, c.Code, c.Reason
	}
	// io.EOF, a network error, a keepalive timeout.
	return DisconnectLost, 0, err.Error()
}
