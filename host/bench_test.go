package host

import (
	"context"
	"fmt"
	"testing"

	"github.com/propolis-mqtt/propolis/broker"
)

// BenchmarkAuthorizePublish measures one authorize_publish call into a
// Go-built guest (testdata/guests/bench), through the host's client
// authorizer: record encoding into guest memory, the call, the decision.
// "guarded" runs with the call-deadline guard (wazero's close-on-context-
// done), "unguarded" without it (manifest call_deadline < 0).
func BenchmarkAuthorizePublish(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "bench")
	for _, tc := range []struct{ name, limits string }{
		{"unguarded", "limits:\n  call_deadline: -1s\n  pool_size: 1\n"},
		{"guarded", "limits:\n  call_deadline: 100ms\n  pool_size: 1\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ext := b.TempDir()
			installExtension(b, ext, "bench", wasm, 0, tc.limits)
			h, _ := newTestHost(b, ext)
			res := h.Authenticate(context.Background(), connect("u", "p"))
			if res.Decision != broker.Allow {
				b.Fatalf("authenticate: %+v", res)
			}
			p := &broker.Publish{Topic: "devices/sensor-1/temperature", QoS: 1, Payload: []byte(`{"t":21.5}`)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if v := res.Client.AuthorizePublish(p); v.Decision != broker.Allow {
					b.Fatalf("call %d: %+v", i, v)
				}
			}
		})
	}
}

// BenchmarkAuthenticate measures one CONNECT authentication by a Go guest.
func BenchmarkAuthenticate(b *testing.B) {
	wasm := buildGuest(b, "testdata/guests", "bench")
	ext := b.TempDir()
	installExtension(b, ext, "bench", wasm, 0, "limits:\n  pool_size: 1\n")
	h, _ := newTestHost(b, ext)
	c := connect("user", "password")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := h.Authenticate(context.Background(), c); res.Decision != broker.Allow {
			b.Fatal(fmt.Sprint(res))
		}
	}
}
