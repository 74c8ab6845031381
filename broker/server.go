package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/overload"
	"github.com/propolis-mqtt/propolis/broker/store"
)

// Options configures New.
type Options struct {
	// Config is the validated configuration (config.Load or config.Default).
	Config *config.Config
	// Extensions is what the broker consults; see Extensions.
	Extensions Extensions
	// Logger receives the broker's logs; nil means slog.Default().
	Logger *slog.Logger
	// ApplyLog changes Logger to the log settings (log.level, log.format)
	// of a configuration Server.Reload takes; Reload calls it, under its
	// lock, when they change. nil: the broker cannot change its logger, and
	// Reload refuses a change of log.*. `propolis serve` passes its log
	// output's setter.
	ApplyLog func(config.Log)
	// Persistence keeps sessions, subscriptions and messages across
	// restarts; nil (the default) means the Pebble store of Config.DataDir
	// with Config.Durability, opened by New. New takes ownership of a given
	// one: Server.Close closes it, and so does New when it fails. See
	// Persistence for what it must guarantee.
	Persistence Persistence
	// Version is Propolis's version, published as "propolis <Version>" on
	// $SYS/broker/version (mochi would publish its own). Default "dev".
	// `propolis serve` passes the version it was built with.
	Version string
	// RepairStore opens a data folder whose write-ahead log is damaged,
	// after copying it aside (store.Options.Repair); without it New refuses
	// such a folder with an error matching store.ErrDamagedWAL. Ignored
	// when Persistence is given. `propolis serve --repair` sets it.
	RepairStore bool
	// StressLevel, when not nil, replaces the node's computed stress level
	// (0..10) at every sample; the signals are still sampled and reported.
	// Tests inject a level with it; nil (the default) uses the computed one.
	StressLevel func() float64
	// Cluster connects the broker to the other nodes of a cluster; nil (the
	// default) is a single node, which costs a nil check per PUBLISH.
	Cluster Cluster
	// Attributes keeps the SessionAttributes service's attributes instead
	// of Persistence; nil (the default) keeps them in Persistence. An
	// AttributeStore that implements AttributeGate is used only while its
	// gate is open. A session's end reaches it in any case
	// (AttributeStore.AttributeDeleteAll). `propolis serve` passes the
	// cluster node's store (cluster.Node.Attributes) in a cluster.
	Attributes AttributeStore
}

// Server is a Propolis MQTT broker: mochi-mqtt for the protocol, a
// Persistence (by default the Pebble store) for what outlives a restart, and
// Extensions for every security decision.
//
// Lifecycle: New binds the listeners, opens the store and restores what it
// holds; Start begins accepting clients; Close shuts down gracefully. Close
// may be called from any goroutine, once or more.
type Server struct {
	cfg       atomic.Pointer[config.Config] // in effect; Reload replaces it (reload.go)
	reloadMu  sync.Mutex                    // serializes Reload
	applyLog  func(config.Log)              // Options.ApplyLog, called by Reload
	log       *slog.Logger
	mochi     *mqtt.Server
	persist   Persistence
	hook      *hook
	listeners []*guardedListener
	slow      atomic.Int64 // slow-consumer disconnects, see Counters
	stats     *stats       // the hook's running totals, see stats.go
	// violations logs protocol violations, bounded and rate-limited (see
	// violations.go); mochi logs through it.
	violations *violations
	closeOnce  sync.Once
	closeErr   error
	// started is set once Start has opened the listeners, storeClosed
	// once Close closes the Persistence; Ready reads both.
	started, storeClosed atomic.Bool
	// startedAt is the Unix time in nanoseconds Start opened the
	// listeners (Info).
	startedAt atomic.Int64
	// heldClock, when set (tests only, SetHeldClock), is the clock of the
	// deliveries each new connection holds back (outConn.now).
	heldClock atomic.Pointer[func() time.Time]

	// Overload protection (overload.go): the stress level, the clients'
	// buckets, and the sampling loop Start starts and Close stops.
	monitor      *overload.Monitor
	throttler    *overload.Throttler
	stopSampling chan struct{}
	sampling     sync.WaitGroup
}

