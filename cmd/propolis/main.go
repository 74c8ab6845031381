// Command propolis is the Propolis MQTT broker.
//
// Its commands are the table in commands.go; `propolis help` prints them,
// and `propolis help COMMAND` a command's flags with their defaults, both
// generated from the flag sets the commands parse. serve (main.go) runs the
// broker until SIGINT or SIGTERM and reloads its configuration file on
// SIGHUP; the extensions commands are in extensions.go.
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
	"runtime/pprof"
	"strings"
	"sync/atomic"
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
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// serveFlags declares the flags of serve and returns the function running
// it.
func serveFlags(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
	o := folderFlags(fs)
	listen := optionalFlag(fs, "listen", "the configuration's listeners; "+config.Default().Listeners[0].Address+" in the embedded one",
		"listen on `ADDR` (host:port) with the first tcp listener, adding one named tcp if there is none")
	httpAddr := optionalFlag(fs, "http", "the configuration's http.address; "+config.DefaultHTTPAddress+" in the embedded one",
		"serve the operator's HTTP endpoint on `ADDR` (host:port), overriding http.address: /metrics, /healthz, /readyz, "+
			"and the admin API (/api/v1) and control center (/ui/) unless admin.enabled is false; "+httpOff+" (or an empty value) serves none")
	httpAddr.empty = httpOff
	repair := fs.Bool("repair", false, "start on a data folder with a damaged write-ahead log: copy it aside, drop the damaged part")
	return func(_ string, _, stderr io.Writer) error {
		load := func() (*config.Config, error) {
			return loadConfig(o.file.value, listen.value, o.data.value, o.exts.value, httpAddr.value)
		}
		return serve(load, *repair, stderr)
	}
}

// serve runs the broker on the configuration load returns until SIGINT or
// SIGTERM; on SIGHUP it calls load again and applies what changed
// (reloadConfig).
func serve(load func() (*config.Config, error), repair bool, stderr io.Writer) error {
	// Signals are caught from here on, so a SIGTERM during a long restore
	// or extension load still ends in a clean stop, and a SIGHUP waits for
	// the broker to run (it never ends the process).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg, err := load()
	if err != nil {
		return err
	}
	// The admin API's users, before anything binds or opens: a
	// non-loopback endpoint without users is refused here.
	policy, err := adminPolicy(cfg)
	if err != nil {
		return err
	}

	out := newLogOutput(cfg.Log, stderr)
	log := out.logger()
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
	ops, err := listenOps(cfg, log)
	if err != nil {
		return err
	}
	var adm *adminState // the admin API, mounted by serveOps
	defer func() {
		closeOps(ops, log) // after srv.Close and h.Close on every path below
		adm.close(log)     // after the last request that could write to it
	}()
	opts := hostOptions(cfg)
	opts.StatusFile, opts.BrokerVersion, opts.Logger = statusFile(cfg), version, log
	ext := extensionMetrics(ops, &opts)
	h, err := host.New(opts)
	if err != nil {
		return err
	}
	defer h.Close(context.Background())
	// The cluster node, with a cluster section only (nil otherwise: no
	// NATS code runs). It starts before the broker and is closed after it
	// (deferred here, so after srv.Close on every path below).
	// stopped ends with SIGINT or SIGTERM (sig gets them too), for the
	// cluster's waits before the broker runs.
	stopped, stopWatch := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopWatch()
	var brokerRef atomic.Pointer[broker.Server] // for the registry, from broker.New on
	node, err := startCluster(stopped, cfg, h, &brokerRef, log)
	if err != nil {
		return err
	}
	var bc broker.Cluster // nil without a cluster (not a nil *cluster.Node)
	// Session attributes in the cluster's bucket; its gate, asked at each
	// call, keeps them in the local store until every node speaks the
	// protocol that carries them (cluster.Node.Attributes).
	var attrs broker.AttributeStore
	if node != nil {
		defer node.Close()
		// The streams before broker.New: its restore reports the restored
		// sessions' filters and forwards crash wills. A node started
		// before its peers waits for them here.
		if !startRouting(stopped, node, cfg.Cluster.Seeds, log) {
			log.Info("stopped before start", "signal", "SIGINT or SIGTERM")
			return nil
		}
		bc, attrs = node, node.Attributes()
	}
	srv, err := broker.New(broker.Options{Config: cfg, Logger: log, ApplyLog: out.set, RepairStore: repair, Version: version,
		Extensions: broker.Extensions{Authenticator: h, Events: h, Interceptors: h}, Cluster: bc, Attributes: attrs})
	if errors.Is(err, store.ErrDamagedWAL) {
		return fmt.Errorf("%w; serve --repair copies the data folder aside and starts without the damaged part", err)
	}
	if err != nil {
		return err
	}
	brokerRef.Store(srv)
	// The second step of the wiring: the host reaches the broker's services
	// (sessions, subscriptions, retained messages, publishing) from here on.
	h.UseBroker(srv)
	adm, err = serveOps(ops, srv, h, node, ext, policy, log)
	if err != nil {
		_ = srv.Close()
		return err
	}
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
	if node != nil {
		// Routing, take-over and shared subscriptions act on the broker
		// from here on; the cluster's retained messages are in its store
		// before the first client.
		if err := node.UseBroker(srv); err != nil {
			_ = srv.Close()
			return err
		}
		if err := joinCluster(stopped, node); err != nil {
			node.StopReceiving()
			_ = srv.Close()
			return err
		}
	}
	if err := srv.Start(); err != nil {
		_ = srv.Close()
		return err
	}
	h.Watch() // drop-ins, DISABLED files and replacements from now on

	for {
		select {
		case <-hup:
			reloadConfig(log, srv, load, adm)
			continue
		case got := <-sig:
			log.Info("shutting down", "signal", got.String())
		}
		break
	}
	if node != nil {
		node.StopReceiving() // nothing from the cluster reaches the closing broker
	}
	if err := srv.Close(); err != nil {
		return err
	}
	log.Info("propolis stopped")
	return nil
}

