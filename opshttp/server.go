// Package opshttp is the operator's HTTP endpoint (configuration section
// http): a small server for the handlers the operator's tools read, bound
// once at start. Routes mounts /metrics, /healthz and /readyz on a mux;
// later features (the admin API, a web UI) mount theirs on the same mux.
//
// Lifecycle, as `propolis serve` (cmd/propolis/ops.go) uses it:
//
//  1. Listen binds http.address (with http.tls) before the broker opens
//     its store, so that an address in use is reported before the data
//     folder is touched;
//  2. Serve starts answering with the handler given, on its own goroutine,
//     as soon as the handlers can answer (/readyz says 503 until the
//     broker is ready);
//  3. Close stops accepting, lets requests in progress end within the
//     context's deadline, then closes what is left.
//
// Read first: this file, then routes.go.
package opshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// Timeouts of every connection, against clients that hold one open
// without finishing a request (the endpoint's port is often reachable by
// more than the scraper). A handler that needs longer to write (a stream)
// extends its own deadline with http.ResponseController.
const (
	// ReadHeaderTimeout bounds the reading of a request's headers.
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds the reading of a whole request, body included.
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds the time from the end of the request headers to
	// the end of the response; a scrape of the whole registry takes
	// milliseconds.
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes a kept-alive connection left idle this long
	// (Prometheus keeps its connection between scrapes, 15s apart by
	// default).
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes caps a request's headers.
	MaxHeaderBytes = 16 << 10
)

// ErrListen wraps a failure to bind http.address (for example, the port
// is in use); the error names the key and the address.
var ErrListen = errors.New("bind http.address")

// Server is the operator's HTTP endpoint. Its methods are safe for
// concurrent use.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
	tls  bool
	once sync.Once
	done chan struct{} // closed when the serving goroutine ends
	err  error         // what it ended with, other than http.ErrServerClosed
}

// Listen binds cfg.Address, with TLS when cfg.TLS is set (its files read
// now, through config.TLS.ServerConfig), and returns a Server that
// answers nothing until Serve. cfg must be valid (config.Validate) and
// cfg.Address not "" (the endpoint off). log receives the server's own
// errors (a failed TLS handshake, at debug) and nil means slog.Default().
func Listen(cfg config.HTTP, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Address == "" {
		return nil, errors.New("http.address is empty: the HTTP endpoint is off")
	}
	var tlsConf *tls.Config
	if cfg.TLS != nil {
		var err error
		if tlsConf, err = cfg.TLS.ServerConfig(); err != nil {
			return nil, fmt.Errorf("http.tls: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrListen, cfg.Address, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	return &Server{ln: ln, log: log, tls: tlsConf != nil, done: make(chan struct{})}, nil
}

// Addr returns the address the server is bound to (with port 0, the port
// picked), such as "127.0.0.1:9090".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the server's base URL, such as "http://127.0.0.1:9090" or
// "https://..." with TLS.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Serve answers requests with h on a goroutine of its own until Close; a
// second call does nothing. h is typically Routes' mux.
func (s *Server) Serve(h http.Handler) {
	s.once.Do(func() {
		s.srv = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      WriteTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		go func() {
			defer close(s.done)
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				s.err = fmt.Errorf("http endpoint %s: %w", s.Addr(), err)
			}
		}()
	})
}

// Close stops accepting, waits for the requests in progress until ctx is
// done, then closes every connection left. It returns the error Serve
// ended with, if it ended on its own (nil after a clean shutdown). Close
// on a Server never served releases its socket.
func (s *Server) Close(ctx context.Context) error {
	s.once.Do(func() {}) // no Serve after Close; and a Serve running has set srv
	if s.srv == nil {
		return s.ln.Close()
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return s.err
}
