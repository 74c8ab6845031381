package host

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/time/rate"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// svcBenchLoop is how many service calls one authorize_publish of the
// svcbench guest makes: the call into the guest is then a hundredth of
// what each service call is charged with.
const svcBenchLoop = 100

// BenchmarkServiceCall measures host service calls from a Go-built guest
// (testdata/guests/svcbench) against a real broker and Pebble store: each
// authorize_publish makes svcBenchLoop calls, and ns/call is the time per
// call, the guest's loop and a hundredth of the authorize call included
// ("none" is that baseline: the loop without a service call). Reads are
// one Pebble point read; writes are one write, in "sync" durability with
// its fsync (one writer: no group commit to share it), in "none" without.
// The rate limiter is on, with caps too high to refuse anything.
func BenchmarkServiceCall(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "svcbench")
	for _, durability := range []string{"none", "sync"} {
		ext := b.TempDir()
		installExtension(b, ext, "svcbench", wasm, 0,
			"services: [session_attributes, storage]\nlimits:\n  pool_size: 1\n  call_deadline: 1m\n")
		h, err := New(Options{Dir: ext, CacheDir: filepath.Join(os.TempDir(), "propolis-test-wasm-cache"), BrokerVersion: "test",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ServiceRate: 1e12, ServiceBurst: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close(context.Background()) })
		cfg := config.Default()
		cfg.Durability.Mode = durability
		cfg.Listeners[0].Address = "127.0.0.1:0"
		cfg.DataDir = filepath.Join(b.TempDir(), "data")
		srv, err := broker.New(broker.Options{Config: cfg, Logger: h.log, Extensions: broker.Extensions{Authenticator: h, Events: h}})
		if err != nil {
			b.Fatal(err)
		}
		h.UseBroker(srv)
		if err := h.LoadAll(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Close() })
		// A real session for the attribute calls, and the values they read.
		if _, _, err := v5(b, srv.Addr("tcp"), "c1", "", "", nil); err != nil {
			b.Fatal(err)
		}
		if err := srv.PutAttribute("c1", "k", []byte("0123456789abcdef")); err != nil {
			b.Fatal(err)
		}
		if err := srv.StoragePut("svcbench", "k", []byte("0123456789abcdef")); err != nil {
			b.Fatal(err)
		}
		res := h.Authenticate(context.Background(), connect("u", "p")) // client id c1
		if res.Decision != broker.Allow {
			b.Fatalf("authenticate: %+v", res)
		}
		for _, op := range []string{"none", "attr-get", "kv-get", "attr-put", "kv-put"} {
			if durability == "sync" && (op == "none" || op == "attr-get" || op == "kv-get") {
				continue // reads do not depend on durability
			}
			b.Run(durability+"/"+op, func(b *testing.B) {
				p := &broker.Publish{Topic: op, QoS: 1, Payload: []byte(strconv.Itoa(svcBenchLoop))}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if v := res.Client.AuthorizePublish(p); v.Decision != broker.Allow {
						b.Fatalf("call %d: %+v", i, v)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*svcBenchLoop), "ns/call")
			})
		}
	}
}

// BenchmarkServiceGate measures what every service call pays before its
// body runs: the grant check and the token bucket (golang.org/x/time/rate
// Limiter.Allow), and the bucket alone, with caps that never refuse.
// "parallel" has every CPU calling through one extension's bucket, whose
// mutex they then share.
func BenchmarkServiceGate(b *testing.B) {
	m := &Manifest{Services: []string{"storage"}}
	in := &instance{cb: abi.CallbackAuthorizePublish}
	b.Run("admit", func(b *testing.B) {
		g := newServiceGate(m, 1e12, 1<<30)
		for i := 0; i < b.N; i++ {
			if st := g.admit(in, abi.FuncStorageGet); st != abi.StatusOK {
				b.Fatalf("status %d", st)
			}
		}
	})
	b.Run("limiter-allow", func(b *testing.B) {
		l := rate.NewLimiter(rate.Limit(1e12), 1<<30)
		for i := 0; i < b.N; i++ {
			if !l.Allow() {
				b.Fatal("refused")
			}
		}
	})
	b.Run("admit-parallel", func(b *testing.B) {
		g := newServiceGate(m, 1e12, 1<<30)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if st := g.admit(in, abi.FuncStorageGet); st != abi.StatusOK {
					b.Errorf("status %d", st)
					return
				}
			}
		})
	})
}
