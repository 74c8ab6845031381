package broker

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/propolis-mqtt/propolis/internal/poll"
)

// failingAccepts is a real socket whose first n Accepts fail with err.
type failingAccepts struct {
	net.Listener
	n   atomic.Int32
	err error
}

func (f *failingAccepts) Accept() (net.Conn, error) {
	if f.n.Add(-1) >= 0 {
		return nil, f.err
	}
	return f.Listener.Accept()
}

// syncBuffer is a bytes.Buffer safe for the logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAcceptRetriesTemporaryErrors: a tcp listener whose socket fails
// five Accepts with EMFILE (out of file descriptors) logs it, keeps
// accepting, and serves the next connection (mochi's loop returned for
// good at the first error); closing it ends the loop.
func TestAcceptRetriesTemporaryErrors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			var logs syncBuffer
			l := &tcpListener{name: "tcp", address: "127.0.0.1:0", log: slog.New(slog.NewTextHandler(&logs, nil)),
				wrapSocket: func(ln net.Listener) net.Listener {
					f := &failingAccepts{Listener: ln, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}}
					f.n.Store(5)
					return f
				}}
			if err := l.Init(slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
				t.Fatal(err)
			}
			got := make(chan string, 1)
			served := make(chan struct{})
			go func() {
				defer close(served)
				l.Serve(func(id string, c net.Conn) error {
					got <- id
					return c.Close()
				})
			}()
			c, err := net.DialTimeout("tcp", l.Address(), poll.Timeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			poll.Until(t, "the connection served", func() bool { return len(got) == 1 })
			if s := logs.String(); !strings.Contains(s, "accept failed; retrying") || !strings.Contains(s, errno.Error()) ||
				strings.Count(s, "accept failed") != 3 {
				t.Errorf("want 3 warnings naming %q (rate-limited), got:\n%s", errno.Error(), s)
			}
			l.Close(func(string) {})
			poll.Until(t, "Serve returned after Close", func() bool {
				select {
				case <-served:
					return true
				default:
					return false
				}
			})
		})
	}
}
