package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/passwd"
)

// openPTY opens a pseudo-terminal pair: the master (what a user types
// into and sees) and the terminal itself.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestPasswdTerminal: on a terminal, passwd prompts twice on stderr with
// echo off (nothing typed comes back), and restores echo after.
func TestPasswdTerminal(t *testing.T) {
	for _, tt := range []struct {
		name, first, second, err string
	}{
		{"same", "s3cret", "s3cret", ""},
		{"mismatch", "s3cret", "s3creT", "passwd: the passwords do not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			master, tty := openPTY(t)
			old := passwdStdin
			passwdStdin = tty
			defer func() { passwdStdin = old }()
			file := filepath.Join(t.TempDir(), "passwd")

			// Everything the terminal shows, read as it comes.
			var mu sync.Mutex
			var shown bytes.Buffer
			go func() {
				buf := make([]byte, 256)
				for {
					n, err := master.Read(buf)
					mu.Lock()
					shown.Write(buf[:n])
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
			var stderr lockedBuffer
			done := make(chan error, 1)
			go func() {
				done <- run([]string{"passwd", "-c", "--iterations", "1000", file, "alice"}, &bytes.Buffer{}, &stderr)
			}()
			echo := func() bool {
				tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
				return err == nil && tio.Lflag&unix.ECHO != 0
			}
			poll.Until(t, "the first prompt with echo off", func() bool { return stderr.String() == "Password: " && !echo() })
			if _, err := master.WriteString(tt.first + "\n"); err != nil {
				t.Fatal(err)
			}
			poll.Until(t, "the second prompt", func() bool { return strings.HasSuffix(stderr.String(), "Reenter password: ") })
			if _, err := master.WriteString(tt.second + "\n"); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(poll.Timeout):
				t.Fatal("passwd did not return")
			}
			if (err == nil && tt.err != "") || (err != nil && err.Error() != tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if !echo() {
				t.Error("echo left off")
			}
			mu.Lock()
			got := shown.String()
			mu.Unlock()
			if strings.Contains(got, "s3cre") {
				t.Errorf("the terminal echoed the password: %q", got)
			}
			if tt.err != "" {
				if _, err := os.Stat(file); !os.IsNotExist(err) {
					t.Errorf("file written after a mismatch: %v", err)
				}
				return
			}
			data, _ := os.ReadFile(file)
			_, users, perr := passwd.ParseFile(file, data)
			if perr != nil || !users["alice"].Hash.Verify([]byte(tt.first)) {
				t.Fatalf("file %q: %v", data, perr)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
