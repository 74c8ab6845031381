package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// newListener builds the listener a configuration entry describes. It does
// not bind: mochi's AddListener calls Init, which does.
// Every connection it accepts is wrapped by wrap (Server.wrapConn).
func newListener(lc config.Listener, connectTimeout func() time.Duration, m *mqtt.Server, log *slog.Logger, wrap func(net.Conn) net.Conn, ended func(net.Conn), viol *violations) (listeners.Listener, error) {
	var tlsConf *tls.Config
	if lc.TLS != nil {
		var err error
		if tlsConf, err = lc.TLS.ServerConfig(); err != nil {
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
	}
	var inner listeners.Listener
	switch lc.Type {
	case "tcp", "tls":
		inner = &tcpListener{name: lc.Name, address: lc.Address, tls: tlsConf, log: log}
	case "websocket":
		inner = &wsListener{name: lc.Name, address: lc.Address, path: lc.Path, tls: tlsConf, log: log}
	default:
		return nil, fmt.Errorf("listener %q: unknown type %q", lc.Name, lc.Type)
	}
	return &guardedListener{Listener: inner, kind: lc.Type, connectTimeout: connectTimeout, mochi: m, log: log, wrap: wrap, ended: ended, violations: viol}, nil
}

// guardedListener wraps a mochi listener: every accepted connection is
// wrapped so that writes to it never block (outConn) and gets a deadline for
// its CONNECT (mochi has none; it replaces the deadline with the
// keepalive once the CONNECT is read), establishment errors are logged
// with a message, or not at all for a refusal already answered (a protocol
// violation through violations, bounded and rate-limited), and closing
// disconnects the listener's clients without mochi's deadlock (see Close).
type guardedListener struct {
	listeners.Listener
	kind           string
	connectTimeout func() time.Duration // mqtt.connect_timeout in effect
	mochi          *mqtt.Server
	log            *slog.Logger
	wrap           func(net.Conn) net.Conn
	ended          func(net.Conn) // after a connection was served (Server.connEnded)
	violations     *violations
	// opened counts the connections accepted (Counters.ConnectionsOpened).
	opened atomic.Uint64

	// stopped is set when the accept loop (Serve) returns: the listener
	// was closed, or mochi's loop met an accept error (it never retries).
	// Server.Ready reads it.
	stopped atomic.Bool

	// live holds the connections being served, so that Close can end one
	// mochi no longer knows as a client (closeGrace).
	mu   sync.Mutex
	live map[net.Conn]struct{}
}

// closeGrace is how long Close lets the listener's clients end after
// their DISCONNECT before it closes the connections still open. mochi's
// Server.Close waits for every attached client's goroutines
// (ClientsWg) with no limit, and disconnects only the clients in its
// client map: a connection whose client left the map without its
// connection being closed (seen once, after a kick raced a reconnect)
// kept Close, and so the broker's shutdown, waiting for ever.
const closeGrace = 2 * time.Second

// Close closes the listener and disconnects its clients. mochi's own
// closer (Server.closeListenerClients, via Clients.GetByListener) takes the
// client map's read lock twice (GetByListener calls Len under its RLock); a
// client ending at that moment waits for the write lock (Clients.Delete)
// between the two, and the second RLock then waits for it: a deadlock that
// hung Server.Close. This closer reads the map under one read lock
// (Clients.GetAll) and disconnects the same clients the same way (MQTT 5:
// DISCONNECT 0x8B, server shutting down).
func (g *guardedListener) Close(mochiCloser listeners.CloseFn) {
	_ = mochiCloser // replaced, see above
	g.Listener.Close(func(id string) {
		for _, cl := range g.mochi.Clients.GetAll() {
			if cl.Net.Listener == id && !cl.Closed() {
				_ = g.mochi.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
		time.AfterFunc(closeGrace, g.closeLive)
	})
}

// closeLive closes the connections still being served closeGrace after
// Close.
func (g *guardedListener) closeLive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.live {
		g.log.Warn("closing a connection still open after shutdown began", "remote", c.RemoteAddr().String())
		_ = c.Close()
	}
}

// Protocol returns the configured listener type (tcp, tls or websocket).
func (g *guardedListener) Protocol() string { return g.kind }

// Serve accepts connections until the listener is closed.
func (g *guardedListener) Serve(establish listeners.EstablishFn) {
	defer g.stopped.Store(true)
	g.Listener.Serve(func(id string, c net.Conn) error {
		g.opened.Add(1)
		c = g.wrap(c)
		g.mu.Lock()
		if g.live == nil {
			g.live = map[net.Conn]struct{}{}
		}
		g.live[c] = struct{}{}
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			delete(g.live, c)
			g.mu.Unlock()
			if g.ended != nil {
				g.ended(c)
			}
		}()
		_ = c.SetDeadline(time.Now().Add(g.connectTimeout()))
		err := establish(id, c)
		if oc, ok := c.(*outConn); ok && oc.stats != nil {
			if cl := oc.accepted.Swap(nil); cl != nil {
				// Accepted, then mochi failed to write the CONNACK or to
				// resend the session's messages and returned without
				// OnDisconnect: count the end, or accepted - disconnects
				// would drift from the clients connected.
				oc.stats.countDisconnectKind(cl, err)
			}
		}
		remote := c.RemoteAddr().String()
		logged := g.violations.forget(remote) // mochi's record of the error became a violation line
		switch {
		case err == nil, errors.Is(err, errRefused), errors.Is(err, ErrSlowConsumer): // a slow consumer was logged at warn
		case errors.Is(err, packets.ErrRejectPacket): // the hook's OnPacketRead disconnected it, logged (seclog.go)
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, net.ErrClosed):
			g.log.Debug("connection closed", "listener", id, "remote", remote, "error", err)
		case logged:
		case isViolation(err):
			g.violations.report("", remote, id, err, "", -1)
		default:
			g.log.Info("connection ended", "listener", id, "remote", remote, "error", err)
		}
		return nil
	})
}