// reloadConfig answers SIGHUP: it loads the configuration file again, with
// the command-line flags applied as at start, and applies it if every
// setting it changes can change at runtime (config.CheckReload), logging
// each change; otherwise it logs why and changes nothing. It never stops
// the broker.
//
// The admin API's users, roles and tokens (adm, nil when the endpoint is
// off) are rebuilt first: a problem with them refuses the reload too.
func reloadConfig(log *slog.Logger, srv *broker.Server, load func() (*config.Config, error), adm *adminState) {
	old := srv.Config()
	if old.Source == config.Default().Source {
		log.Info("SIGHUP: nothing to reload, the broker runs on the embedded default configuration (start it with --config FILE)")
		return
	}
	log.Info("SIGHUP: reloading the configuration", "file", old.Source)
	cfg, err := load()
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				attrs := []any{"file", e.File}
				if e.Line > 0 {
					attrs = append(attrs, "line", e.Line)
				}
				if e.Column > 0 {
					attrs = append(attrs, "column", e.Column)
				}
				if e.Key != "" {
					attrs = append(attrs, "key", e.Key)
				}
				log.Error("reload failed, configuration unchanged", append(attrs, "error", e.Msg)...)
			}
		} else {
			log.Error("reload failed, configuration unchanged", "file", old.Source, "error", err)
		}
		return
	}
	applyAdmin, err := adm.reloadAdmin(cfg, log)
	if err != nil {
		log.Error("reload failed, configuration unchanged", "file", cfg.Source, "error", err)
		return
	}
	changes, err := srv.Reload(cfg)
	var refused *config.ReloadError
	if errors.As(err, &refused) {
		for _, c := range refused.Fixed {
			log.Error("reload refused: key cannot change while running", "file", refused.File, "key", c.Key, "old", c.Old, "new", c.New, "reason", c.Why)
		}
		log.Error("reload refused, configuration unchanged; restart the broker to apply it", "file", cfg.Source, "keys", len(refused.Fixed))
		return
	}
	if err != nil {
		log.Error("reload failed, configuration unchanged", "file", cfg.Source, "error", err)
		return
	}
	adminChanges := applyAdmin()
	for _, c := range changes {
		log.Info("configuration changed", "key", c.Key, "old", c.Old, "new", c.New, "applies_to", c.AppliesTo)
	}
	// changes counts the keys of the file; admin_changes the admin users
	// and tokens added, removed or changed, admin.users_file's included.
	log.Info("configuration reloaded", "file", cfg.Source, "changes", len(changes), "admin_changes", adminChanges)
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
// none); --data and --extensions set the folders; --http sets
// http.address.
func applyFlags(cfg *config.Config, listen, data, exts, httpAddr string) error {
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
	switch httpAddr {
	case "":
	case httpOff:
		cfg.HTTP.Address = ""
	default:
		cfg.HTTP.Address = httpAddr
	}
	return cfg.Validate()
}

// httpOff is the value of --http that turns the operator's HTTP endpoint
// off, as an empty http.address does in the configuration.
const httpOff = "off"
