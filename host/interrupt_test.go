package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/propolis-mqtt/propolis/broker"
)

// TestInstrumentCompiles rewrites every committed fixture that wazero
// compiles, and a Go guest, and checks that the result still compiles,
// exports the interrupt global, and keeps the module's own exports.
func TestInstrumentCompiles(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "testdata", "wasm", "*", "*.wasm"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	paths = append(paths, buildGuest(t, "testdata/guests", "bench"))
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			bin, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			orig, err := rt.CompileModule(ctx, bin)
			if err != nil {
				if _, ierr := instrument(bin); ierr == nil && strings.Contains(p, "garbage") {
					t.Fatalf("instrument accepted %s, which wazero refuses: %v", p, err)
				}
				return // a fixture wazero refuses (garbage): nothing to keep
			}
			out, err := instrument(bin)
			if err != nil && strings.Contains(p, "start_section") {
				return // left to wazero's guard (TestStartSectionIsBounded)
			}
			if err != nil {
				t.Fatalf("instrument: %v", err)
			}
			c, err := rt.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("compile instrumented: %v", err)
			}
			for name := range orig.ExportedFunctions() {
				if _, ok := c.ExportedFunctions()[name]; !ok {
					t.Errorf("export %s lost", name)
				}
			}
		})
	}
}

// spinModule is a guest whose "spin" calls env.tick once, then loops
// forever without leaving native code.
const spinModule = "\x00asm\x01\x00\x00\x00" +
	"\x01\x04\x01\x60\x00\x00" + // type 0: [] -> []
	"\x02\x0c\x01\x03env\x04tick\x00\x00" + // import env.tick: func 0
	"\x03\x02\x01\x00" + // func 1: type 0
	"\x05\x03\x01\x00\x01" + // memory 0: 1 page
	"\x07\x08\x01\x04spin\x00\x01" + // export "spin" = func 1
	"\x0a\x0b\x01\x09\x00\x10\x00\x03\x40\x0c\x00\x0b\x0b" // (call 0) (loop (br 0))

// TestInterruptStopsSpin runs an endless loop, checks that a garbage
// collection (which stops the world, and cannot preempt native code) still
// completes while it spins, then stops it by setting the interrupt global
// from another goroutine, as the watchdog does.
func TestInterruptStopsSpin(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	running := make(chan struct{})
	var ticks int
	_, err := rt.NewHostModuleBuilder("env").NewFunctionBuilder().WithFunc(func() {
		if ticks++; ticks == 1 {
			close(running)
		}
	}).Export("tick").Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := instrument([]byte(spinModule))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	if !ok {
		t.Fatalf("export %s: missing or immutable", interruptExport)
	}
	done := make(chan error, 1)
	go func() { _, err := mod.ExportedFunction("spin").Call(ctx); done <- err }()
	select {
	case <-running:
	case err := <-done:
		t.Fatalf("spin returned before the interrupt: %v", err)
	}
	runtime.GC() // hangs for good if the guest never exits to Go
	g.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("spin ended with %v, want the unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("spin not stopped 10 s after the interrupt")
	}
}

// TestInterruptStopsGoGuest checks a Go guest (every Go function is a Wasm
// loop) still runs with the checks, and stops with the global set.
func TestInterruptStopsGoGuest(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	bin, err := os.ReadFile(buildGuest(t, "testdata/guests", "bench"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The guest imports propolis_v1; leave those imports out of this test
	// by instantiating only what it needs to start: give it stubs.
	b := rt.NewHostModuleBuilder("propolis_v1")
	c, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != "propolis_v1" {
			continue
		}
		n := len(f.ResultTypes())
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			if n > 0 {
				stack[0] = 0
			}
		}), f.ParamTypes(), f.ResultTypes()).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	mod, err := rt.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatalf("instantiate (runs _initialize through the checks): %v", err)
	}
	g := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	marker := mod.ExportedFunction("propolis_abi_v1")
	if _, err := marker.Call(ctx); err != nil {
		t.Fatalf("call before the interrupt: %v", err)
	}
	g.Set(1)
	// The guest looks at the global at every function entry: the next
	// call traps.
	if _, err = marker.Call(ctx); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("call with the interrupt set: %v, want the unreachable trap", err)
	}
}

