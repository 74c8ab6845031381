package host

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/propolis-mqtt/propolis/abi"
)

func TestCheckModuleListsEveryProblem(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(wasmFixture(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r, err := CheckModule(context.Background(), read("ok/minimal"))
	if err != nil || len(r.Problems) != 0 || !r.HasMarker || !reflect.DeepEqual(r.HostFuncs, []abi.HostFunc{abi.FuncSetReason}) ||
		r.Callbacks != abi.Callbacks[abi.CallbackAuthenticate].Bit {
		t.Fatalf("minimal: %+v, %v", r, err)
	}
	r, err = CheckModule(context.Background(), read("error/no_marker"))
	if err != nil || r.HasMarker || len(r.Problems) == 0 || r.Problems[0].Name != "export propolis_abi_v1" {
		t.Fatalf("no_marker: %+v, %v", r, err)
	}
	r, err = CheckModule(context.Background(), read("error/bad_import"))
	if err != nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Err.Error(), "import propolis_v1.add_permission: got (i32)->i32") {
		t.Fatalf("bad_import: %+v, %v", r, err)
	}
	if _, err := CheckModule(context.Background(), []byte("not wasm")); err == nil {
		t.Fatal("garbage bytes checked")
	}
}

// TestLaterMinorRecord: a record of a later minor version keeps the
// fields a module of this version reads, then extra ones it skips.
func TestLaterMinorRecord(t *testing.T) {
	rec := &abi.ConnectRecord{ProtocolVersion: 5, ClientID: "c", Username: "u", Password: []byte{0xff}}
	b := (&laterMinor{rec: rec, extra: []byte{1, 2, 3, 4, 5}}).Encode(nil)
	r, err := abi.NewReader(b)
	if err != nil || r.Minor != abi.Minor+1 || r.Kind != abi.KindConnect {
		t.Fatalf("header: %+v, %v", r, err)
	}
	got, err := abi.DecodeConnect(b)
	if err != nil || got.ClientID != "c" || got.Username != "u" || string(got.Password) != "\xff" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if len(b) != len(rec.Encode(nil))+5 {
		t.Fatalf("length %d", len(b))
	}
}

// TestProbe: a probe calls through invoke, reports service calls refused
// for want of a grant, and restarts with a fresh instance.
func TestProbe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "undeclared")
	installExtension(t, filepath.Dir(dir), "undeclared", wasmFixture("error/undeclared_service"), 0, "")
	m, err := LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenProbe(context.Background(), dir, m, ProbeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Callbacks(); !reflect.DeepEqual(got, []abi.Callback{abi.CallbackAuthorizePublish}) {
		t.Fatalf("callbacks %v", got)
	}
	res := p.Call(context.Background(), abi.CallbackAuthorizePublish, &abi.PublishRecord{Topic: "a"}, []byte{9, 9})
	if res.Outcome != OutcomeNext || res.Decision != abi.DecisionNext || !reflect.DeepEqual(res.Refused, []abi.HostFunc{abi.FuncStorageGet}) || res.Memory == 0 {
		t.Fatalf("call: %+v", res)
	}
	if err := p.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := p.Call(context.Background(), abi.CallbackAuthorizePublish, &abi.PublishRecord{Topic: "a"}, nil); res.Outcome != OutcomeNext {
		t.Fatalf("after restart: %+v", res)
	}
	if res := p.Call(context.Background(), abi.CallbackAuthorizePublish, &abi.Permission{}, nil); res.Err == nil {
		t.Fatal("a permission taken for a record")
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
