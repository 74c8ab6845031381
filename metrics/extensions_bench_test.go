package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/host"
)

// What the extension metrics cost a call into an extension. Read
// cpu-ns/op (the machine is shared: CPU time, not wall time) and compare
// the variants of one run side by side:
//
//   - "none": no observer (the host reads no clock);
//   - "noop": an observer that does nothing: the host's two clock reads
//     and the Call it builds;
//   - "metrics": Extensions, the whole cost.

// noopObserver hears every call and does nothing.
type noopObserver struct{}

func (noopObserver) ObserveCall(host.Call) {}

// observers are the variants every benchmark here runs.
var observers = []struct {
	name string
	obs  func() host.CallObserver
}{
	{"none", func() host.CallObserver { return nil }},
	{"noop", func() host.CallObserver { return noopObserver{} }},
	{"metrics", func() host.CallObserver { return NewExtensions() }},
}

// benchHost loads one extension (a guest of testdata/guests) into a host
// observed by obs, with no broker.
func benchHost(b *testing.B, wasm, extra string, obs host.CallObserver) *host.Host {
	dir := b.TempDir()
	installExt(b, dir, "bench", wasm, "1.0.0", "limits:\n  pool_size: 1\n  call_deadline: 1m\n"+extra)
	h, err := host.New(host.Options{Dir: dir, Observer: obs, CacheDir: filepath.Join(os.TempDir(), "propolis-test-wasm-cache"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Close(context.Background()) })
	if err := h.LoadAll(context.Background()); err != nil {
		b.Fatal(err)
	}
	if sts := h.Status(); len(sts) != 1 || sts[0].State != host.StateRunning {
		b.Fatalf("extension not running: %+v", sts)
	}
	return h
}

// BenchmarkObservedAuthorizePublish: one authorize_publish into the bench
// guest (ALLOW), through the client authorizer, as host's
// BenchmarkAuthorizePublish (guarded).
func BenchmarkObservedAuthorizePublish(b *testing.B) {
	wasm := guest(b, "bench")
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			h := benchHost(b, wasm, "", o.obs())
			res := h.Authenticate(context.Background(), &broker.Connect{ClientID: "c1", Username: "u", Password: []byte("p"),
				ProtocolVersion: 5, Listener: "tcp", RemoteAddr: "127.0.0.1:1"})
			if res.Decision != broker.Allow {
				b.Fatalf("authenticate: %+v", res)
			}
			p := &broker.Publish{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`)}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if v := res.Client.AuthorizePublish(p); v.Decision != broker.Allow {
					b.Fatalf("call %d: %+v", i, v)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkObservedInterceptPublish: one intercept_publish_inbound into
// a no-op interceptor (interceptprobe, mode noop), 10-byte payload, as
// host's BenchmarkInterceptPublish.
func BenchmarkObservedInterceptPublish(b *testing.B) {
	wasm := guest(b, "interceptprobe")
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			h := benchHost(b, wasm, "config:\n  mode: noop\n", o.obs())
			cl := broker.Peer{ID: "sensor-1", Username: "u", ProtocolVersion: 5}
			m := &broker.Message{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: []byte("0123456789")}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if p := h.InterceptPublish(cl, m); p.Stop {
					b.Fatalf("call %d: prevented %+v", i, p)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkObserveCall: the observer alone, as the host uses it (the
// extension's own observer, ForExtension) and through a lookup by id
// (Extensions.ObserveCall), for a timed call and one not timed, on one
// goroutine and on every CPU at once (the same series: the worst
// sharing), with 20 extensions' series.
func BenchmarkObserveCall(b *testing.B) {
	x := NewExtensions()
	for i := range 20 {
		x.ObserveCall(host.Call{Extension: fmt.Sprintf("ext-%02d", i), Folder: 1, Callback: abi.CallbackAuthorizePublish})
	}
	c := host.Call{Extension: "ext-07", Folder: 1, Callback: abi.CallbackAuthorizePublish, Took: 1500 * time.Nanosecond, Outcome: host.OutcomeAllow}
	for _, via := range []struct {
		name string
		obs  host.CallObserver
	}{{"forext", x.ForExtension("ext-07", 1)}, {"byid", x}} {
		for _, timed := range []bool{true, false} {
			c.Timed = timed
			name := via.name + "/timed"
			if !timed {
				name = via.name + "/untimed"
			}
			b.Run(name+"/serial", func(b *testing.B) {
				b.ReportAllocs()
				cpu := cpuTime()
				for i := 0; i < b.N; i++ {
					via.obs.ObserveCall(c)
				}
				reportCPU(b, cpu)
			})
			b.Run(name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				cpu := cpuTime()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						via.obs.ObserveCall(c)
					}
				})
				reportCPU(b, cpu)
			})
		}
	}
}

// reportCPU reports the CPU time per operation since cpu.
func reportCPU(b *testing.B, cpu time.Duration) {
	if n := cpuTime() - cpu; n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkObserverPaired: authorize_publish into two hosts running the
// bench guest, one with no observer ("none") and one with the observer the
// sub-benchmark names ("none" again: the pairing's own bias; "noop": the
// host's side alone; "metrics": Extensions), alternating blocks of 256
// calls on one locked thread, so that both see the same machine (a shared
// machine's load drifts between separate benchmarks by more than the
// difference). It reports each one's thread CPU time per call and their
// difference (Linux; elsewhere nothing).
func BenchmarkObserverPaired(b *testing.B) {
	wasm := guest(b, "bench")
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) { paired(b, wasm, o.obs()) })
	}
}

func paired(b *testing.B, wasm string, obs host.CallObserver) {
	type side struct {
		client broker.ClientAuthorizer
		cpu    time.Duration
		n      int
	}
	sides := make([]*side, 2)
	for i, obs := range []host.CallObserver{nil, obs} {
		h := benchHost(b, wasm, "", obs)
		res := h.Authenticate(context.Background(), &broker.Connect{ClientID: "c1", Username: "u", Password: []byte("p"),
			ProtocolVersion: 5, Listener: "tcp", RemoteAddr: "127.0.0.1:1"})
		if res.Decision != broker.Allow {
			b.Fatalf("authenticate: %+v", res)
		}
		sides[i] = &side{client: res.Client}
	}
	p := &broker.Publish{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`)}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const block = 256
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(block, b.N-done)
		for _, s := range sides {
			began := threadCPU()
			for range n {
				if v := s.client.AuthorizePublish(p); v.Decision != broker.Allow {
					b.Fatalf("call: %+v", v)
				}
			}
			s.cpu += threadCPU() - began
			s.n += n
		}
		done += n
	}
	if sides[0].cpu == 0 || sides[0].n == 0 {
		return
	}
	base, other := float64(sides[0].cpu)/float64(sides[0].n), float64(sides[1].cpu)/float64(sides[1].n)
	b.ReportMetric(base, "none-cpu-ns/call")
	b.ReportMetric(other, "observed-cpu-ns/call")
	b.ReportMetric(other-base, "delta-cpu-ns/call")
}
