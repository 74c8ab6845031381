package broker

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// This file is the ConnectionAttributes service: small values an extension
// keeps per network connection, in memory only.
//
// A connection's attributes are one connAttrs, made by authenticateConnect
// when the CONNECT arrives (before the connection_start event and the
// Authenticator) and handed to extensions as a Conn: in Connect.Conn, kept
// by the ClientAuthorizer the Authenticator returns, and in every Event of
// the connection. On Allow the same connAttrs goes into the clientState,
// so what authenticate wrote is there for authorization and events; a
// refused CONNECT ends it after its auth_failed event, and OnDisconnect
// (dropState) after the disconnect event. Ended, it refuses writes but
// still answers reads, for the events of the connection that listeners
// handle later; it is freed once nothing refers to it.
//
// Attributes belong to the connection, not to the client id: a take-over
// makes a new connAttrs for the new connection, which never sees the old
// one's, and the old connection ending ends only its own.

// Limits of connection attributes.
const (
	// MaxConnectionAttributesLen bounds the attributes of one connection:
	// the sum of its keys' and values' lengths, in bytes. Keys and values
	// keep to MaxAttributeKeyLen and MaxAttributeValueLen.
	MaxConnectionAttributesLen = abi.MaxConnectionAttributes
)

// Conn names one network connection for ConnectionAttributes. The broker
// hands it out in Connect.Conn and Event.Conn; the zero Conn names no
// connection (an event without one). It is comparable and cheap to copy.
type Conn struct{ a *connAttrs }

// IsZero reports whether c names no connection.
func (c Conn) IsZero() bool { return c.a == nil }

// connAttrs are the attributes of one connection.
type connAttrs struct {
	mu    sync.Mutex
	m     map[string]Attribute
	size  int  // the sum of the keys' and values' lengths
	ended bool // the connection ended: writes are refused
}

// newConn makes the attributes of a new connection.
func newConn() Conn { return Conn{a: &connAttrs{}} }

// end marks the connection ended (see the top of this file). Safe to call
// more than once, and on the zero Conn.
func (c Conn) end() {
	if c.a == nil {
		return
	}
	c.a.mu.Lock()
	c.a.ended = true
	c.a.mu.Unlock()
}

// ConnectionAttributes keeps small values per network connection for
// extensions, in memory: an authenticator stashes what it learnt (an
// identity, a token's claims) for the authorizations and events of the same
// connection. They are gone when the connection ends, are never stored, and
// a take-over by a new connection of the same client id starts empty.
// Implemented by *Server in svc_connattrs.go. Every method reads or changes
// memory only, under a lock of that connection alone, and is safe for
// concurrent use from any goroutine.
//
// Every method fails with ErrNotConnected for the zero Conn. After the
// connection ended, reads still answer what it held then; writes fail with
// ErrNotConnected.
type ConnectionAttributes interface {
	// ConnectionAttribute returns the value of key, false when there is
	// none.
	ConnectionAttribute(c Conn, key string) ([]byte, bool, error)

	// ConnectionAttributes returns every attribute of the connection,
	// sorted by key, each with the time it was written.
	ConnectionAttributes(c Conn) ([]Attribute, error)

	// PutConnectionAttribute sets key to value, with the current time.
	// Errors also: ErrInvalidArgument (key empty, not UTF-8 or longer than
	// MaxAttributeKeyLen; value longer than MaxAttributeValueLen);
	// ErrTooLarge when the connection's attributes would exceed
	// MaxConnectionAttributesLen, and then nothing changed.
	PutConnectionAttribute(c Conn, key string, value []byte) error

	// DeleteConnectionAttribute removes key; a missing key is not an
	// error.
	DeleteConnectionAttribute(c Conn, key string) error
}

var _ ConnectionAttributes = (*Server)(nil)

// errNoConn is the error of a call on the zero Conn.
var errNoConn = fmt.Errorf("connection attributes: no connection: %w", ErrNotConnected)

// ConnectionAttribute implements ConnectionAttributes.
func (s *Server) ConnectionAttribute(c Conn, key string) ([]byte, bool, error) {
	if c.a == nil {
		return nil, false, errNoConn
	}
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	at, ok := c.a.m[key]
	if !ok {
		return nil, false, nil
	}
	return slices.Clone(at.Value), true, nil
}

// ConnectionAttributes implements ConnectionAttributes.
func (s *Server) ConnectionAttributes(c Conn) ([]Attribute, error) {
	if c.a == nil {
		return nil, errNoConn
	}
	c.a.mu.Lock()
	out := make([]Attribute, 0, len(c.a.m))
	for _, at := range c.a.m {
		out = append(out, Attribute{Key: at.Key, Value: slices.Clone(at.Value), Time: at.Time})
	}
	c.a.mu.Unlock()
	slices.SortFunc(out, func(a, b Attribute) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// PutConnectionAttribute implements ConnectionAttributes.
func (s *Server) PutConnectionAttribute(c Conn, key string, value []byte) error {
	if c.a == nil {
		return errNoConn
	}
	if err := checkAttribute(key, value); err != nil {
		return fmt.Errorf("put connection attribute %q: %w", key, err)
	}
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	if c.a.ended {
		return fmt.Errorf("put connection attribute %q: the connection ended: %w", key, ErrNotConnected)
	}
	size := c.a.size + len(key) + len(value)
	if old, ok := c.a.m[key]; ok {
		size -= len(old.Key) + len(old.Value)
	}
	if size > MaxConnectionAttributesLen {
		return fmt.Errorf("put connection attribute %q: %w: the connection's attributes would take %d bytes, at most %d",
			key, ErrTooLarge, size, MaxConnectionAttributesLen)
	}
	if c.a.m == nil {
		c.a.m = make(map[string]Attribute)
	}
	c.a.m[key] = Attribute{Key: key, Value: slices.Clone(value), Time: time.Now()}
	c.a.size = size
	return nil
}

// DeleteConnectionAttribute implements ConnectionAttributes.
func (s *Server) DeleteConnectionAttribute(c Conn, key string) error {
	if c.a == nil {
		return errNoConn
	}
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	if c.a.ended {
		return fmt.Errorf("delete connection attribute %q: the connection ended: %w", key, ErrNotConnected)
	}
	if old, ok := c.a.m[key]; ok {
		c.a.size -= len(old.Key) + len(old.Value)
		delete(c.a.m, key)
	}
	return nil
}
