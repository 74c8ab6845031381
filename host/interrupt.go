package host

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// The call-deadline guard, as compiled into the guest.
//
// wazero stops a running guest only when its runtime is built with
// WithCloseOnContextDone, and that costs every call a goroutine and every
// loop iteration an exit from native code to Go (DESIGN.md section 4). So
// before compiling, the host rewrites a guarded module: it appends two
// mutable i32 globals, $halt (exported as interruptExport) and $fuel, and
// puts this check at the entry of every function and the head of every
// loop:
//
//	global.get $halt
//	if unreachable end       ;; halted: trap
//	global.get $fuel
//	i32.const 1
//	i32.sub
//	global.set $fuel
//	global.get $fuel
//	i32.const 0
//	i32.le_s
//	if                       ;; once every fuelTicks passes
//	  i32.const 0
//	  memory.grow            ;; grows nothing: an exit to Go
//	  drop
//	  i32.const fuelTicks
//	  global.set $fuel
//	end
//
// and, after every bulk memory or table instruction (memory.fill, copy
// and init, table.init, copy, grow and fill), which may take long on its
// own, subtracts bulkFuel from $fuel.
//
// An endless execution passes a loop head or a function entry again and
// again (or overflows the call stack, which traps). Setting $halt from
// another goroutine (the watchdog, instance.halt) stops the guest at the
// next one: one global load and branch each, so a halted guest does not
// go on calling host functions (a WASI sleep) or filling memory. Native
// code cannot be preempted by the Go scheduler, so the periodic exit to
// Go (memory.grow of 0 pages is one in wazero) is what lets a garbage
// collection stop the world while a guest runs, and with it the watchdog
// run at all; it costs about one exit per fuelTicks iterations (or per
// fuelTicks/bulkFuel bulk instructions) instead of one per iteration. The
// instance is discarded after a halt, so $halt is never reset.
//
// A module with a start section is not rewritten: its start function runs
// inside instantiation, before the host can reach $halt, so only wazero's
// guard (bounded by instantiateTimeout) can stop it.
//
// The rewrite reads the WebAssembly 2.0 binary format (the features the
// host's runtimes enable). A module it cannot rewrite (an instruction it
// does not know, no memory, an export already named interruptExport, a
// start section) keeps
// wazero's guard instead (extension.go), so it is never refused for this.

// fuelTicks is how many loop iterations and function entries a guest runs
// between two exits to Go.
const fuelTicks = 4096

// bulkFuel is what a bulk memory or table instruction costs in $fuel: a
// loop of large memory.fill exits to Go every fuelTicks/bulkFuel of them.
const bulkFuel = fuelTicks / 16

// interruptExport is the export name of the global the host adds. A guest
// cannot name its own exports' globals, so this is not part of the ABI:
// a module that already exports the name keeps wazero's guard.
const interruptExport = "propolis.interrupt"

// errNotInstrumentable marks a module instrument cannot rewrite.
var errNotInstrumentable = errors.New("cannot add the interrupt check")

// Section ids of the binary format, and their order in a module.
const (
	secCustom    = 0
	secImport    = 2
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secCode      = 10
	secDataCount = 12
	secTag       = 13
)

// sectionRank returns the position a known section must take in a module.
func sectionRank(id byte) int {
	switch id {
	case secTag:
		return 55 // between memory (5) and global (6)
	case secDataCount:
		return 95 // between element (9) and code (10)
	}
	return int(id) * 10
}

// instrument returns bin with the interrupt global and checks added.
// Errors wrap errNotInstrumentable.
func instrument(bin []byte) ([]byte, error) {
	out, err := rewrite(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotInstrumentable, err)
	}
	return out, nil
}

type section struct {
	id      byte
	payload []byte
}

