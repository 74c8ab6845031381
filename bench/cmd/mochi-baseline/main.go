// Command mochi-baseline is a plain mochi-mqtt broker, built from the same
// mochi-mqtt module version as Propolis, with mochi's own allow-all auth
// hook and no persistence: the ceiling Propolis builds on, for the
// benchmark harness. It prints "listening ADDR" on stdout and runs until
// SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"io"
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
	flag.Parse()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
