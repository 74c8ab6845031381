package broker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file logs protocol violations: one bounded line each ("protocol
// violation": client, remote, listener, violation, packet, length), at most
// violationLines lines per violationInterval, the next line after a pause
// counting what was left out ("suppressed"). mochi logs a violation in a
// packet it has decoded as "error processing packet" with the whole packet
// (~2.2 KB, the payload included) at warn, for every packet: its logger is
// wrapped by violationHandler, which turns that record into the summary. A
// packet mochi cannot decode ends the connection without a log of mochi's;
// guardedListener reports it here.

const (
	// violationLines is how many violations are logged per
	// violationInterval; the others are counted.
	violationLines = 10
	// violationInterval is the window violationLines counts in.
	violationInterval = 10 * time.Second
	// mochiViolation is the message of mochi's record (server.go,
	// receivePacket).
	mochiViolation = "error processing packet"
	// mochiRejected is the message of mochi's Debug record of a packet a
	// hook rejected, with the whole packet (hooks.go, OnPacketRead).
	mochiRejected = "packet rejected"
)

// violations is the rate-limited log of protocol violations. Safe for
// concurrent use: each client goroutine reports its own.
type violations struct {
	log     *slog.Logger
	clients *mqtt.Clients // finds a client's remote address; set once mochi exists
	limit   *logLimit     // violationLines per violationInterval, the count on the next line

	mu   sync.Mutex
	seen int // reported in all (logged or suppressed), for tests

	// reported holds the remote address of each connection whose
	// violation mochi has logged; guardedListener then does not report the
	// same violation again when the connection ends.
	reported sync.Map // remote address -> struct{}
}

func newViolations(log *slog.Logger) *violations {
	return &violations{log: log, limit: newLogLimit(violationLines, violationInterval, nil)}
}

// report logs one violation or counts it as suppressed. packet and length
// are omitted when unknown ("", -1).
func (v *violations) report(client, remote, listener string, violation error, packet string, length int) {
	ok, suppressed := v.limit.take()
	if !ok {
		v.mu.Lock()
		v.seen++
		v.mu.Unlock()
		return
	}

	attrs := make([]slog.Attr, 0, 7)
	if client != "" {
		attrs = append(attrs, slog.String("client", client))
	}
	attrs = append(attrs, slog.String("remote", remote), slog.String("listener", listener),
		slog.String("violation", violationText(violation)))
	if packet != "" {
		attrs = append(attrs, slog.String("packet", packet), slog.Int("length", length))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	v.log.LogAttrs(context.Background(), slog.LevelWarn, "protocol violation", attrs...)
	v.mu.Lock()
	v.seen++ // after the line is written, so a test that sees the count sees the line
	v.mu.Unlock()
}

// violationText is a violation's error, at most 200 bytes (mochi's are
// short fixed strings; this bounds any other).
func violationText(err error) string {
	if err == nil {
		return "unknown"
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// isViolation reports whether err, which ended a connection, is a protocol
// violation or a malformed packet (mochi's codes 0x81, 0x82 and 0x95).
func isViolation(err error) bool {
	var code packets.Code
	if !errors.As(err, &code) {
		return false
	}
	switch code.Code {
	case packets.ErrMalformedPacket.Code, packets.ErrProtocolViolation.Code, packets.ErrPacketTooLarge.Code:
		return true
	}
	return false
}

// forget is told by guardedListener that the connection from remote has
// ended, and reports whether mochi's record of the error that ended it was
// handled here already (so it is not logged again).
func (v *violations) forget(remote string) bool {
	_, done := v.reported.LoadAndDelete(remote)
	return done
}

// fromMochi turns mochi's "error processing packet" record into a report.
func (v *violations) fromMochi(r slog.Record) {
	var (
		client, listener string
		violation        error
		pk               packets.Packet
		hasPacket        bool
	)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			client = a.Value.String()
		case "listener":
			listener = a.Value.String()
		case "error":
			violation, _ = a.Value.Any().(error)
		case "pk":
			pk, hasPacket = a.Value.Any().(packets.Packet)
		}
		return true
	})
	remote := ""
	if v.clients != nil {
		if cl, ok := v.clients.Get(client); ok {
			remote = cl.Net.Remote
		}
	}
	if remote != "" {
		v.reported.Store(remote, struct{}{})
	}
	packet, length := "", -1
	if hasPacket {
		packet, length = packets.PacketNames[pk.FixedHeader.Type], pk.FixedHeader.Remaining
	}
	v.report(client, remote, listener, violation, packet, length)
}

// violationHandler is the slog.Handler of the logger given to mochi: the
// broker's handler, except that mochi's record of a protocol violation
// becomes a violations report.
type violationHandler struct {
	slog.Handler
	v *violations
}

var _ slog.Handler = violationHandler{}

// Handle reports mochi's violation records and passes every other record on.
// mochi uses the same message for any error ending a packet's processing
// (a failed write to a slow consumer, a closed connection): those are not
// violations, and pass on at Debug without the packet (the listener logs
// how the connection ended).
//
// mochi also warns of every CONNECT with a keepalive of 5 s or less, 0
// included, before the client is authenticated: anyone could fill the log
// with it, and the keepalive granted is the broker's (mqtt.max_keepalive),
// so it passes on at Debug too, as does mochi's record of a packet a hook
// rejected (the hook logs why), without the packet.
func (h violationHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == mqtt.ErrMinimumKeepalive.Error() || r.Message == mochiRejected {
		return h.debug(ctx, r)
	}
	if r.Message != mochiViolation {
		return h.Handler.Handle(ctx, r)
	}
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			err, _ = a.Value.Any().(error)
		}
		return true
	})
	if isViolation(err) {
		h.v.fromMochi(r)
		return nil
	}
	return h.debug(ctx, r)
}

// debug passes r on at Debug, without the packet mochi attaches ("pk",
// "packet").
func (h violationHandler) debug(ctx context.Context, r slog.Record) error {
	if !h.Handler.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "pk" && a.Key != "packet" {
			out.AddAttrs(a)
		}
		return true
	})
	return h.Handler.Handle(ctx, out)
}

// WithAttrs keeps the wrapper around the derived handler.
func (h violationHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return violationHandler{Handler: h.Handler.WithAttrs(attrs), v: h.v}
}

// WithGroup keeps the wrapper around the derived handler.
func (h violationHandler) WithGroup(name string) slog.Handler {
	return violationHandler{Handler: h.Handler.WithGroup(name), v: h.v}
}
