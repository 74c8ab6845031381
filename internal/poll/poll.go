// Package poll is how the tests of this module wait for something to
// happen: a condition checked every few milliseconds until it holds, under
// one generous deadline. The deadline only stops a test that would
// otherwise hang; it is never what a test checks, so it is long enough for
// a loaded two-core machine running every package at once, under -race.
// Tests do not sleep to let something happen and do not assert how long
// anything took.
package poll

import (
	"testing"
	"time"
)

// Timeout is how long Until waits before failing the test. A test waiting
// for a message on a channel uses it as its deadline too.
const Timeout = 30 * time.Second

// Interval is the pause between two checks of a condition.
const Interval = 10 * time.Millisecond

// Until calls cond every Interval until it returns true, then logs how long
// that took (for the reader; nothing checks it). If Timeout passes first, it
// fails the test with "timed out after 30s waiting for <what>", so what
// names the awaited state: "client refused after DISABLED". cond runs on the
// caller's goroutine and may call t.Fatal.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	until(t, what, cond, Timeout)
}

// Settle calls check every Interval until it returns "" (nothing wrong),
// like Until; if Timeout passes first, it fails the test with what and the
// last thing check said was wrong, so a failure shows the state it stuck in.
func Settle(t testing.TB, what string, check func() (wrong string)) {
	t.Helper()
	settle(t, what, Timeout, func() (bool, string) {
		w := check()
		return w == "", w
	})
}

// Wait calls cond every Interval until it returns true or Timeout passes,
// and says which: Until for a goroutine other than the test's, which may
// not fail the test itself (it lets the test go on, for example, once a
// client it started has connected).
func Wait(cond func() bool) bool {
	return wait(cond, Timeout)
}

// wait is Wait with its time-out.
func wait(cond func() bool, timeout time.Duration) bool {
	for start := time.Now(); !cond(); time.Sleep(Interval) { // the poll interval
		if time.Since(start) > timeout {
			return false
		}
	}
	return true
}

func until(t testing.TB, what string, cond func() bool, timeout time.Duration) {
	t.Helper()
	settle(t, what, timeout, func() (bool, string) { return cond(), "" })
}

// settle is Until's and Settle's one loop: check says whether the state is
// reached and, if not, what is wrong ("" adds nothing to the failure).
func settle(t testing.TB, what string, timeout time.Duration, check func() (ok bool, wrong string)) {
	t.Helper()
	start := time.Now()
	for {
		ok, wrong := check()
		if ok {
			break
		}
		if time.Since(start) > timeout {
			if wrong != "" {
				wrong = ": " + wrong
			}
			t.Fatalf("timed out after %v waiting for %s%s", timeout, what, wrong)
		}
		time.Sleep(Interval) // the poll interval (the other sleeps of the tests pace loads)
	}
	t.Logf("waited %v for %s", time.Since(start).Round(time.Millisecond), what)
}
