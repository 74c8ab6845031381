package host

import (
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/tetratelabs/wazero"

	"github.com/propolis-mqtt/propolis/abi"
)

// abi10Guard is a Go extension built with the SDK as it was at ABI 1.0
// (testdata/abi10; testdata/README.md says how), kept gzipped.
const abi10Guard = "../testdata/abi10/guard.wasm.gz"

// abi10Module returns the fixture's module: its bytes, and a copy at a
// path of the test's, for installExtension.
func abi10Module(t *testing.T) ([]byte, string) {
	t.Helper()
	f, err := os.Open(abi10Guard)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "guard.wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, path
}

// TestABI10BinaryLoadsUnchanged: the ABI.md compatibility promise. A
// module built for 1.0 with the Go SDK of that time loads in this host
// (with the services and callbacks of 1.1 it knows nothing of) and decides
// CONNECT, PUBLISH and SUBSCRIBE as it always did, on the wire.
func TestABI10BinaryLoadsUnchanged(t *testing.T) {
	// What makes it a 1.0 module: no import of a 1.1 host function, no 1.1
	// export, and a marker answering 0 (checked below).
	rt := wazero.NewRuntime(context.Background())
	defer rt.Close(context.Background())
	bin, path := abi10Module(t)
	mod, err := rt.CompileModule(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range mod.ImportedFunctions() {
		m, name, _ := def.Import()
		if f, ok := abi.HostFuncByName(name); m == abi.ImportModule && (!ok || f >= abi.FuncTakeResult) {
			t.Fatalf("the fixture imports %s, which ABI 1.0 did not have", name)
		}
	}
	if _, ok := mod.ExportedFunctions()[abi.Callbacks[abi.CallbackTick].Export]; ok {
		t.Fatal("the fixture exports propolis_tick, which ABI 1.0 did not have")
	}

	extDir := t.TempDir()
	installExtension(t, extDir, "guard", path, 0, "abi: \"1.0\"\n")
	w := startWired(t, extDir, Options{})
	w.h.mu.Lock()
	e := w.h.exts["guard"]
	w.h.mu.Unlock()
	if e == nil {
		t.Fatalf("not loaded: %+v", statusOf(t, w.h, "guard"))
	}
	in, err := e.pool.get(context.Background(), abi.CallbackMarker, new(bool))
	if err != nil {
		t.Fatal(err)
	}
	minor, err := in.run(abi.CallbackMarker)
	e.pool.put(in)
	if err != nil || minor != 0 {
		t.Fatalf("marker: %d, %v; want 0 (built for 1.0)", minor, err)
	}

	// Authenticate: allow, deny with its code and reason, NEXT.
	if _, ack, err := v5(t, w.addr, "m1", "mallory", "x", nil); err == nil || ack.ReasonCode != 0x86 || ack.Properties.ReasonString != "bad user name or password" {
		t.Fatalf("mallory: %+v, %v; want 0x86 bad user name or password", ack, err)
	}
	if code := v3ReturnCode(w.addr, "m3", "mallory", "x"); code != 0x04 {
		t.Fatalf("mallory over 3.1.1: %#x, want 0x04", code)
	}
	if _, ack, err := v5(t, w.addr, "b1", "bob", "x", nil); err == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("bob (NEXT, end of chain): %+v, %v; want 0x87", ack, err)
	}
	c, ack, err := v5(t, w.addr, "a1", "alice", "secret", nil)
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("alice: %+v, %v", ack, err)
	}

	// Authorize: its publish filter and callback, then its permissions.
	for _, tc := range []struct {
		name, topic, payload string
		code                 byte
		reason               string
	}{
		{"guarded, bad payload", "guard/x", "bad", 0x99, "bad payload"},
		{"guarded, allowed", "guard/x", "ok", 0, ""},
		{"own tree, by permission", "devices/a1/t", "bad", 0, ""},
		{"outside, by permission", "other/t", "x", 0x87, "not permitted"},
	} {
		resp, err := c.Publish(ctx(t), &paho.Publish{Topic: tc.topic, QoS: 1, Payload: []byte(tc.payload)})
		if resp == nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		if resp.ReasonCode != tc.code || reason != tc.reason {
			t.Errorf("%s: PUBACK %#x %q, want %#x %q", tc.name, resp.ReasonCode, reason, tc.code, tc.reason)
		}
	}
	sub, err := c.Subscribe(ctx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "secret/#", QoS: 1}, {Topic: "devices/a1/#", QoS: 1}, {Topic: "other/#", QoS: 1},
	}})
	if sub == nil {
		t.Fatal(err)
	}
	if want := []byte{0x87, 1, 0x87}; string(sub.Reasons) != string(want) {
		t.Errorf("SUBACK %x, want %x", sub.Reasons, want)
	}
	if st := statusOf(t, w.h, "guard"); st.Errors != 0 || st.State != StateRunning {
		t.Errorf("status %+v", st)
	}
}
