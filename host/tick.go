package host

import (
	"context"
	"fmt"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// Ticks (ABI.md section 3, "Tick"): an extension whose manifest sets tick
// gets propolis_tick called every interval, on a goroutine of its own, so
// calls never overlap; a call still running when the next tick is due
// makes that one skipped. Host.start starts the ticks once the extension
// is in service, after stopping those of the version it replaces, so two
// versions never tick at once; stop ends them.

// tickBit is propolis_tick's declare_callbacks bit.
var tickBit = abi.Callbacks[abi.CallbackTick].Bit

// checkTick refuses a manifest tick the module cannot honour, and warns
// about a tick export no manifest tick will call. loadExtension calls it
// once the first instance has declared its callbacks.
func (e *extension) checkTick() error {
	every := time.Duration(e.manifest.Tick)
	switch {
	case every > 0 && !e.has(tickBit):
		return fmt.Errorf("manifest tick %v: the module does not export %s (or did not declare it with declare_callbacks)",
			e.manifest.Tick, abi.Callbacks[abi.CallbackTick].Export)
	case every == 0 && e.has(tickBit):
		e.log.Warn("module has a tick callback but its manifest sets no tick: it is never called",
			"callback", abi.Callbacks[abi.CallbackTick].Export)
		e.callbacks &^= tickBit
	}
	return nil
}

// startTicks starts calling propolis_tick every manifest tick, when the
// manifest sets one. Called once, by Host.start.
func (e *extension) startTicks() {
	every := time.Duration(e.manifest.Tick)
	if every <= 0 || !e.has(tickBit) {
		return
	}
	e.tickQuit, e.tickDone = make(chan struct{}), make(chan struct{})
	go e.tickLoop(every)
}

// stopTicks ends the ticks and waits for a tick in progress (bounded by
// the call deadline). Safe to call more than once, and without ticks.
func (e *extension) stopTicks() {
	if e.tickQuit == nil {
		return
	}
	e.tickStop.Do(func() { close(e.tickQuit) })
	<-e.tickDone
}

// tickLoop calls propolis_tick at every tick of a ticker until stopTicks.
// A tick that came due while a call ran is dropped (counted in skipped),
// not run late: the time.Ticker buffers one.
func (e *extension) tickLoop(every time.Duration) {
	defer close(e.tickDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-e.tickQuit:
			return
		}
		_, _ = e.host.invoke(context.Background(), e, abi.CallbackTick, nil)
		select {
		case <-t.C:
			e.ticksSkipped.Add(1)
		default:
		}
	}
}
