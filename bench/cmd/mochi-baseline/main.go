// Command mochi-baseline is a plain mochi-mqtt broker, built from the same
// mochi-mqtt module version as Propolis, with mochi's own allow-all auth
// hook and no persistence: the ceiling Propolis builds on, for the
// benchmark harness, which sets its limits with -receive-maximum,
// -maximum-inflight and -writes-pending to the ones it gives every broker.
// It prints "listening ADDR" on stdout and runs until
// SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	caps := mqtt.NewDefaultServerCapabilities()
	recvMax := flag.Uint("receive-maximum", uint(caps.ReceiveMaximum), "QoS 1/2 messages a client may send unacknowledged")
	inflight := flag.Uint("maximum-inflight", uint(caps.MaximumInflight), "QoS 1/2 messages held per client, in flight or waiting")
	pending := flag.Int("writes-pending", int(caps.MaximumClientWritesPending), "packets waiting to be written per client before QoS 0 ones are dropped")
	flag.Parse()
	if *recvMax < 1 || *recvMax > 65535 || *inflight < 1 || *inflight > 65535 || *pending < 1 {
		fail(fmt.Errorf("-receive-maximum %d, -maximum-inflight %d: want 1-65535; -writes-pending %d: want at least 1", *recvMax, *inflight, *pending))
	}
	caps.ReceiveMaximum, caps.MaximumInflight, caps.MaximumClientWritesPending = uint16(*recvMax), uint16(*inflight), int32(*pending)
	// Warnings (a dropped message among them) go to stderr, where the
	// harness reads them.
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		fail(err)
	}
	l := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tcp", Address: *addr})
	if err := srv.AddListener(l); err != nil {
		fail(err)
	}
	if err := srv.Serve(); err != nil {
		fail(err)
	}
	fmt.Println("listening", l.Address())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	_ = srv.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mochi-baseline:", err)
	os.Exit(1)
}
