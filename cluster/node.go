// Package cluster makes a Propolis broker one node of a cluster built on an
// embedded NATS server with JetStream (docs/cluster.md): Start runs the
// server, with routes to the configured seeds and JetStream clustered over
// them, and the node registry (registry.go) tells every node who else runs,
// with which versions, extensions and stress level.
//
// A broker without a cluster section never calls Start: no NATS code runs,
// no goroutine is started and nothing is stored under <data_dir>/cluster.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/broker/store"
)

// DefaultReadyTimeout is Options.ReadyTimeout when zero.
const DefaultReadyTimeout = 30 * time.Second

// Options are what Start needs. Config and DataDir are required; the
// functions may be nil (the registry then reports zero or none) and are
// called from the heartbeat goroutine, so they must be safe for concurrent
// use.
type Options struct {
	// DataDir is the broker's data folder; JetStream stores under
	// <DataDir>/cluster/jetstream.
	DataDir string
	// Config is the cluster section (config.Cluster), validated.
	Config *config.Cluster
	// Version is this node's Propolis version, reported in the registry.
	Version string
	// Stress returns this node's stress level, 0 to 10.
	Stress func() float64
	// Extensions returns the extensions this node runs.
	Extensions func() []ExtensionInfo
	// Clients returns the number of clients connected to this node.
	Clients func() int
	// Extension enables or disables an extension in this node's own
	// extensions folder when another node (or this one) asks, through
	// SetExtension (control.go); nil: the node takes no such request, and
	// the requesting node reports it.
	Extension ExtensionFunc
	// Logger receives the node's log and the NATS server's warnings and
	// errors; nil means slog.Default().
	Logger *slog.Logger
	// MaxPacketSize is the broker's mqtt.max_packet_size: the embedded
	// server's max_payload is set above it (natsMaxPayload). 0 means the
	// configuration's default.
	MaxPacketSize int64
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections and for JetStream to be usable. Default
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Node is this broker's place in the cluster: the embedded NATS server, an
// in-process connection to it and the registry heartbeat. Its methods are
// safe for concurrent use. Close ends it.
type Node struct {
	o      Options
	cfg    config.Cluster
	log    *slog.Logger
	srv    *server.Server
	nc     *nats.Conn
	jsx    jetstream.JetStream
	start  time.Time
	stop   chan struct{}
	done   chan struct{}
	closer sync.Once

	// raiseLog decides how raiseReplicas's failures are logged; only the
	// heartbeat goroutine uses it.
	raiseLog quietLog

	mu      sync.Mutex
	kv      jetstream.KeyValue   // the registry bucket, nil until created
	watch   jetstream.KeyWatcher // its watcher, nil until created
	seen    map[string]seen      // registry entries by node name
	problem string               // why the node is unhealthy, "" when it is not
	clash   string               // set when another node has this name: no more heartbeats
	// registryRead is set once the registry watch has delivered the
	// entries present when it started: the protocol gate (features.go)
	// keeps every feature off until then.
	registryRead bool
	// instance tells this run's registry entries from those of another
	// node with the same name (or of this node's previous run).
	instance string
	// router, owners and shared are the parts acting on messages,
	// client ids and shared subscriptions (cluster.go), nil until
	// StartRouting and UseBroker.
	router *router
	owners *owners
	shared *shared
	// control answers and sends the operator's requests to every node
	// (control.go); set by Start.
	control *control
	// interest makes new subscriptions known on the other nodes before
	// the SUBACK (interest.go); set by Start.
	interest *interest
	// sessions replicates persistent sessions (sessions.go), nil until
	// UseBroker.
	sessions *sessions
	// catchup replays what this node missed for its connected
	// subscribers (catchup.go), nil until UseBroker.
	catchup *catchUpper
	// attrs is the store of session attributes (attributeStore).
	attrs     *attributes
	attrsOnce sync.Once
	// routes caches the server's routes for reachable.
	routes routeNames
	// qos0Gate is FeatureQoS0Unstored for each QoS 0 forward.
	qos0Gate hotGate

	// registryWait replaces the constant registryWait when positive
	// (tests).
	registryWait time.Duration

	// featureMu serializes logFeatures; featureLast is the state of each
	// feature it logged last, by name.
	featureMu   sync.Mutex
	featureLast map[string]FeatureStatus
}

// ErrNotReady is wrapped by Start's error when the embedded server does not
// accept connections within Options.ReadyTimeout.
var ErrNotReady = errors.New("cluster node not ready")

// Start runs the embedded NATS server of this node, connects to it in
// process and starts the registry heartbeat. It returns once the server
// accepts connections and JetStream answers, or when Options.ReadyTimeout
// (or ctx) ends the wait: a server that is up but whose JetStream has no
// quorum (the other nodes are not reachable yet) is returned all the same,
// and Status reports it unhealthy until quorum comes. An error means the
// server could not start (a bad option, the route address in use, a data
// folder that cannot be written); nothing is left running then.
func Start(ctx context.Context, o Options) (*Node, error) {
	if o.Config == nil {
		return nil, errors.New("cluster: no cluster section")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	cfg := *o.Config
	log := o.Logger.With("node", cfg.Name)
	opts, err := serverOptions(&cfg, o.DataDir)
	if err != nil {
		return nil, err
	}
	opts.MaxPayload = natsMaxPayload(o.MaxPacketSize)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster node %s: %w", cfg.Name, err)
	}
	nlog := &natsLog{log: log}
	srv.SetLoggerV2(nlog, false, false, false)
	go srv.Start()
	n := &Node{qos0Gate: hotGate{f: FeatureQoS0Unstored}, o: o, cfg: cfg, log: log, srv: srv, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}), instance: newInstance(),
		seen: map[string]seen{}}
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if fatal := nlog.lastFatal(); fatal != "" {
			return nil, fmt.Errorf("cluster node %s: %w: %s", cfg.Name, ErrNotReady, fatal)
		}
		return nil, fmt.Errorf("cluster node %s: %w: the NATS server did not accept connections within %s",
			cfg.Name, ErrNotReady, o.ReadyTimeout)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("propolis-"+cfg.Name), nats.MaxReconnects(-1), nats.ClosedHandler(n.connClosed), nats.DisconnectErrHandler(n.connLost))
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("cluster node %s: connect in process: %w", cfg.Name, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("cluster node %s: jetstream: %w", cfg.Name, err)
	}
	n.nc, n.jsx = nc, js
	n.interest = newInterest(interestOptions{Conn: nc, Peers: n.otherAlive, Log: log})
	// Control requests are answered before the first heartbeat: a node
	// the others see alive takes them.
	if n.control, err = newControl(controlOptions{Conn: nc, Node: cfg.Name, Log: log, Extension: o.Extension}); err != nil {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("cluster node %s: %w", cfg.Name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	err = n.waitJetStream(wctx)
	cancel()
	if err != nil {
		n.setProblem("jetstream not ready: " + err.Error())
		log.Warn("cluster node serving without jetstream quorum; status reports it unhealthy until the other nodes are reached",
			"error", err, "seeds", cfg.Seeds, "waited", o.ReadyTimeout)
	} else if err := n.ensureRegistry(ctx); err != nil {
		n.setProblem(err.Error())
		log.Warn("cluster registry not ready", "error", err)
	} else if err := n.checkClash(ctx); errors.Is(err, ErrNameClash) {
		n.nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("cluster node %s: %w", cfg.Name, err)
	} else {
		n.heartbeat(ctx)
	}
	go n.heartbeats()
	if len(opts.Routes) == 0 {
		log.Warn("cluster node has no seed but itself: JetStream runs on this node alone, its route listener is not opened "+
			"and no other node can join it; list the other nodes in cluster.seeds", "seeds", cfg.Seeds)
		log.Info("cluster node started alone", "cluster", cfg.ClusterName, "replicas", n.Replicas())
		return n, nil
	}
	// replicas is the factor in force now: a node that starts before it
	// has heard of every JetStream peer counts fewer (the third node of a
	// fresh cluster may log 2). configured_replicas and jetstream_peers
	// say so; buckets are raised as nodes join (docs/cluster.md).
	log.Info("cluster node started", "listen", n.RouteAddr(), "seeds", cfg.Seeds, "cluster", cfg.ClusterName,
		"replicas", n.Replicas(), "configured_replicas", cfg.Replicas, "jetstream_peers", n.metaSize())
	return n, nil
}

// serverOptions turns the cluster section into the embedded server's
// options. Seeds naming this node's own listener are dropped. A node left
// without seeds runs JetStream alone: NATS's clustered JetStream needs a
// route to another server before its Raft groups run, so the route
// listener is not opened and no other node can join this one (replicas in
// force 1). A route listener on port 0 is given a free port first, so that
// RouteAddr can name it.
func serverOptions(cfg *config.Cluster, dataDir string) (*server.Options, error) {
	host, p, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen: %w", err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen: port %q: %w", p, err)
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		// The client listener serves this process only (the broker
		// connects in process); it stays open because a server that does
		// not listen for clients never forms a cluster.
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  filepath.Join(dataDir, store.ClusterDir, "jetstream"),
	}
	var routes []*url.URL
	for _, s := range cfg.Seeds {
		if !isSelf(s, host, port) {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: s})
		}
	}
	if len(routes) == 0 {
		return opts, nil
	}
	if port == 0 {
		if port, err = freePort(host); err != nil {
			return nil, fmt.Errorf("cluster.listen %s: %w", cfg.Listen, err)
		}
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
	opts.Routes = routes
	return opts, nil
}

