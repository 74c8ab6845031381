// Command propolis is the Propolis MQTT broker.
//
//	propolis serve [--config FILE] [--listen ADDR] [--data DIR] [--extensions DIR] [--repair]
//	propolis extensions list [--config FILE] [--data DIR] [--extensions DIR]
//	propolis extensions enable|disable ID [--config FILE] [--extensions DIR]
//	propolis version
//
// serve runs the broker until SIGINT or SIGTERM; flags override the file.
// It refuses a data folder whose write-ahead log is damaged; --repair
// copies such a folder aside (to DIR.damaged-<UTC time>) and starts
// without the damaged part.
// extensions enable and disable remove or create the extension's DISABLED
// file, which a running broker notices within two seconds.
// Without --config the embedded default configuration is used (one TCP
// listener on 127.0.0.1:1883, data in ./data, extensions in ./extensions).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
	"github.com/propolis-mqtt/propolis/host"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "propolis: "+strings.ReplaceAll(err.Error(), "\n", "\n  "))
		os.Exit(1)
	}
}

const usage = `usage:
  propolis serve [--config FILE] [--listen ADDR] [--data DIR] [--extensions DIR] [--repair]
  propolis extensions list [--config FILE] [--data DIR] [--extensions DIR]
  propolis extensions enable ID [--config FILE] [--extensions DIR]
  propolis extensions disable ID [--config FILE] [--extensions DIR]
  propolis extensions compile [--config FILE] [--extensions DIR]
  propolis version`

// errUsage reports a command line that cannot be run.
var errUsage = errors.New(usage)

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "extensions":
		return extensions(args[1:], stdout)
	case "version", "--version":
		fmt.Fprintf(stdout, "propolis %s\nabi %s (modules built for %d.0 to %s load)\ndata format %d\n",
			version, abi.Version, abi.Major, abi.Version, store.FormatVersion)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// serve loads the configuration, applies the flags, runs the broker and
// shuts it down on SIGINT/SIGTERM.
func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgFile := fs.String("config", "", "configuration file (YAML); default: the embedded configuration")
	listen := fs.String("listen", "", "address of the first tcp listener, e.g. 127.0.0.1:1883")
	data := fs.String("data", "", "data folder")
	exts := fs.String("extensions", "", "extensions folder")
	repair := fs.Bool("repair", false, "start on a data folder with a damaged write-ahead log: copy it aside, drop the damaged part")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("serve: %w\n%s", err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q\n%s", fs.Arg(0), usage)
	}

	cfg := config.Default()
	if *cfgFile != "" {
		var err error
		if cfg, err = config.Load(*cfgFile); err != nil {
			return err
		}
	}
	if err := applyFlags(cfg, *listen, *data, *exts); err != nil {
		return err
	}

	// Signals are caught from here on, so a SIGTERM during a long restore
	// or extension load still ends in a clean stop.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	log := newLogger(cfg.Log, stderr)
	if path := os.Getenv("PROPOLIS_CPUPROFILE"); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
		log.Info("writing a CPU profile until shutdown", "file", path)
	}
	log.Info("propolis starting", "version", version, "abi", abi.Version, "config", cfg.Source,
		"data", cfg.DataDir, "extensions", cfg.ExtensionsDir, "durability", cfg.Durability.Mode)

	// The host touches no file until LoadAll, so a refused start (address
	// in use, newer data format) leaves the data folder as it was.
	h, err := host.New(host.Options{Dir: cfg.ExtensionsDir, CacheDir: filepath.Join(cfg.DataDir, "wasm-cache"),
		StatusFile: statusFile(cfg), BrokerVersion: version, Logger: log})
	if err != nil {
		return err
	}
	defer h.Close(context.Background())
	srv, err := broker.New(broker.Options{Config: cfg, Logger: log, RepairStore: *repair,
		Extensions: broker.Extensions{Authenticator: h, Events: h}})
	if errors.Is(err, store.ErrDamagedWAL) {
		return fmt.Errorf("%w; serve --repair copies the data folder aside and starts without the damaged part", err)
	}
	if err != nil {
		return err
	}
	// The second step of the wiring: the host reaches the broker's services
	// (sessions, subscriptions, retained messages, publishing) from here on.
	h.UseBroker(srv)
	// Extensions load in start-priority order before any client is accepted.
	if err := h.LoadAll(context.Background()); err != nil {
		_ = srv.Close()
		return err
	}
	select {
	case got := <-sig:
		log.Info("stopped before start", "signal", got.String())
		return srv.Close()
	default:
	}
	if err := srv.Start(); err != nil {
		_ = srv.Close()
		return err
	}
	h.Watch() // drop-ins, DISABLED files and replacements from now on

	got := <-sig
	log.Info("shutting down", "signal", got.String())
	if err := srv.Close(); err != nil {
		return err
	}
	log.Info("propolis stopped")
	return nil
}

// startCPUProfile profiles the process into path until stop is called
// (PROPOLIS_CPUPROFILE, for benchmarks).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// applyFlags lets command-line flags override the file: --listen sets the
// address of the first tcp listener (adding one named "tcp" if there is
// none); --data and --extensions set the folders.
func applyFlags(cfg *config.Config, listen, data, exts string) error {
	if listen != "" {
		i := -1
		for j, l := range cfg.Listeners {
			if l.Type == "tcp" {
				i = j
				break
			}
		}
		if i < 0 {
			cfg.Listeners = append(cfg.Listeners, config.Listener{Name: "tcp", Type: "tcp"})
			i = len(cfg.Listeners) - 1
		}
		cfg.Listeners[i].Address = listen
	}
	if data != "" {
		cfg.DataDir = data
	}
	if exts != "" {
		cfg.ExtensionsDir = exts
	}
	return cfg.Validate()
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(lc config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(lc.Level))
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