func rewrite(bin []byte) ([]byte, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:8], []byte("\x00asm\x01\x00\x00\x00")) {
		return nil, errors.New("not a WebAssembly 1.0 binary")
	}
	var secs []section
	r := &wreader{b: bin, off: 8}
	for r.off < len(bin) {
		id := r.byte()
		n := r.u32()
		p := r.bytes(n)
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		secs = append(secs, section{id, p})
	}
	var imported, defined, memories uint32
	for _, s := range secs {
		var err error
		var n uint32
		switch s.id {
		case secImport:
			imported, memories, err = importedGlobals(s.payload)
		case secMemory:
			n, err = vecCount(s.payload)
			memories += n
		case secGlobal:
			defined, err = vecCount(s.payload)
		case secExport:
			err = checkExportName(s.payload)
		case secStart:
			err = errors.New("start section (it runs before the interrupt can be set)")
		}
		if err != nil {
			return nil, err
		}
	}
	if memories == 0 {
		return nil, errors.New("no memory")
	}
	halt, fuel := imported+defined, imported+defined+1
	check, bulk := fuelCheck(halt, fuel), bulkCharge(fuel)

	out := append(make([]byte, 0, len(bin)+len(bin)/8), bin[:8]...)
	wroteGlobal, wroteExport := false, false
	global := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}                  // $halt: mut i32 = i32.const 0
	global = appendU32(append(global, 0x7f, 0x01, 0x41), fuelTicks) // $fuel: mut i32 = fuelTicks
	global = append(global, 0x0b)
	export := appendName(nil, interruptExport)
	export = appendU32(append(export, 0x03), halt) // global index
	for _, s := range secs {
		if s.id == secCustom {
			if dropCustom(s.payload) {
				continue
			}
			out = appendSection(out, s.id, s.payload)
			continue
		}
		rank := sectionRank(s.id)
		if !wroteGlobal && rank > sectionRank(secGlobal) {
			out = appendSection(out, secGlobal, append([]byte{2}, global...))
			wroteGlobal = true
		}
		if !wroteExport && rank > sectionRank(secExport) {
			out = appendSection(out, secExport, append([]byte{1}, export...))
			wroteExport = true
		}
		switch s.id {
		case secGlobal:
			p, err := appendToVec(s.payload, 2, global)
			if err != nil {
				return nil, err
			}
			out = appendSection(out, s.id, p)
			wroteGlobal = true
		case secExport:
			p, err := appendToVec(s.payload, 1, export)
			if err != nil {
				return nil, err
			}
			out = appendSection(out, s.id, p)
			wroteExport = true
		case secCode:
			p, err := instrumentCode(s.payload, check, bulk)
			if err != nil {
				return nil, err
			}
			out = appendSection(out, s.id, p)
		default:
			out = appendSection(out, s.id, s.payload)
		}
	}
	if !wroteGlobal {
		out = appendSection(out, secGlobal, append([]byte{2}, global...))
	}
	if !wroteExport {
		out = appendSection(out, secExport, append([]byte{1}, export...))
	}
	return out, nil
}

// dropCustom reports whether a custom section refers to code offsets that
// the rewrite moves (DWARF, code metadata); the name section, which uses
// function indices, stays.
func dropCustom(p []byte) bool {
	r := &wreader{b: p}
	name := string(r.bytes(r.u32()))
	return r.err == nil && (strings.HasPrefix(name, ".debug_") || strings.HasPrefix(name, "metadata.code."))
}

// importedGlobals counts the globals and memories among a module's
// imports.
func importedGlobals(p []byte) (globals, memories uint32, err error) {
	r := &wreader{b: p}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.bytes(r.u32()) // module
		r.bytes(r.u32()) // name
		switch kind := r.byte(); kind {
		case 0x00: // function: type index
			r.u32()
		case 0x01: // table: reference type, limits
			r.valType()
			r.limits()
		case 0x02: // memory: limits
			r.limits()
			memories++
		case 0x03: // global: value type, mutability
			r.valType()
			r.byte()
			globals++
		default:
			r.fail(fmt.Errorf("import kind %#x", kind))
		}
	}
	return globals, memories, r.err
}

