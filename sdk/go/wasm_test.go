//go:build !wasip1

package propolis

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWasmBuild builds testdata/ext, a small extension using every handler,
// for wasip1 with -buildmode=c-shared, then checks the module's imports and
// exports against ABI.md: this catches glue that does not compile or that
// declares a wrong signature.
func TestWasmBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Wasm module")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out := filepath.Join(t.TempDir(), "ext.wasm")
	cmd := exec.Command(gocmd, "build", "-buildmode=c-shared", "-o", out, "./testdata/ext")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	// The package documentation's example must build too.
	cmd = exec.Command(gocmd, "build", "-buildmode=c-shared", "-o", filepath.Join(t.TempDir(), "doc.wasm"), "./testdata/docexample")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/docexample: %v\n%s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := parseWasm(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ext.wasm: %d bytes", len(bin))

	wantExports := map[string]string{
		"propolis_abi_v1":                     "()->i32",
		"propolis_buffer":                     "(i32)->i32",
		"propolis_start":                      "(i32)->i32",
		"propolis_stop":                       "()->()",
		"propolis_authenticate":               "(i32)->i32",
		"propolis_authorize_publish":          "(i32)->i32",
		"propolis_authorize_subscribe":        "(i32)->i32",
		"propolis_on_event":                   "(i32)->()",
		"propolis_intercept_connect":          "(i32)->i32",
		"propolis_intercept_connack":          "(i32)->i32",
		"propolis_intercept_publish_inbound":  "(i32)->i32",
		"propolis_intercept_publish_outbound": "(i32)->i32",
		"propolis_intercept_subscribe":        "(i32)->i32",
		"propolis_intercept_disconnect":       "(i32)->i32",
		"_initialize":                         "()->()",
		"memory":                              "memory",
	}
	for name, want := range wantExports {
		if got, ok := mod.exports[name]; !ok {
			t.Errorf("export %s missing", name)
		} else if got != want {
			t.Errorf("export %s: got %s, want %s", name, got, want)
		}
	}
	wantImports := map[string]string{
		"log":                       "(i32,i32,i32)->i32",
		"set_reason":                "(i32,i32)->i32",
		"declare_callbacks":         "(i32)->i32",
		"add_publish_filter":        "(i32,i32)->i32",
		"set_session_expiry":        "(i32)->i32",
		"set_receive_maximum":       "(i32)->i32",
		"set_keepalive":             "(i32)->i32",
		"set_max_queued":            "(i32)->i32",
		"set_overload_throttling":   "(i32)->i32",
		"add_connack_user_property": "(i32,i32,i32,i32)->i32",
		"add_permission":            "(i32,i32)->i32",
		"packet_set":                "(i32,i32,i32)->i32",
		"packet_set_int":            "(i32,i64)->i32",
		"add_intercept_filter":      "(i32,i32,i32)->i32",
		"add_intercept_client":      "(i32,i32)->i32",
	}
	seen := map[string]bool{}
	for _, imp := range mod.imports {
		switch imp.module {
		case "propolis_v1":
			want, ok := wantImports[imp.name]
			if !ok {
				t.Errorf("import propolis_v1.%s is not in ABI.md", imp.name)
			} else if imp.sig != want {
				t.Errorf("import propolis_v1.%s: got %s, want %s", imp.name, imp.sig, want)
			}
			seen[imp.name] = true
		case "wasi_snapshot_preview1":
		default:
			t.Errorf("import from unexpected module %s.%s", imp.module, imp.name)
		}
	}
	for name := range wantImports {
		if !seen[name] {
			t.Errorf("import propolis_v1.%s missing", name)
		}
	}
}

// wasmModule is what TestWasmBuild checks of a module: function
// signatures of imports and exports, formatted as ABI.md does.
type wasmModule struct {
	imports []wasmImport
	exports map[string]string // name -> signature, or "memory"/"table"/"global"
}

type wasmImport struct{ module, name, sig string }

// wasmReader reads the binary format of a Wasm module.
type wasmReader struct {
	b   []byte
	err error
}

func (r *wasmReader) byte() byte {
	if len(r.b) == 0 {
		r.err = errors.New("wasm: unexpected end")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// u32 reads an unsigned LEB128 number.
func (r *wasmReader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("wasm: bad LEB128")
	return 0
}

func (r *wasmReader) bytes(n uint32) []byte {
	if uint32(len(r.b)) < n {
		r.err = errors.New("wasm: unexpected end")
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *wasmReader) name() string { return string(r.bytes(r.u32())) }

// limits skips a memory or table limits.
func (r *wasmReader) limits() {
	if r.byte()&1 != 0 {
		r.u32()
	}
	r.u32()
}

// parseWasm reads the type, import, function and export sections.
func parseWasm(bin []byte) (*wasmModule, error) {
	if !bytes.HasPrefix(bin, []byte("\x00asm\x01\x00\x00\x00")) {
		return nil, errors.New("wasm: bad magic or version")
	}
	valType := map[byte]string{0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64"}
	var types, funcs []string // signatures; the function index space
	mod := &wasmModule{exports: map[string]string{}}
	top := &wasmReader{b: bin[8:]}
	for len(top.b) > 0 && top.err == nil {
		id := top.byte()
		r := &wasmReader{b: top.bytes(top.u32())}
		switch id {
		case 1: // types
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if r.byte() != 0x60 {
					return nil, errors.New("wasm: bad function type")
				}
				var ps, rs []string
				for k := r.u32(); k > 0 && r.err == nil; k-- {
					ps = append(ps, valType[r.byte()])
				}
				for k := r.u32(); k > 0 && r.err == nil; k-- {
					rs = append(rs, valType[r.byte()])
				}
				res := "(" + strings.Join(rs, ",") + ")"
				if len(rs) == 1 {
					res = rs[0]
				}
				types = append(types, "("+strings.Join(ps, ",")+")->"+res)
			}
		case 2: // imports
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				imp := wasmImport{module: r.name(), name: r.name()}
				switch r.byte() {
				case 0:
					idx := r.u32()
					if int(idx) >= len(types) {
						return nil, errors.New("wasm: bad type index")
					}
					imp.sig = types[idx]
					funcs = append(funcs, imp.sig)
				case 1:
					r.byte()
					r.limits()
				case 2:
					r.limits()
				case 3:
					r.byte()
					r.byte()
				}
				mod.imports = append(mod.imports, imp)
			}
		case 3: // functions
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				idx := r.u32()
				if int(idx) >= len(types) {
					return nil, errors.New("wasm: bad type index")
				}
				funcs = append(funcs, types[idx])
			}
		case 7: // exports
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				name, kind, idx := r.name(), r.byte(), r.u32()
				switch kind {
				case 0:
					if int(idx) >= len(funcs) {
						return nil, errors.New("wasm: bad function index")
					}
					mod.exports[name] = funcs[idx]
				case 1:
					mod.exports[name] = "table"
				case 2:
					mod.exports[name] = "memory"
				case 3:
					mod.exports[name] = "global"
				}
			}
		}
		if r.err != nil {
			return nil, r.err
		}
	}
	return mod, top.err
}