// wsListener serves MQTT over WebSocket on one HTTP path (mochi's own
// WebSocket listener answers on every path).
type wsListener struct {
	name, address, path string
	tls                 *tls.Config
	log                 *slog.Logger // for acceptRetry

	mu      sync.Mutex
	ln      net.Listener
	srv     *http.Server
	closing bool
}

var upgrader = websocket.Upgrader{
	Subprotocols: []string{"mqtt"},
	CheckOrigin:  func(*http.Request) bool { return true },
}

// ID returns the listener's name.
func (l *wsListener) ID() string { return l.name }

// Address returns the bound address once Init has run.
func (l *wsListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol returns "ws" or "wss".
func (l *wsListener) Protocol() string {
	if l.tls != nil {
		return "wss"
	}
	return "ws"
}

// Init binds the address.
func (l *wsListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	ln = newAcceptRetry(ln, l.name, l.log)
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	return nil
}

// Serve answers WebSocket upgrades on the configured path.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	mux := http.NewServeMux()
	mux.HandleFunc(l.path, func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader has answered the request
		}
		defer ws.Close()
		_ = establish(l.name, &wsConn{Conn: ws.NetConn(), ws: ws})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.srv = srv
	ln := l.ln
	l.mu.Unlock()
	_ = srv.Serve(ln)
}

// Close stops accepting, disconnects this listener's clients and closes
// the socket.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closing = true
	srv, ln := l.srv, l.ln
	l.mu.Unlock()
	closeClients(l.name)
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	} else if ln != nil {
		_ = ln.Close()
	}
}

// wsConn presents a WebSocket connection as a byte stream: MQTT packets
// travel in binary messages and may span or share messages.
type wsConn struct {
	net.Conn // the underlying connection: addresses and deadlines
	ws       *websocket.Conn
	r        io.Reader
	wmu      sync.Mutex
}

// NetConn returns the underlying connection (for TLS peer information).
func (c *wsConn) NetConn() any { return c.Conn }

// Read reads from the current binary message, moving to the next as each ends.
func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket: got a text message, MQTT needs binary")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetWriteDeadline sets the WebSocket's write deadline: gorilla sets the
// connection's write deadline to its own before each message, so one set
// on the connection alone would be lost.
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

// Close closes the WebSocket and its connection.
func (c *wsConn) Close() error { return c.ws.Close() }