// TestInstrumentKeepsSemantics runs testdata/wasm/rewrite/edge.wasm (every
// kind of instruction the rewrite reads, bulk ones included) with and
// without the rewrite: same answer.
func TestInstrumentKeepsSemantics(t *testing.T) {
	bin, err := os.ReadFile(filepath.Join("..", "testdata", "wasm", "rewrite", "edge.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := instrument(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, runtimeConfig())
	defer rt.Close(ctx)
	for i, b := range [][]byte{bin, out} {
		m, err := rt.Instantiate(ctx, b)
		if err != nil {
			t.Fatalf("module %d: %v", i, err)
		}
		res, err := m.ExportedFunction("f").Call(ctx, 5, 6)
		if err != nil || len(res) != 1 || res[0] != 13 {
			t.Fatalf("module %d (1: rewritten): f(5, 6) = %v, %v; want 13", i, res, err)
		}
		_ = m.Close(ctx)
	}
}

// TestInstrumentPlacesChecks checks where the rewrite puts its code in a
// body: the check at the entry and after a loop's block type, the fuel
// charge after each bulk instruction (so that a loop of large
// memory.fill exits to Go every fuelTicks/bulkFuel fills), nothing
// elsewhere.
func TestInstrumentPlacesChecks(t *testing.T) {
	const (
		locals = "\x00"
		loop   = "\x03\x40"
		fill   = "\x41\x00\x41\x00\x41\x01\xfc\x0b\x00"     // memory.fill 0 0 1
		cp     = "\x41\x00\x41\x00\x41\x01\xfc\x0a\x00\x00" // memory.copy 0 0 1
		tail   = "\x20\x00\x0d\x00\x0b\x0b"                 // br_if 0 (local.get 0), end, end
	)
	check, bulk := string(fuelCheck(1, 2)), string(bulkCharge(2))
	got, err := instrumentBody(nil, []byte(locals+loop+fill+cp+tail), []byte(check), []byte(bulk))
	if err != nil {
		t.Fatal(err)
	}
	if want := locals + check + loop + check + fill + bulk + cp + bulk + tail; string(got) != want {
		t.Fatalf("rewritten body\n got % x\nwant % x", got, want)
	}
}

// TestInstrumentRefuses lists modules the rewrite leaves to wazero's
// guard, with the reason.
func TestInstrumentRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, bin, want string
	}{
		{"not wasm", "hello", "not a WebAssembly 1.0 binary"},
		{"truncated section", "\x00asm\x01\x00\x00\x00\x01\x10\x01", "section 1: unexpected end"},
		{"export name taken", "\x00asm\x01\x00\x00\x00" +
			"\x06\x06\x01\x7f\x00\x41\x00\x0b" + // global 0: i32 const 0
			"\x07\x16\x01\x12propolis.interrupt\x03\x00", `export "propolis.interrupt" exists`},
		{"no memory", "\x00asm\x01\x00\x00\x00" +
			"\x01\x04\x01\x60\x00\x00" + "\x03\x02\x01\x00" +
			"\x0a\x04\x01\x02\x00\x0b", "no memory"},
		{"start section", "\x00asm\x01\x00\x00\x00" +
			"\x01\x04\x01\x60\x00\x00" + "\x03\x02\x01\x00" + "\x05\x03\x01\x00\x01" +
			"\x08\x01\x00" + "\x0a\x04\x01\x02\x00\x0b", "start section (it runs before the interrupt can be set)"},
		{"unknown opcode", "\x00asm\x01\x00\x00\x00" +
			"\x01\x04\x01\x60\x00\x00" + "\x03\x02\x01\x00" + "\x05\x03\x01\x00\x01" +
			"\x0a\x05\x01\x03\x00\xff\x0b", "function body 0: instruction at body offset 1: opcode 0xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := instrument([]byte(tc.bin))
			if !errors.Is(err, errNotInstrumentable) {
				t.Fatalf("got %v, want errNotInstrumentable", err)
			}
			if want := "cannot add the interrupt check: " + tc.want; err.Error() != want {
				t.Fatalf("got %q\nwant %q", err, want)
			}
		})
	}
}

// TestGuardFallback loads a spinning module the rewrite refuses (it
// already exports the interrupt global's name): the extension still loads,
// with a warning, and a call that overruns its deadline is still stopped,
// by wazero's close-on-context-done.
func TestGuardFallback(t *testing.T) {
	bin, err := os.ReadFile(wasmFixture("error/spin"))
	if err != nil {
		t.Fatal(err)
	}
	taken, err := instrument(bin) // exports propolis.interrupt: refused next time
	if err != nil {
		t.Fatal(err)
	}
	if _, err := instrument(taken); err == nil {
		t.Fatal("a module exporting the interrupt global's name was instrumented")
	}
	path := filepath.Join(t.TempDir(), "taken.wasm")
	if err := os.WriteFile(path, taken, 0o644); err != nil {
		t.Fatal(err)
	}
	ext := t.TempDir()
	installExtension(t, ext, "spin", path, 0, "limits:\n  call_deadline: 20ms\n  pool_size: 1\n")
	h, logs := newTestHost(t, ext)
	if !strings.Contains(logs.String(), "module runs under wazero's slower deadline guard") {
		t.Fatalf("no fallback warning in the log:\n%s", logs.String())
	}
	res := h.Authenticate(context.Background(), connect("u", "p"))
	if res.Decision != broker.Deny || res.ReasonCode != 0x80 {
		t.Fatalf("answer %+v, want deny 0x80 (deadline, fail closed)", res)
	}
	if !strings.Contains(logs.String(), "call deadline exceeded") {
		t.Fatalf("no deadline in the log:\n%s", logs.String())
	}
}
