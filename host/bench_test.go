package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/load"
)

// BenchmarkAuthorizePublish measures one authorize_publish call into a
// Go-built guest (testdata/guests/bench), through the host's client
// authorizer: record encoding into guest memory, the call, the decision.
// "guarded" runs with the call-deadline guard (compiled into the guest,
// interrupt.go), as every extension does; "unguarded" without it
// (testUnguarded, which no manifest can set), to show what the guard
// costs. The call deadline is a minute: on a machine shared with other
// jobs a call can wait for a CPU longer than the default 100 ms, and the
// watchdog would then halt the instance and fail the benchmark. Read
// cpu-ns/op (reportCPU); BenchmarkCallLayers splits the figure.
//
// "kept" is the guarded extension answering from the authorization cache
// (testdata/guests/authzcache marks its NEXT on next/ topics with
// cache_result, ABI 1.4): after the first call, no call at all. "none" is
// the allow-all example, which has no authorize_publish: the client's
// permissions alone. "wat" is testdata/wasm/ok/wat_auth, written by hand
// in WAT: its authorize_publish compares the topic's first bytes and
// answers NEXT, what a guest without a language runtime costs (the lower
// bound for C, Rust or AssemblyScript).
func BenchmarkAuthorizePublish(b *testing.B) {
	guest := func(name string) func() string {
		return func() string { return buildGuest(b, "testdata/guests", name) }
	}
	for _, tc := range []struct {
		name      string
		unguarded bool
		wasm      func() string
		topic     string
	}{
		{"unguarded", true, guest("bench"), "devices/sensor-1/temperature"},
		{"guarded", false, guest("bench"), "devices/sensor-1/temperature"},
		{"kept", false, guest("authzcache"), "next/sensor-1/temperature"},
		{"none", false, func() string { return example(b, "allow-all") }, "devices/sensor-1/temperature"},
		{"wat", false, func() string { return wasmFixture("ok/wat_auth") }, "devices/sensor-1/temperature"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			testUnguarded = tc.unguarded
			defer func() { testUnguarded = false }()
			ext := b.TempDir()
			wasm := tc.wasm()
			installExtension(b, ext, "bench", wasm, 0, "limits:\n  pool_size: 1\n  call_deadline: 1m\n")
			h, logs := newTestHost(b, ext)
			user, pass := "u", "p"
			if tc.name == "wat" {
				user, pass = "wat", "secret"
			}
			res := h.Authenticate(context.Background(), connect(user, pass))
			if res.Decision != broker.Allow {
				b.Fatalf("authenticate: %+v", res)
			}
			p := &broker.Publish{Topic: tc.topic, QoS: 1, Payload: []byte(`{"t":21.5}`)}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if v := res.Client.AuthorizePublish(p); v.Decision != broker.Allow {
					b.Fatalf("call %d: %+v\n%s", i, v, lastLines(logs.String(), 5))
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkCallLayers splits one authorize_publish call into layers, to
// show where its time goes (bench/README.md, "Where the gate's time
// goes"), each guarded and unguarded:
//
//   - "marker": the ABI marker export, which returns a constant: wazero's
//     entry into and exit from a Go guest, and Go's export wrapper;
//   - "guest": the authorize_publish export with the record already in
//     the guest buffer (instance.run): the above plus the SDK's decoding,
//     the handler and the answer;
//   - "host": the whole path, as BenchmarkAuthorizePublish: the above plus
//     the chain, the pool hand-off and encoding the record.
//
// Subtracting neighbours gives each layer's share. Read cpu-ns/op: see
// reportCPU.
func BenchmarkCallLayers(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "bench")
	for _, unguarded := range []bool{false, true} {
		name := "guarded"
		if unguarded {
			name = "unguarded"
		}
		testUnguarded = unguarded
		ext := b.TempDir()
		installExtension(b, ext, "bench", wasm, 0, "limits:\n  pool_size: 1\n  call_deadline: 1m\n")
		h, logs := newTestHost(b, ext)
		testUnguarded = false
		res := h.Authenticate(context.Background(), connect("u", "p"))
		if res.Decision != broker.Allow {
			b.Fatalf("authenticate: %+v", res)
		}
		p := &broker.Publish{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`)}
		e := h.chain.Load().callers(abi.CallbackAuthorizePublish)[0]
		run := func(b *testing.B, cb abi.Callback) {
			in, err := e.acquire(context.Background(), cb, new(bool))
			if err != nil {
				b.Fatal(err)
			}
			rec := abi.PublishRecord{QoS: p.QoS, ClientID: "c", Username: "u", Topic: p.Topic, Payload: p.Payload}
			n := uint64(len(rec.Encode(in.scratch())))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				in.stack[0] = n
				if _, err := in.run(cb); err != nil {
					b.Fatalf("call %d: %v", i, err)
				}
			}
			reportCPU(b, cpu)
			b.StopTimer()
			e.release(in, cb, nil)
		}
		b.Run(name+"/marker", func(b *testing.B) { run(b, abi.CallbackMarker) })
		b.Run(name+"/guest", func(b *testing.B) { run(b, abi.CallbackAuthorizePublish) })
		b.Run(name+"/host", func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if v := res.Client.AuthorizePublish(p); v.Decision != broker.Allow {
					b.Fatalf("call %d: %+v\n%s", i, v, lastLines(logs.String(), 5))
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkAuthenticate measures one CONNECT authentication by a Go guest
// (testdata/guests/bench): the CONNECT record encoded into guest memory,
// the SDK's decoding, the call, the client authorizer made of the answer.
// "guarded" is what every extension runs with; "unguarded" shows the
// guard's share; "guarded-deadline" passes a context with a deadline, as
// the broker does, so that the call also ends with it.
func BenchmarkAuthenticate(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "bench")
	for _, tc := range []struct {
		name      string
		unguarded bool
		deadline  bool
	}{
		{"unguarded", true, false},
		{"guarded", false, false},
		{"guarded-deadline", false, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			testUnguarded = tc.unguarded
			defer func() { testUnguarded = false }()
			ext := b.TempDir()
			installExtension(b, ext, "bench", wasm, 0, "limits:\n  pool_size: 1\n")
			h, logs := newTestHost(b, ext)
			ctx := context.Background()
			if tc.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Hour)
				defer cancel()
			}
			c := connect("user", "password")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res := h.Authenticate(ctx, c); res.Decision != broker.Allow {
					b.Fatalf("call %d: %v\n%s", i, res, lastLines(logs.String(), 5))
				}
			}
		})
	}
}

// reportCPU reports the process's CPU time since cpu per iteration, as
// cpu-ns/op. On a machine shared with other jobs, ns/op (wall clock) also
// counts the time this process waited for a CPU, and ran 2-8 times the
// CPU figure in the measurements of bench/README.md; cpu-ns/op does not.
// The benchmarks that use it allocate nothing per call, so little else
// runs meanwhile.
func reportCPU(b *testing.B, cpu time.Duration) {
	if n := cpuTime() - cpu; n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "cpu-ns/op")
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// brokerFor starts a broker with the given security: "native" is the
// in-process brokertest.AllowAll; anything else is a folder of extensions.
func brokerFor(b *testing.B, ext broker.Extensions) string {
	return brokerWith(b, ext, "")
}

// brokerWith is brokerFor with a durability mode ("" for the default).
func brokerWith(b *testing.B, ext broker.Extensions, durability string) string {
	cfg := config.Default()
	if durability != "" {
		cfg.Durability.Mode = durability
	}
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(b.TempDir(), "data")
	cfg.Log.Level = "error"
	srv, err := broker.New(broker.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Extensions: ext})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	return srv.Addr("tcp")
}

// hostWith loads the named extensions (wasm paths by id) into a host.
func hostWith(b *testing.B, exts map[string]string) broker.Extensions {
	dir := b.TempDir()
	for id, wasm := range exts {
		installExtension(b, dir, id, wasm, 0, "")
	}
	h, _ := newTestHost(b, dir)
	return broker.Extensions{Authenticator: h, Events: h, Interceptors: h}
}

// BenchmarkBrokerConnect measures CONNECT/CONNACK/DISCONNECT round trips
// through the broker on loopback, 8 clients at a time, with the allow-all
// extension (Wasm) and with the native allow-everything implementation.
func BenchmarkBrokerConnect(b *testing.B) {
	for _, tc := range []struct {
		name string
		ext  func(b *testing.B) broker.Extensions
	}{
		{"native", func(*testing.B) broker.Extensions { return broker.Extensions{Authenticator: brokertest.AllowAll{}} }},
		{"wasm-allow-all", func(b *testing.B) broker.Extensions {
			return hostWith(b, map[string]string{"allow-all": example(b, "allow-all")})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr := brokerFor(b, tc.ext(b))
			var id atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, err := brokertest.Dial(addr, "c"+strconv.FormatInt(id.Add(1), 10))
					if err != nil {
						b.Error(err)
						return
					}
					_ = c.Close()
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "connects/s")
		})
	}
}

// BenchmarkBrokerPublish measures QoS 0 PUBLISH throughput through the
// broker on loopback with: allow-all (no Wasm call per message), topic-acl
// (host-evaluated default permissions, no Wasm call), and the bench guest
// (one guarded Wasm authorize_publish call per message). One client
// publishes to its own topic, devices/<id>/t, and is subscribed to it, so
// topic-acl allows both directions (internal/load's Flow with Echo); the
// figure counts delivered messages.
func BenchmarkBrokerPublish(b *testing.B) {
	for _, tc := range []struct {
		name string
		exts func(b *testing.B) map[string]string
	}{
		{"allow-all", func(b *testing.B) map[string]string { return map[string]string{"allow-all": example(b, "allow-all")} }},
		{"topic-acl", func(b *testing.B) map[string]string { return map[string]string{"topic-acl": example(b, "topic-acl")} }},
		{"wasm-authorize-publish", func(b *testing.B) map[string]string {
			return map[string]string{"bench": buildGuest(b, "testdata/guests", "bench")}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr := brokerFor(b, hostWith(b, tc.exts(b)))
			const payload = 64
			b.SetBytes(payload)
			b.ResetTimer()
			res, err := load.Flow{Addr: addr, Name: "bench", Topic: "devices/{clientid}/t", Publishers: 1,
				Messages: b.N, PayloadSize: payload, Echo: true}.Run()
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.Lost != 0 {
				b.Fatalf("%d of %d messages lost", res.Lost, b.N)
			}
			b.ReportMetric(res.Rate(), "msgs/s")
		})
	}
}

// BenchmarkBrokerPublishGuard measures what a Wasm authorize_publish on
// every message costs the broker: PUBLISH throughput from one publisher to
// one subscriber on loopback with allow-all alone (no Wasm call per
// message) and with the publish-guard example added (one guarded call per
// message), or a no-op Go intercept_publish_inbound instead (one guarded
// call per message, a MESSAGE record), at QoS 0 and at QoS 1 (durability
// "none", so that the figure is the publish path rather than the disk; up
// to 256 unacknowledged). The ratio of two msgs/s figures is a call's
// cost; on a busy machine the ratio of the cpu-µs/msg figures is the
// steadier one.
func BenchmarkBrokerPublishGuard(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, tc := range []struct {
			name string
			exts func(b *testing.B) map[string]string
		}{
			{"allow-all", func(b *testing.B) map[string]string { return map[string]string{"allow-all": example(b, "allow-all")} }},
			{"publish-guard", func(b *testing.B) map[string]string {
				return map[string]string{"allow-all": example(b, "allow-all"), "publish-guard": example(b, "publish-guard")}
			}},
			{"intercept-noop", func(b *testing.B) map[string]string {
				return map[string]string{"allow-all": example(b, "allow-all"), "interceptnoop": buildGuest(b, "testdata/guests", "interceptnoop")}
			}},
		} {
			b.Run(fmt.Sprintf("qos%d/%s", qos, tc.name), func(b *testing.B) {
				addr := brokerWith(b, hostWith(b, tc.exts(b)), "none")
				const payload = 64
				b.SetBytes(payload)
				b.ResetTimer()
				cpu := cpuTime()
				res, err := load.Flow{Addr: addr, Name: "bench", Topic: "bench/guard/t", Publishers: 1, Subscribers: 1,
					Messages: b.N, QoS: qos, PayloadSize: payload, InFlight: 256, StallAfter: 30 * time.Second}.Run()
				cpu = cpuTime() - cpu
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if res.Lost != 0 {
					b.Fatalf("%d of %d messages lost", res.Lost, b.N)
				}
				b.ReportMetric(res.Rate(), "msgs/s")
				// CPU per message (broker and load generator, the same in
				// both cases) is what the guard costs on a machine shared
				// with other work, where msgs/s swings.
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e3, "cpu-µs/msg")
			})
		}
	}
}

// BenchmarkInterceptPublish measures one intercept_publish_inbound chain
// through Host.InterceptPublish (what the broker calls per PUBLISH) into a
// Go guest (testdata/guests/interceptprobe), guarded as every extension
// is:
//
//   - "none": no interceptor (the broker skips the call then: Active);
//   - "noop": an interceptor that changes nothing: the record encoded into
//     guest memory, the call, the answer; nothing allocated; with a 10-byte
//     and a 1 KiB payload (the record carries it);
//   - "payload": one that replaces a 1 KiB payload (a copy with a byte
//     flipped, from the guest's own buffer): packet_set, the host's one
//     copy of the new payload, applying it.
//
// Read cpu-ns/op (reportCPU).
func BenchmarkInterceptPublish(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "interceptprobe")
	for _, tc := range []struct {
		name, mode string
		size       int
	}{
		{"none-1KiB", "", 1024},
		{"noop-10B", "noop", 10},
		{"noop-1KiB", "noop", 1024},
		{"payload-1KiB", "payload", 1024},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ext := b.TempDir()
			if tc.mode != "" {
				installExtension(b, ext, "probe", wasm, 0, "limits:\n  pool_size: 1\n  call_deadline: 1m\nconfig:\n  mode: "+tc.mode+"\n")
			}
			h, logs := newTestHost(b, ext)
			cl := broker.Peer{ID: "sensor-1", Username: "u", ProtocolVersion: 5}
			payload := []byte(strings.Repeat("p", tc.size))
			m := &broker.Message{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: payload}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				m.Payload = payload
				if p := h.InterceptPublish(cl, m); p.Stop {
					b.Fatalf("call %d: prevented %+v", i, p)
				}
				if changed := m.Payload[0] != 'p'; changed != (tc.mode == "payload") || len(m.Payload) != tc.size {
					b.Fatalf("call %d: payload %q...\n%s", i, m.Payload[:min(8, len(m.Payload))], lastLines(logs.String(), 5))
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkInterceptDelivery measures Host.WantsDelivery, which the broker
// asks on every delivery to a subscriber, when the only outbound
// interceptor's filters match nothing: what a broker with such an
// extension pays per delivery in the host (the broker's own part is
// broker BenchmarkEncodeDelivery/unmatched-outbound), no Wasm call made.
func BenchmarkInterceptDelivery(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "interceptprobe")
	ext := b.TempDir()
	installExtension(b, ext, "probe", wasm, 0, "limits:\n  pool_size: 1\n  call_deadline: 1m\n"+
		"config:\n  mode: prevent\n  outbound_filters: [\"alerts/#\", \"legacy/+/status\"]\n")
	h, _ := newTestHost(b, ext)
	cl := broker.Peer{ID: "subscriber", ProtocolVersion: 5}
	m := &broker.Message{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if h.WantsDelivery(cl.ID, m.Topic) {
			b.Fatalf("call %d: wants a delivery its filters do not match", i)
		}
	}
}

// BenchmarkInterceptLayers splits one no-op intercept_publish_inbound call
// (testdata/guests/interceptnoop, the harness's propolis-intercept-in
// guest, 10-byte payload) into layers, as BenchmarkCallLayers does for
// authorize_publish, guarded and unguarded:
//
//   - "marker": wazero's entry into and exit from the Go guest;
//   - "guest": the export with the MESSAGE record already in the guest
//     buffer: the above plus the SDK's decoding, the handler and the
//     answer;
//   - "host": Host.InterceptPublish, the broker's whole path: the above
//     plus the chain, the pool hand-off and encoding the record.
//
// Read cpu-ns/op (reportCPU).
func BenchmarkInterceptLayers(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "interceptnoop")
	for _, unguarded := range []bool{false, true} {
		name := "guarded"
		if unguarded {
			name = "unguarded"
		}
		testUnguarded = unguarded
		ext := b.TempDir()
		installExtension(b, ext, "noop", wasm, 0, "limits:\n  pool_size: 1\n  call_deadline: 1m\n")
		h, logs := newTestHost(b, ext)
		testUnguarded = false
		cl := broker.Peer{ID: "sensor-1", Username: "u", ProtocolVersion: 4}
		payload := []byte(`{"t":21.5}`)
		m := &broker.Message{Topic: "devices/sensor-1/temperature", Payload: payload}
		const cb = abi.CallbackInterceptPublishInbound
		e := h.chain.Load().callers(cb)[0]
		run := func(b *testing.B, cb abi.Callback) {
			in, err := e.acquire(context.Background(), cb, new(bool))
			if err != nil {
				b.Fatal(err)
			}
			rec := abi.MessageRecord{Direction: abi.Inbound, ProtocolVersion: cl.ProtocolVersion, ClientID: cl.ID,
				Username: cl.Username, Publisher: cl.ID, Message: abi.Message{Topic: m.Topic, Payload: m.Payload}}
			n := uint64(len(rec.Encode(in.scratch())))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				in.stack[0] = n
				if _, err := in.run(cb); err != nil {
					b.Fatalf("call %d: %v", i, err)
				}
			}
			reportCPU(b, cpu)
			b.StopTimer()
			e.release(in, cb, nil)
		}
		b.Run(name+"/marker", func(b *testing.B) { run(b, abi.CallbackMarker) })
		b.Run(name+"/guest", func(b *testing.B) { run(b, cb) })
		b.Run(name+"/host", func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if p := h.InterceptPublish(cl, m); p.Stop {
					b.Fatalf("call %d: prevented %+v\n%s", i, p, lastLines(logs.String(), 5))
				}
			}
			reportCPU(b, cpu)
		})
	}
}
