package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// Accept retry. mochi's accept loops (listeners.TCP, listeners.Net) return
// on the first Accept error of any kind and never accept again, without a
// log line: one moment out of file descriptors (EMFILE) and a listener was
// dead until restart. Our listeners hand mochi a net.Listener whose Accept
// retries the errors that pass (acceptRetry), as net/http's server does.

// Backoff of a failing Accept: first, doubling to at most last.
const (
	acceptBackoffFirst = 5 * time.Millisecond
	acceptBackoffLast  = time.Second
)

// acceptRetry is a net.Listener whose Accept waits and retries on an error
// that passes (temporaryAccept), logging it at warn at most a few times a
// minute; any other error (the listener closed) is returned.
type acceptRetry struct {
	net.Listener
	name  string
	log   *slog.Logger
	limit *logLimit

	closeOnce sync.Once
	closed    chan struct{}
}

// newAcceptRetry wraps ln of the listener called name.
func newAcceptRetry(ln net.Listener, name string, log *slog.Logger) *acceptRetry {
	a := &acceptRetry{Listener: ln, name: name, log: log, closed: make(chan struct{})}
	a.limit = newLogLimit(3, time.Minute, func(n int) {
		a.log.Warn("more accept errors, retried", "listener", a.name, "count", n)
	})
	return a
}

// Accept returns the next connection, retrying errors that pass.
func (a *acceptRetry) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := a.Listener.Accept()
		if err == nil || !temporaryAccept(err) {
			return c, err
		}
		if delay == 0 {
			delay = acceptBackoffFirst
		} else {
			delay = min(2*delay, acceptBackoffLast)
		}
		if ok, _ := a.limit.take(); ok {
			a.log.Warn("accept failed; retrying", "listener", a.name, "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-a.closed:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the socket and ends a retry wait.
func (a *acceptRetry) Close() error {
	a.closeOnce.Do(func() { close(a.closed) })
	a.limit.stop()
	return a.Listener.Close()
}

// temporaryAccept says whether an Accept error may pass: the process or
// the system out of descriptors or buffers, a connection aborted before it
// was accepted, a timeout.
func temporaryAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// tcpListener is a tcp or tls listener: mochi's listeners.Net on a socket
// it binds itself, behind acceptRetry.
type tcpListener struct {
	name, address string
	tls           *tls.Config
	log           *slog.Logger
	// wrapSocket, in tests, wraps the bound socket under acceptRetry.
	wrapSocket func(net.Listener) net.Listener

	mu  sync.Mutex
	net *listeners.Net // set by Init
}

// ID returns the listener's name.
func (l *tcpListener) ID() string { return l.name }

// Address returns the bound address once Init has run.
func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.net != nil {
		return l.net.Address()
	}
	return l.address
}

// Protocol returns "tcp".
func (l *tcpListener) Protocol() string { return "tcp" }

// Init binds the address.
func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	if l.wrapSocket != nil {
		ln = l.wrapSocket(ln)
	}
	ln = newAcceptRetry(ln, l.name, l.log)
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	n := listeners.NewNet(l.name, ln)
	if err := n.Init(log); err != nil {
		_ = ln.Close()
		return err
	}
	l.mu.Lock()
	l.net = n
	l.mu.Unlock()
	return nil
}

// Serve accepts connections until Close.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	n := l.net
	l.mu.Unlock()
	if n != nil {
		n.Serve(establish)
	}
}

// Close stops accepting, disconnects this listener's clients and closes
// the socket.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	n := l.net
	l.mu.Unlock()
	if n != nil {
		n.Close(closeClients)
		return
	}
	closeClients(l.name)
}
