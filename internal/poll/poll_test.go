package poll

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fakeT records what until reports; Fatalf ends the goroutine like the
// real one.
type fakeT struct {
	testing.TB
	fatal, logs []string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = append(f.fatal, fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// run calls until on its own goroutine, as the testing package runs a test.
func run(cond func() bool, timeout time.Duration) *fakeT {
	f := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		until(f, "the door to open", cond, timeout)
	}()
	<-done
	return f
}

func TestUntil(t *testing.T) {
	t.Run("holds after a few checks", func(t *testing.T) {
		checks := 0
		f := run(func() bool { checks++; return checks == 3 }, time.Minute)
		if len(f.fatal) != 0 || checks != 3 || len(f.logs) != 1 {
			t.Fatalf("checks %d, fatal %q, logs %q", checks, f.fatal, f.logs)
		}
	})
	t.Run("never holds", func(t *testing.T) {
		f := run(func() bool { return false }, 50*time.Millisecond)
		want := []string{"timed out after 50ms waiting for the door to open"}
		if fmt.Sprint(f.fatal) != fmt.Sprint(want) {
			t.Fatalf("fatal %q, want %q", f.fatal, want)
		}
	})
}

// TestSettleNamesWhatIsWrong: a check that never settles fails with the
// last thing it said was wrong.
func TestSettleNamesWhatIsWrong(t *testing.T) {
	f := &fakeT{}
	done := make(chan struct{})
	checks := 0
	go func() {
		defer close(done)
		settle(f, "the door to open", 50*time.Millisecond, func() (bool, string) {
			checks++
			return false, fmt.Sprintf("still shut after %d checks", checks)
		})
	}()
	<-done
	want := fmt.Sprintf("timed out after 50ms waiting for the door to open: still shut after %d checks", checks)
	if len(f.fatal) != 1 || f.fatal[0] != want {
		t.Fatalf("fatal %q, want %q", f.fatal, want)
	}
}

// TestWait: Wait's loop says whether the condition came true, checking it
// until it does, and false once the time-out passes.
func TestWait(t *testing.T) {
	n := 0
	if !wait(func() bool { n++; return n == 3 }, time.Minute) || n != 3 {
		t.Errorf("a condition true at its third check: %d checks", n)
	}
	if wait(func() bool { return false }, 3*Interval) {
		t.Error("a condition never true: waited true")
	}
}
