package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/propolis-mqtt/propolis/abi"
)

// These tests hand the SDKs' modules records no correct host writes (a
// field cut short, a length beyond the buffer), calling their exports
// directly, and check the answers each SDK's README states.

// sdkGuest is an SDK module instantiated alone, its propolis_v1 imports
// stubbed: log and set_reason are recorded, every other answers 0.
type sdkGuest struct {
	mod     api.Module
	mu      sync.Mutex
	logs    []string
	reasons []string
}

func newSDKGuest(t *testing.T, wasm string) *sdkGuest {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, runtimeConfig())
	t.Cleanup(func() { _ = rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rt.CompileModule(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	g := &sdkGuest{}
	b := rt.NewHostModuleBuilder("propolis_v1")
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != "propolis_v1" {
			continue
		}
		n := len(f.ResultTypes())
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, stack []uint64) {
			if name == abi.HostFuncs[abi.FuncLog].Name || name == abi.HostFuncs[abi.FuncSetReason].Name {
				ptr, n := uint32(stack[0]), uint32(stack[1])
				if name == abi.HostFuncs[abi.FuncLog].Name {
					ptr, n = uint32(stack[1]), uint32(stack[2])
				}
				s, _ := m.Memory().Read(ptr, n)
				g.mu.Lock()
				if name == abi.HostFuncs[abi.FuncLog].Name {
					g.logs = append(g.logs, string(s))
				} else {
					g.reasons = append(g.reasons, string(s))
				}
				g.mu.Unlock()
			}
			if n > 0 {
				stack[0] = 0
			}
		}), f.ParamTypes(), f.ResultTypes()).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	if g.mod, err = rt.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithStartFunctions("_initialize")); err != nil {
		t.Fatal(err)
	}
	return g
}

// call writes rec into the module's buffer and calls export with len
// (-1: the record's length); it returns the answer (0 for an export
// without one) and the call's error.
func (g *sdkGuest) call(t *testing.T, export string, rec []byte, n int) (uint32, error) {
	t.Helper()
	ctx := context.Background()
	res, err := g.mod.ExportedFunction("propolis_buffer").Call(ctx, 4096)
	if err != nil || res[0] == 0 {
		t.Fatalf("propolis_buffer: %v %v", res, err)
	}
	if !g.mod.Memory().Write(uint32(res[0]), rec) {
		t.Fatal("record outside memory")
	}
	if n < 0 {
		n = len(rec)
	}
	out, err := g.mod.ExportedFunction(export).Call(ctx, uint64(n))
	if err != nil || len(out) == 0 {
		return 0, err
	}
	return uint32(out[0]), nil
}

// cutShort encodes rec and cuts it in the middle of the string holding
// "abcdefgh", fixing the header's length: the string's length runs past
// the end.
func cutShort(t *testing.T, rec interface{ Encode([]byte) []byte }) []byte {
	t.Helper()
	b := rec.Encode(nil)
	i := bytes.Index(b, []byte("abcdefgh"))
	if i < 0 {
		t.Fatal("no abcdefgh in the record")
	}
	b = b[: i+3 : i+3]
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

// failClosed is DENY with 0x80.
const failClosed = 0x80<<8 | uint32(abi.DecisionDeny)

// TestSDKCMalformedRecord: the C SDK's macros answer a malformed record as
// the Rust SDK does, logging it: DENY 0x80 (with the reason) from
// authenticate and authorize_*, NEXT from an interceptor, and an event is
// dropped; never a trap.
func TestSDKCMalformedRecord(t *testing.T) {
	g := newSDKGuest(t, buildC(t, "c/interceptors", filepath.Join("..", "sdk", "c", "test", "interceptors.c")))
	connect := cutShort(t, &abi.ConnectRecord{ClientID: "abcdefgh"})
	for _, tc := range []struct {
		export string
		rec    []byte
		n      int
		want   uint32
	}{
		{"propolis_authenticate", connect, -1, failClosed},
		{"propolis_authenticate", (&abi.ConnectRecord{ClientID: "c"}).Encode(nil), 1 << 20, failClosed}, // beyond the buffer
		{"propolis_intercept_connect", connect, -1, uint32(abi.DecisionNext)},
		{"propolis_intercept_publish_inbound", cutShort(t, &abi.MessageRecord{ClientID: "abcdefgh"}), -1, uint32(abi.DecisionNext)},
		{"propolis_on_event", cutShort(t, &abi.EventRecord{ClientID: "abcdefgh"}), -1, 0},
	} {
		got, err := g.call(t, tc.export, tc.rec, tc.n)
		if err != nil || got != tc.want {
			t.Fatalf("%s (len %d): %#x %v, want %#x", tc.export, tc.n, got, err, tc.want)
		}
		want := "propolis C SDK: malformed record in " + tc.export
		if last := g.logs[len(g.logs)-1]; last != want {
			t.Fatalf("%s: log %q, want %q", tc.export, last, want)
		}
	}
	if strings.Join(g.reasons, "|") != "propolis C SDK: malformed record in propolis_authenticate|propolis C SDK: malformed record in propolis_authenticate" {
		t.Fatalf("reasons %q: want one per refusal", g.reasons)
	}

	acl := newSDKGuest(t, buildCExample(t, "c-topic-acl"))
	if got, err := acl.call(t, "propolis_authorize_publish", cutShort(t, &abi.PublishRecord{Topic: "abcdefgh"}), -1); err != nil || got != failClosed {
		t.Fatalf("authorize_publish: %#x %v", got, err)
	}
	if got, err := acl.call(t, "propolis_authorize_subscribe", cutShort(t, &abi.SubscribeRecord{Filter: "abcdefgh"}), -1); err != nil || got != failClosed {
		t.Fatalf("authorize_subscribe: %#x %v", got, err)
	}
}

// TestSDKASMalformedRecord: the AssemblyScript SDK's record accessors log
// a malformed record and trap (AssemblyScript has no exceptions: the
// accessor cannot make the callback answer); the host counts the trap as
// a failure and fails the call closed.
func TestSDKASMalformedRecord(t *testing.T) {
	g := newSDKGuest(t, buildAS(t, "as/interceptors", filepath.Join("test", "interceptors.ts")))
	for _, tc := range []struct {
		rec []byte
		n   int
	}{
		{cutShort(t, &abi.ConnectRecord{ClientID: "abcdefgh"}), -1},
		{(&abi.ConnectRecord{ClientID: "c"}).Encode(nil), 1 << 20},
	} {
		if _, err := g.call(t, "propolis_authenticate", tc.rec, tc.n); err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("len %d: %v, want the unreachable trap", tc.n, err)
		}
		if last := g.logs[len(g.logs)-1]; last != "propolis AssemblyScript SDK: malformed CONNECT record" {
			t.Fatalf("log %q", last)
		}
	}
}