// ErrListen wraps a failure to bind a listener's address (for example, the
// port is in use).
var ErrListen = errors.New("bind listener")

// New builds a broker from opts. It binds every listener first, so that an
// address in use is reported before the data folder is touched, then opens
// the store (migrating an older format) unless opts.Persistence gives one,
// restores sessions, subscriptions, queued and retained messages, and
// re-publishes what a crash left pending. Clients are not accepted until
// Start.
func New(opts Options) (*Server, error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = config.Default()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	viol := newViolations(log)
	m := mqtt.New(mochiOptions(cfg, slog.New(violationHandler{Handler: log.Handler(), v: viol})))
	viol.clients = m.Clients
	m.Info.Version = sysVersion(opts.Version)
	s := &Server{log: log, applyLog: opts.ApplyLog, mochi: m, violations: viol, stats: new(stats),
		throttler: overload.NewThrottler(), stopSampling: make(chan struct{})}
	s.cfg.Store(cfg)
	s.monitor = s.newMonitor(opts.StressLevel)

	for _, lc := range cfg.Listeners {
		l, err := newListener(lc, s.connectTimeout, m, log, s.wrapConn, s.connEnded, viol)
		if err != nil {
			s.closeListeners()
			closePersistence(opts.Persistence)
			return nil, err
		}
		if err := m.AddListener(l); err != nil {
			s.closeListeners()
			closePersistence(opts.Persistence)
			return nil, fmt.Errorf("%w %q on %s: %w", ErrListen, lc.Name, lc.Address, err)
		}
		s.listeners = append(s.listeners, l.(*guardedListener))
	}

	s.persist = opts.Persistence
	if s.persist == nil {
		st, err := openStore(cfg, opts.RepairStore, log, store.Timings{Write: s.stats.observeStoreWrite, Fsync: s.stats.storeFsync.observe})
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		s.persist = st
	}

	s.hook = &hook{
		log:        log,
		ext:        opts.Extensions,
		mochi:      m,
		persist:    s.persist,
		attrs:      opts.Attributes,
		cfg:        &s.cfg,
		receiveMax: cfg.MQTT.ReceiveMaximum,
		sec:        newSecurityLog(log),
		stats:      s.stats,
		stored:     make(map[string]struct{}),
		throttler:  s.throttler,
		cluster:    newClusterState(opts.Cluster, m),
	}
	if cs, ok := opts.Cluster.(ClusterSessions); ok {
		s.hook.claim = func(cl *mqtt.Client, pk packets.Packet) (byte, string) { return s.claimSession(cs, cl, pk) }
		s.hook.claimLog = newLogLimit(10, time.Minute, nil)
	}
	if err := m.AddHook(s.hook, nil); err != nil {
		s.abort()
		return nil, fmt.Errorf("add broker hook: %w", err)
	}
	if err := s.restore(); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// sysVersion is what $SYS/broker/version says for version.
func sysVersion(version string) string {
	if version == "" {
		version = "dev"
	}
	return "propolis " + version
}

// mochiOptions translates the configuration into mochi's options.
func mochiOptions(cfg *config.Config, log *slog.Logger) *mqtt.Options {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(cfg.MQTT.MaxPacketSize)
	caps.MaximumSessionExpiryInterval = uint32(min(time.Duration(cfg.MQTT.MaxSessionExpiry)/time.Second, math.MaxUint32))
	// Message expiry is set by the hook (mochi's own cap also purges retained
	// messages and would reorder queues; see hook.OnPublish).
	caps.MaximumMessageExpiryInterval = 0
	caps.ReceiveMaximum = uint16(cfg.MQTT.ReceiveMaximum)
	caps.MaximumInflight = uint16(cfg.MQTT.MaxQueuedMessages)
	if cfg.MQTT.MaxClients > 0 {
		caps.MaximumClients = int64(cfg.MQTT.MaxClients)
	}
	// PUBACK, PUBREC, PUBREL and PUBCOMP carry only their own reason and
	// properties; mochi otherwise copies those of the packet they answer.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// mochi's default of 8192 pending writes costs ~64 KiB per connection.
	caps.MaximumClientWritesPending = 1024
	return &mqtt.Options{
		Capabilities: caps,
		Logger:       log,
		InlineClient: true, // used to re-publish pending messages at start-up
	}
}

// wrapConn wraps an accepted connection so that writes to it never block
// the writer (outConn): guardedListener.Serve calls it for every connection.
func (s *Server) wrapConn(c net.Conn) net.Conn {
	m := &s.cfg.Load().MQTT
	oc := newOutConn(c, time.Duration(m.WriteTimeout), int(m.MaxOutboundBuffer), s.slowConsumer)
	oc.stats = s.stats
	if now := s.heldClock.Load(); now != nil {
		oc.now = *now
	}
	return oc
}

// slowConsumer counts and logs, once per connection, a client disconnected
// because it did not take what was sent to it (outConn calls it on the
// goroutine that found out: the client's own writer, mochi's WriteLoop or
// reader, holding the client's mutex, or the connection's flusher); it only
// logs and counts.
func (s *Server) slowConsumer(c *outConn, err error) {
	s.slow.Add(1)
	s.log.Warn("slow consumer disconnected", "client", c.client(), "remote", c.RemoteAddr().String(), "error", err)
}

// Start opens the listeners for clients. Without a security extension it
// logs, loudly, that every client will be refused.
func (s *Server) Start() error {
	var names []string
	if a := s.hook.ext.Authenticator; a != nil {
		names = a.SecurityExtensions()
	}
	if len(names) == 0 {
		for _, line := range noSecurityBanner {
			s.log.Warn(line)
		}
	} else {
		s.log.Info("security extensions", "extensions", strings.Join(names, ","))
	}
	s.reportRestoredShared() // before any client: see clustershared.go
	if err := s.mochi.Serve(); err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	s.startedAt.Store(time.Now().UnixNano())
	s.started.Store(true)
	for _, l := range s.listeners {
		s.log.Info("listening", "listener", l.ID(), "type", l.Protocol(), "address", l.Address())
	}
	s.startSampling()
	return nil
}

var noSecurityBanner = []string{
	"################################################################",
	"#  NO SECURITY EXTENSION IS LOADED                             #",
	"#  Every client will be refused (CONNACK 0x87 / 3.1.1: 0x05).  #",
	"#  Add one to the extensions folder, e.g. allow-all to try.    #",
	"################################################################",
}

// Addr returns the address the named listener is bound to (useful with
// port 0), or "" when there is no such listener.
func (s *Server) Addr(name string) string {
	for _, l := range s.listeners {
		if l.ID() == name {
			return l.Address()
		}
	}
	return ""
}

// Close stops accepting, disconnects every client (MQTT 5: reason 0x8B),
// waits up to five seconds for their sessions to be saved, then flushes and
// closes the store.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.hook.closed.Store(true)
		close(s.stopSampling)
		s.sampling.Wait()
		_ = s.mochi.Close()
		done := make(chan struct{})
		go func() {
			s.mochi.Listeners.ClientsWg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.log.Warn("clients still disconnecting after 5s; closing the store anyway")
		}
		s.hook.sec.stop()
		s.storeClosed.Store(true)
		if err := s.persist.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// closeListeners releases bound sockets when New fails.
func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close(func(string) {})
	}
}

// abort undoes a New that failed after opening the store.
func (s *Server) abort() {
	s.closeListeners()
	_ = s.persist.Close()
}

// closePersistence closes a Persistence given in Options when New fails
// before the Server holds it (nil: nothing to close).
func closePersistence(p Persistence) {
	if p != nil {
		_ = p.Close()
	}
}