// isSelf reports whether seed names the route listener host:port of this
// node: the same port, and the same host or a loopback name for a
// listener on a loopback or wildcard host. (Another name for this machine
// is not recognized; NATS then drops the route to itself, and the node
// waits for the other seeds.)
func isSelf(seed, host string, port int) bool {
	h, p, err := net.SplitHostPort(seed)
	if err != nil || p != strconv.Itoa(port) || port == 0 {
		return false
	}
	if strings.EqualFold(h, host) {
		return true
	}
	local := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || strings.EqualFold(h, "localhost") || ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
	}
	return local(h) && local(host)
}

// freePort returns a port free on host now (another process may take it
// before the server binds it; the server then fails to start, naming it).
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitJetStream polls until JetStream answers an account info request
// (which needs a meta-group leader) or ctx ends.
func (n *Node) waitJetStream(ctx context.Context) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.jsx.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last answer: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close stops the heartbeat, removes this node from the registry, closes
// the connection and shuts the embedded server down. The broker calls it
// after its own Close; calling it again does nothing.
func (n *Node) Close() {
	n.closer.Do(func() {
		n.control.close()
		n.closeParts()
		close(n.stop)
		<-n.done
		if kv := n.bucket(); kv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = kv.Delete(ctx, n.cfg.Name) // the others see it gone at once, not after the TTL
			cancel()
		}
		n.nc.Close()
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.log.Info("cluster node stopped")
	})
}

