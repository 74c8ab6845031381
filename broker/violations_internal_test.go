package broker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestViolationHandlerPassesOtherErrors: mochi logs every error ending a
// packet's processing with the violation message; only protocol violations
// become violation lines. A failed write (a slow consumer, a closed
// connection) passes on at Debug, without the packet, and uses none of the
// violation budget.
func TestViolationHandlerPassesOtherErrors(t *testing.T) {
	var out bytes.Buffer
	base := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})
	v := newViolations(slog.New(base))
	h := violationHandler{Handler: base, v: v}
	record := func(err error) slog.Record {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, mochiViolation, 0)
		r.AddAttrs(slog.String("client", "c1"), slog.Any("error", err),
			slog.Any("pk", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, Payload: bytes.Repeat([]byte("x"), 2048)}))
		return r
	}
	if err := h.Handle(context.Background(), record(errors.New("write: broken pipe"))); err != nil {
		t.Fatal(err)
	}
	if v.seen != 0 {
		t.Fatalf("a write error counted as a violation (%d)", v.seen)
	}
	line := out.String()
	if !strings.Contains(line, "level=DEBUG") || strings.Contains(line, "xxxx") || !strings.Contains(line, "broken pipe") {
		t.Fatalf("passed on as %q, want a Debug line with the error and without the packet", line)
	}
	out.Reset()
	if err := h.Handle(context.Background(), record(packets.ErrProtocolViolationInvalidTopic)); err != nil {
		t.Fatal(err)
	}
	if v.seen != 1 || !strings.Contains(out.String(), "protocol violation") || strings.Contains(out.String(), "xxxx") {
		t.Fatalf("violation: seen %d, logged %q", v.seen, out.String())
	}
}

// mochi's warning of a low keepalive, which any unauthenticated CONNECT
// with a keepalive of 0-5 s causes, passes on at Debug.
func TestViolationHandlerQuietsLowKeepalive(t *testing.T) {
	var out bytes.Buffer
	base := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})
	h := violationHandler{Handler: base, v: newViolations(slog.New(base))}
	r := slog.NewRecord(time.Now(), slog.LevelWarn, mqtt.ErrMinimumKeepalive.Error(), 0)
	r.AddAttrs(slog.String("client", "c1"), slog.Int("keepalive", 0))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if line := out.String(); !strings.Contains(line, "level=DEBUG") || !strings.Contains(line, "client=c1") {
		t.Fatalf("passed on as %q, want a Debug line", line)
	}
}
