package broker

import (
	"sync"
	"time"
)

// logLimit bounds one kind of log line that a client can cause at will
// (protocol violations, refused CONNECTs, clients disconnected for a
// refusal), so that a flood cannot fill the disk: at most lines lines per
// interval are written one by one, the others are only counted. What was
// left out is told in one of two ways:
//
//   - with a summary function: once per interval that left lines out, on a
//     timer at the end of that interval (and at Server.Close), summary
//     gets the count, so the log says "N more" while the flood goes on;
//   - without one: take hands the count to the next line written.
//
// A logLimit is safe for concurrent use; every client goroutine reports
// its own lines.
type logLimit struct {
	lines    int
	interval time.Duration
	summary  func(n int) // nil: the count goes on the next line

	mu         sync.Mutex
	now        func() time.Time // time.Now; tests move it
	afterFunc  afterFunc        // realAfterFunc; tests fire the timer themselves
	window     time.Time        // start of the current interval
	logged     int              // lines written in the current interval
	suppressed int              // left out and not yet told
	stopTimer  func() bool      // cancels the pending summary, if any
}

// afterFunc arranges for f to run on its own goroutine after d, like
// time.AfterFunc; stop cancels it and reports whether it did so before f
// was started.
type afterFunc func(d time.Duration, f func()) (stop func() bool)

// realAfterFunc is time.AfterFunc.
func realAfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// newLogLimit returns a limit of lines per interval; summary may be nil
// (see logLimit).
func newLogLimit(lines int, interval time.Duration, summary func(n int)) *logLimit {
	return &logLimit{lines: lines, interval: interval, summary: summary, now: time.Now, afterFunc: realAfterFunc}
}

// take reports whether one more line may be written now. When it may not,
// the line is counted. suppressed is, without a summary function, how
// many lines were left out before this one (0 with one).
func (l *logLimit) take() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.window) >= l.interval {
		l.window, l.logged = now, 0
	}
	if l.logged >= l.lines {
		l.suppressed++
		if l.summary != nil && l.stopTimer == nil {
			l.stopTimer = l.afterFunc(l.window.Add(l.interval).Sub(now), l.flush)
		}
		return false, 0
	}
	l.logged++
	if l.summary != nil {
		return true, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// flush hands the count of lines left out to the summary function, if
// any were. The timer calls it at the end of an interval; stop calls it.
func (l *logLimit) flush() {
	l.mu.Lock()
	n := l.suppressed
	l.suppressed, l.stopTimer = 0, nil
	l.mu.Unlock()
	if n > 0 && l.summary != nil {
		l.summary(n)
	}
}

// stop cancels a pending summary and writes it now (Server.Close calls it,
// so that a count is not lost at shutdown).
func (l *logLimit) stop() {
	l.mu.Lock()
	stop := l.stopTimer
	l.mu.Unlock()
	if stop != nil && stop() {
		l.flush()
	}
}