// Name returns this node's name (cluster.name).
func (n *Node) Name() string { return n.cfg.Name }

// RouteAddr returns host:port of this node's route listener, the port
// chosen when cluster.listen gave 0.
func (n *Node) RouteAddr() string {
	if a := n.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return n.cfg.Listen
}

// Replicas returns the replication factor in force: cluster.replicas
// capped by the number of nodes in the JetStream meta group, at least 1.
func (n *Node) Replicas() int {
	r := n.cfg.Replicas
	if size := n.metaSize(); size < r {
		r = size
	}
	return max(r, 1)
}

// metaSize returns the number of servers in the JetStream meta group as
// this node knows it, at least 1.
func (n *Node) metaSize() int {
	info, err := n.srv.Jsz(&server.JSzOptions{})
	if err != nil || info.Meta == nil {
		return 1
	}
	return max(info.Meta.Size, len(info.Meta.Replicas)+1, 1)
}

// conn returns the in-process connection the cluster code publishes on.
func (n *Node) conn() *nats.Conn { return n.nc }

// js returns the JetStream API over conn.
func (n *Node) js() jetstream.JetStream { return n.jsx }

// setProblem records why the node is unhealthy ("" when it is not).
func (n *Node) setProblem(p string) {
	n.mu.Lock()
	n.problem = p
	n.mu.Unlock()
}

// natsLog bridges the embedded server's log to slog: warnings and errors
// only (notices, debug and trace are dropped), under the key "nats". It
// keeps the last fatal error, which Start reports when the server does not
// come up.
type natsLog struct {
	log   *slog.Logger
	mu    sync.Mutex
	fatal string
	// last is when each format string was last logged: a line NATS
	// repeats (a route it cannot reach, every second per seed; "waiting
	// for routing" every 2 s) is logged once per natsRepeat, with how
	// many were left out.
	last    map[string]time.Time
	skipped map[string]int
}

// natsRepeat is how often one of the NATS server's repeated lines is
// logged.
const natsRepeat = 30 * time.Second

// pass reports whether a line of format may be logged now, and how many
// of its lines were left out since the last one.
func (l *natsLog) pass(format string) (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.skipped = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := l.last[format]; ok && now.Sub(t) < natsRepeat {
		l.skipped[format]++
		return false, 0
	}
	l.last[format] = now
	n := l.skipped[format]
	l.skipped[format] = 0
	return true, n
}

// lastFatal returns the last fatal error logged, or "".
func (l *natsLog) lastFatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

var _ server.Logger = (*natsLog)(nil)

// Noticef drops a notice.
func (l *natsLog) Noticef(string, ...any) {}

// Warnf logs a warning.
func (l *natsLog) Warnf(format string, v ...any) {
	if ok, left := l.pass(format); ok {
		l.log.Warn("nats server", "nats", fmt.Sprintf(format, v...), "same_lines_left_out", left)
	}
}

// Fatalf logs a fatal error; the server shuts itself down after it.
func (l *natsLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.fatal = msg
	l.mu.Unlock()
	l.log.Error("nats server fatal", "nats", msg)
}

// Errorf logs an error.
func (l *natsLog) Errorf(format string, v ...any) {
	if ok, left := l.pass(format); ok {
		l.log.Error("nats server", "nats", fmt.Sprintf(format, v...), "same_lines_left_out", left)
	}
}

// Debugf drops a debug line.
func (l *natsLog) Debugf(string, ...any) {}

// Tracef drops a trace line.
func (l *natsLog) Tracef(string, ...any) {}