// checkExportName fails when the module already exports interruptExport.
func checkExportName(p []byte) error {
	r := &wreader{b: p}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		if string(r.bytes(r.u32())) == interruptExport {
			return fmt.Errorf("export %q exists", interruptExport)
		}
		r.byte()
		r.u32()
	}
	return r.err
}

// vecCount reads the element count at the start of a section.
func vecCount(p []byte) (uint32, error) {
	r := &wreader{b: p}
	n := r.u32()
	return n, r.err
}

// appendToVec returns a section payload (a vector) with k more elements,
// elems.
func appendToVec(p []byte, k uint32, elems []byte) ([]byte, error) {
	r := &wreader{b: p}
	n := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	out := appendU32(nil, n+k)
	out = append(out, p[r.off:]...)
	return append(out, elems...), nil
}

// fuelCheck returns the check's code (see the top of this file).
func fuelCheck(halt, fuel uint32) []byte {
	c := appendU32([]byte{0x23}, halt)          // global.get $halt
	c = append(c, 0x04, 0x40, 0x00, 0x0b)       // if unreachable end
	c = appendU32(append(c, 0x23), fuel)        // global.get $fuel
	c = append(c, 0x41, 0x01, 0x6b)             // i32.const 1, i32.sub
	c = appendU32(append(c, 0x24), fuel)        // global.set $fuel
	c = appendU32(append(c, 0x23), fuel)        // global.get $fuel
	c = append(c, 0x41, 0x00, 0x4c, 0x04, 0x40) // i32.const 0, i32.le_s, if
	c = append(c, 0x41, 0x00, 0x40, 0x00, 0x1a) // memory.grow 0, drop
	c = appendU32(append(c, 0x41), fuelTicks)   // i32.const fuelTicks
	c = appendU32(append(c, 0x24), fuel)        // global.set $fuel
	return append(c, 0x0b)                      // end
}

// bulkCharge returns the code that charges a bulk instruction: $fuel -=
// bulkFuel. The next check exits to Go once $fuel is spent.
func bulkCharge(fuel uint32) []byte {
	c := appendU32([]byte{0x23}, fuel)
	c = appendU32(append(c, 0x41), bulkFuel) // i32.const bulkFuel (signed LEB128: 256 < 2^13, so its unsigned encoding is the same)
	c = append(c, 0x6b)                      // i32.sub
	return appendU32(append(c, 0x24), fuel)
}

// instrumentCode adds the check at the entry of every function body and
// after every loop's block type, and bulk after every bulk instruction.
func instrumentCode(p, check, bulk []byte) ([]byte, error) {
	r := &wreader{b: p}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(p)+len(p)/8), n)
	var body []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		b := r.bytes(r.u32())
		if r.err != nil {
			break
		}
		var err error
		if body, err = instrumentBody(body[:0], b, check, bulk); err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if r.err != nil {
		return nil, fmt.Errorf("code section: %w", r.err)
	}
	if r.off != len(p) {
		return nil, errors.New("code section: trailing bytes")
	}
	return out, nil
}

func instrumentBody(out, b, check, bulk []byte) ([]byte, error) {
	r := &wreader{b: b}
	for n := r.u32(); n > 0 && r.err == nil; n-- { // locals
		r.u32()
		r.valType()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	out = append(out, b[:r.off]...)
	out = append(out, check...)
	for r.off < len(b) {
		start := r.off
		kind := r.instruction()
		if r.err != nil {
			return nil, fmt.Errorf("instruction at body offset %d: %w", start, r.err)
		}
		out = append(out, b[start:r.off]...)
		switch kind {
		case opLoop:
			out = append(out, check...)
		case opBulk:
			out = append(out, bulk...)
		}
	}
	return out, nil
}

// wreader reads the binary format; the first error sticks and makes every
// later read return zero.
type wreader struct {
	b   []byte
	off int
	err error
}

func (r *wreader) fail(err error) {
	if r.err == nil {
		r.err = err
		r.off = len(r.b)
	}
}

func (r *wreader) byte() byte {
	if r.off >= len(r.b) {
		r.fail(errors.New("unexpected end"))
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *wreader) bytes(n uint32) []byte {
	if uint64(len(r.b)-r.off) < uint64(n) {
		r.fail(errors.New("unexpected end"))
		return nil
	}
	v := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return v
}

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *wreader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("LEB128 too long"))
	return 0
}

