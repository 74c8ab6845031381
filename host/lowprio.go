package host

import (
	"context"
	"runtime"
	"sync"
)

// This file runs the compilation of a module loaded while the broker
// already serves (a hot reload, an extension added or enabled at runtime)
// at a lower CPU priority than the broker, so that the clients served by
// the old version meanwhile do not lose their CPU to the compiler. The
// initial load (LoadAll) compiles at full speed on every CPU: clients wait
// for the security extensions then anyway. RATIONALE.md ("Why does a hot
// reload compile at a lower priority?") has the measurements.

// BackgroundNice is how much lower (in nice steps, Linux: 0 to 19) the
// thread compiling a module loaded at runtime runs than the broker. At 10
// the kernel weighs it about a tenth of a broker thread (CFS weights 110
// against 1024), so on a saturated machine a 2 s compilation takes about
// ten times as long, while the broker keeps about 95% of its CPU; on an
// idle CPU it runs at full speed. Elsewhere than Linux the compilation
// runs at normal priority, on one CPU.
const BackgroundNice = 10

// backgroundKey marks a context whose loads happen while the broker serves.
type backgroundKey struct{}

// inBackground returns ctx marked so that the modules loaded under it are
// compiled at low priority (runLowPriority). The watcher's scans after the
// initial one use it.
func inBackground(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// isBackground reports whether ctx was marked by inBackground.
func isBackground(ctx context.Context) bool {
	b, _ := ctx.Value(backgroundKey{}).(bool)
	return b
}

// compileAt runs compile, the compilation of one module, on the calling
// goroutine with every CPU (compileCtx) or, when ctx is a background one,
// at low priority (runLowPriority) on one CPU: wazero compiles on the
// goroutine it is called on when given one worker (its
// internal/engine/wazevo compileModule), so the thread's priority covers
// the whole compilation. It returns the niceness the compilation ran at
// (0 for full speed; what the kernel reports for the thread, so a
// priority that could not be lowered shows as 0).
func compileAt[T any](ctx context.Context, compile func(context.Context) (T, error)) (T, int, error) {
	if !isBackground(ctx) {
		v, err := compile(compileCtx(ctx))
		return v, 0, err
	}
	var (
		v    T
		err  error
		nice int
	)
	runLowPriority(BackgroundNice, func(n int) {
		nice = n
		v, err = compile(ctx) // one compilation worker: this goroutine
	})
	return v, nice, err
}

// runLowPriority runs fn on a new goroutine locked to its own OS thread
// whose priority is lowered by delta nice steps (lowerThreadPriority), and
// waits for it. fn gets the thread's niceness relative to the process's.
// The thread is never unlocked, so the Go runtime ends it when the
// goroutine returns: an unprivileged process cannot raise a thread's
// priority again, and a lowered thread must not go back to running other
// goroutines. For as long as fn runs, GOMAXPROCS is one higher (extraProc):
// the Go scheduler counts the low-priority thread as busy while it holds a
// P, also while the kernel makes it wait for a CPU, and the broker would
// otherwise have one P fewer. A panic in fn is raised again on the calling
// goroutine.
func runLowPriority(delta int, fn func(nice int)) {
	extraProc.add()
	defer extraProc.remove()
	if p := onLoweredThread(delta, fn, true); p != nil {
		panic(p)
	}
}

// onLoweredThread runs fn on a new goroutine locked to a thread lowered by
// delta nice steps, waits, and returns what fn panicked with. A thread it
// cannot lower goes back to the scheduler as it was. The process's main
// thread is never lowered (Go parks it for good rather than ending it, and
// its niceness is what ps and renice show for the whole broker): when the
// goroutine lands on it, it keeps it locked and, once only, tries again on
// another goroutine, which then runs on another thread.
func onLoweredThread(delta int, fn func(nice int), retry bool) (panicked any) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				panicked = p
			}
		}()
		runtime.LockOSThread() // never unlocked once lowered: the thread ends with the goroutine
		if isMainThread() && retry {
			defer runtime.UnlockOSThread()
			panicked = onLoweredThread(delta, fn, false)
			return
		}
		nice, lowered := lowerThreadPriority(delta)
		if !lowered {
			defer runtime.UnlockOSThread()
		}
		fn(nice)
	}()
	<-done
	return panicked
}

// extraProc raises GOMAXPROCS by one per running low-priority compilation
// and restores it when the last one ends.
var extraProc procs

// procs counts the extra Ps of the running low-priority compilations.
type procs struct {
	mu   sync.Mutex
	n    int // running low-priority compilations
	base int // GOMAXPROCS before the first of them
}

// add raises GOMAXPROCS by one.
func (p *procs) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		p.base = runtime.GOMAXPROCS(0)
	}
	p.n++
	runtime.GOMAXPROCS(p.base + p.n)
}

// remove lowers GOMAXPROCS by one; the last one restores the setting the
// first found: the Go runtime's default, which follows the CPU limit of
// the process (and stops doing so once the program sets a value), if that
// is what it was, else the value itself.
func (p *procs) remove() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n > 0 {
		runtime.GOMAXPROCS(p.base + p.n)
		return
	}
	runtime.SetDefaultGOMAXPROCS()
	if runtime.GOMAXPROCS(0) != p.base {
		runtime.GOMAXPROCS(p.base)
	}
}
