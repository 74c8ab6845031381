package host

import (
	"context"
	"errors"
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

// errTickNotSet is checkTick's error for a module that declared
// propolis_tick under a manifest without tick.
var errTickNotSet = errors.New("manifest tick: not set")

// tickBit is propolis_tick's declare_callbacks bit.
var tickBit = abi.Callbacks[abi.CallbackTick].Bit

// checkTick refuses a manifest tick the module cannot honour, and a
// module that declared propolis_tick with declare_callbacks (the SDKs do
// when the author sets a tick handler) under a manifest without tick: it
// asked for ticks no one would give it, and the extension would silently
// skip its housekeeping. A module that only exports propolis_tick is
// loaded with a warning and never ticked. loadExtension calls it once the
// first instance has declared its callbacks, before any other instance
// starts, so the error is the same whatever the pool size.
//
// The tick bit stays in e.callbacks either way: later instances declare
// the same mask as the first, and declare_callbacks refuses bits outside
// e.callbacks; startTicks looks at the manifest's tick.
func (e *extension) checkTick() error {
	every := time.Duration(e.manifest.Tick)
	export := abi.Callbacks[abi.CallbackTick].Export
	switch {
	case every > 0 && !e.has(tickBit):
		return fmt.Errorf("manifest tick %v: the module does not export %s (or did not declare it with declare_callbacks)",
			e.manifest.Tick, export)
	case every == 0 && e.has(tickBit) && e.declared.declared:
		return fmt.Errorf("%w, but the module declares %s (a tick handler) and needs it called: add a tick interval to the manifest, e.g. \"tick: 10s\" (%v to %v)",
			errTickNotSet, export, minTick, maxTick)
	case every == 0 && e.has(tickBit):
		e.log.Warn("module exports a tick callback but its manifest sets no tick: it is never called",
			"callback", export)
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