// skipLEB skips a (signed or unsigned) LEB128 of at most max bytes.
func (r *wreader) skipLEB(max int) {
	for i := 0; i < max; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail(errors.New("LEB128 too long"))
}

// valType skips a value type (WebAssembly 2.0: one byte).
func (r *wreader) valType() {
	switch c := r.byte(); c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f: // i32 i64 f32 f64 v128 funcref externref
	default:
		r.fail(fmt.Errorf("value type %#x", c))
	}
}

func (r *wreader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}

// memarg skips an instruction's alignment and offset.
func (r *wreader) memarg() {
	r.u32()
	r.u32()
}

// Kinds of instruction the rewrite adds code after.
const (
	opOther = iota
	opLoop  // loop: the check goes after its block type
	opBulk  // bulk memory or table instruction: charged bulkFuel
)

// instruction skips one instruction and returns its kind.
func (r *wreader) instruction() (kind int) {
	switch op := r.byte(); {
	case op == 0x02 || op == 0x04: // block, if
		r.skipLEB(5) // block type: 0x40, a value type or a type index (s33)
	case op == 0x03: // loop
		r.skipLEB(5)
		return opLoop
	case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1:
		// unreachable nop else end return drop select ref.is_null
	case op == 0x0c || op == 0x0d: // br, br_if
		r.u32()
	case op == 0x0e: // br_table
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.u32()
		}
		r.u32()
	case op == 0x10: // call
		r.u32()
	case op == 0x11: // call_indirect: type, table
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.valType()
		}
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41: // i32.const
		r.skipLEB(5)
	case op == 0x42: // i64.const
		r.skipLEB(10)
	case op == 0x43: // f32.const
		r.bytes(4)
	case op == 0x44: // f64.const
		r.bytes(8)
	case op >= 0x45 && op <= 0xc4: // numeric, no immediate
	case op == 0xd0: // ref.null t
		r.valType()
	case op == 0xd2: // ref.func
		r.u32()
	case op == 0xfc:
		if r.misc() {
			return opBulk
		}
	case op == 0xfd:
		r.vector()
	default:
		r.fail(fmt.Errorf("opcode %#x", op))
	}
	return opOther
}

// misc skips a 0xfc-prefixed instruction (saturating truncation, bulk
// memory, tables) and reports whether it is a bulk one (memory.init,
// copy, fill; table.init, copy, grow, fill), whose cost grows with its
// operands.
func (r *wreader) misc() (bulk bool) {
	switch sub := r.u32(); {
	case sub <= 7: // trunc_sat
	case sub == 8: // memory.init data, memory
		r.u32()
		r.u32()
		return true
	case sub == 9, sub == 13, sub == 16: // data.drop, elem.drop, table.size: one index
		r.u32()
	case sub == 11, sub == 15, sub == 17: // memory.fill, table.grow, table.fill: one index
		r.u32()
		return true
	case sub == 10, sub == 12, sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
		return true
	default:
		r.fail(fmt.Errorf("opcode 0xfc %d", sub))
	}
	return false
}

// vector skips a 0xfd-prefixed (SIMD) instruction.
func (r *wreader) vector() {
	switch sub := r.u32(); {
	case sub <= 0x0b, sub == 0x5c, sub == 0x5d: // loads, store, load_zero
		r.memarg()
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 0x15 && sub <= 0x22: // extract_lane, replace_lane
		r.byte()
	case sub >= 0x54 && sub <= 0x5b: // load_lane, store_lane
		r.memarg()
		r.byte()
	case sub <= 0xff: // every other SIMD instruction takes no immediate
	default:
		r.fail(fmt.Errorf("opcode 0xfd %d", sub))
	}
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

func appendSection(out []byte, id byte, p []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(len(p)))
	return append(out, p...)
}
