package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// wired is a host and a broker wired as cmd/propolis wires them: the host
// first, the broker with the host as its extensions, UseBroker, then
// LoadAll.
type wired struct {
	h    *Host
	srv  *broker.Server
	addr string
	logs *logBuffer
}

// startWired runs extDir's extensions against a real broker; opts may set
// the host's options (Dir and Logger are filled in).
func startWired(t testing.TB, extDir string, opts Options) *wired {
	t.Helper()
	return startWiredWith(t, extDir, opts, nil)
}

// startWiredWith is startWired with the broker configuration changed by
// change, if not nil.
func startWiredWith(t testing.TB, extDir string, opts Options, change func(*config.Config)) *wired {
	t.Helper()
	logs := &logBuffer{}
	var w io.Writer = logs
	opts.Dir, opts.BrokerVersion = extDir, "test"
	opts.CacheDir = filepath.Join(os.TempDir(), "propolis-test-wasm-cache")
	opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	hostLogs.Store(h, logs)
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	if change != nil {
		change(cfg)
	}
	srv, err := broker.New(broker.Options{Config: cfg, Logger: h.log, Extensions: broker.Extensions{Authenticator: h, Events: h}})
	if err != nil {
		t.Fatal(err)
	}
	h.UseBroker(srv)
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &wired{h: h, srv: srv, addr: srv.Addr("tcp"), logs: logs}
}

// probe sends one svcprobe command and returns its answer (the PUBACK's
// reason string).
func probe(t testing.TB, c *paho.Client, cmd string) string {
	t.Helper()
	r, err := c.Publish(ctx(t), &paho.Publish{Topic: "svc/x", QoS: 1, Payload: []byte(cmd)})
	if err != nil && r == nil {
		t.Fatalf("probe %q: %v", cmd, err)
	}
	if r == nil || r.Properties == nil {
		t.Fatalf("probe %q: no PUBACK reason (%+v, %v)", cmd, r, err)
	}
	return r.Properties.ReasonString
}

// probeClient installs svcprobe with the manifest lines extra, starts a
// wired broker and connects an MQTT 5 client as id.
func probeClient(t *testing.T, extra string, opts Options, id string) (*wired, *paho.Client) {
	t.Helper()
	extDir := t.TempDir()
	installExtension(t, extDir, "svcprobe", buildGuest(t, "testdata/guests", "svcprobe"), 0, extra)
	w := startWired(t, extDir, opts)
	c, _, err := v5(t, w.addr, id, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return w, c
}

// TestSessionAttributeServices runs every session attribute function from
// a Go guest against the real broker and store, and reads the outcome on
// the wire.
func TestSessionAttributeServices(t *testing.T) {
	w, c := probeClient(t, "services: [session_attributes]\n", Options{}, "c1")
	steps := []struct{ cmd, want string }{
		{"get|c1|k", "err:propolis: NOT_FOUND"},
		{"get|nobody|k", "err:propolis: NOT_FOUND"},
		{"put|c1|k|v1", "ok"},
		{"get|c1|k", "ok:v1"},
		{"ifnewer|c1|t|a|100|0", "ok:replaced=true,had=false,prev="},
		{"ifnewer|c1|t|b|50|0", "ok:replaced=false,had=true,prev=a"},
		{"ifnewer|c1|t|c|100|0", "ok:replaced=false,had=true,prev=a"},
		{"ifnewer|c1|t|d|100|1", "ok:replaced=true,had=true,prev=a"},
		{"ifnewer|c1|t|e|101|0", "ok:replaced=true,had=true,prev=d"},
		{"getall|c1", "ok:k=v1@"}, // the time is the broker's: checked below
		{"rm|c1|k", "ok"},
		{"rm|c1|k", "ok"},
		{"getall|c1", "ok:t=e@101"},
		// A result beyond the SDK's 4 KiB buffer comes through take_result.
		{"putbig|c1|big|10000", "ok"},
		{"getlen|c1|big", "ok:10000"},
		// Bad input is a status.
		{"put|c1||v", "err:propolis: INVALID_ARGUMENT"},
		{"putbig|c1|k|10241", "err:propolis: TOO_LARGE"},
		{"put|c1|" + strings.Repeat("k", 257) + "|v", "err:propolis: TOO_LARGE"},
	}
	for _, s := range steps {
		got := probe(t, c, s.cmd)
		if !strings.HasPrefix(got, s.want) {
			t.Errorf("%s: got %q, want %q", s.cmd, got, s.want)
		}
	}
	// The broker holds what the guest wrote.
	v, ok, err := w.srv.Attribute("c1", "t")
	if err != nil || !ok || string(v) != "e" {
		t.Errorf("broker's attribute t = %q, %v, %v; want e", v, ok, err)
	}
	if st := statusOf(t, w.h, "svcprobe"); fmt.Sprint(st.Services) != "[session_attributes]" || st.ServiceRate != DefaultServiceRate {
		t.Errorf("status: services %v, rate %v", st.Services, st.ServiceRate)
	}
}

// TestServiceNotPermitted: a service the manifest does not grant answers
// NOT_PERMITTED, is counted, and is logged once however often it is
// called.
func TestServiceNotPermitted(t *testing.T) {
	w, c := probeClient(t, "", Options{}, "c1")
	for range 3 {
		if got := probe(t, c, "put|c1|k|v"); got != "err:propolis: NOT_PERMITTED" {
			t.Fatalf("got %q, want NOT_PERMITTED", got)
		}
	}
	if st := statusOf(t, w.h, "svcprobe"); st.Refused("NOT_PERMITTED") != 3 {
		t.Errorf("NOT_PERMITTED = %d, want 3", st.Refused("NOT_PERMITTED"))
	}
	if n := strings.Count(w.logs.String(), "host service not granted"); n != 1 {
		t.Errorf("%d log lines about the refusal, want 1 (rate-limited)", n)
	}
	if _, ok, _ := w.srv.Attribute("c1", "k"); ok {
		t.Error("a refused put wrote the attribute")
	}
}

// TestServiceRateLimit: with a burst of N and a rate too slow to refill
// during the test, N+1 calls give exactly one RATE_LIMITED; the operator's
// cap wins over a manifest that asks for more.
func TestServiceRateLimit(t *testing.T) {
	const burst = 20
	w, c := probeClient(t, "services: [session_attributes]\nlimits:\n  service_rate: 1000\n  service_burst: 500\n",
		Options{ServiceRate: 0.001, ServiceBurst: burst}, "c1")
	if got, want := probe(t, c, fmt.Sprintf("burst|%d|c1|k", burst+1)), fmt.Sprintf("ok:ok=%d,limited=1,other=0", burst); got != want {
		t.Errorf("burst of %d: got %q, want %q", burst+1, got, want)
	}
	st := statusOf(t, w.h, "svcprobe")
	if st.Refused("RATE_LIMITED") != 1 || st.ServiceRate != 0.001 || st.ServiceBurst != burst {
		t.Errorf("status: RATE_LIMITED %d, rate %v, burst %d", st.Refused("RATE_LIMITED"), st.ServiceRate, st.ServiceBurst)
	}
}

// TestPutIfNewerHammer: two extensions, each with a pool of instances,
// write one session attribute with PutSessionAttributeIfNewer from many
// clients at once, with times in random order. Every answer keeps the
// rule (a value replaced was older, one not replaced at least as new:
// svcprobe's hammer command checks each and fails the PUBLISH otherwise),
// and the value left is the newest time written.
func TestPutIfNewerHammer(t *testing.T) {
	extDir := t.TempDir()
	probe := buildGuest(t, "testdata/guests", "svcprobe")
	installExtension(t, extDir, "probe-a", probe, 2, "services: [session_attributes]\nlimits:\n  pool_size: 4\n  call_deadline: 10s\n")
	installExtension(t, extDir, "probe-b", probe, 1, "services: [session_attributes]\nlimits:\n  pool_size: 4\n  call_deadline: 10s\n")
	w := startWired(t, extDir, Options{})
	if _, _, err := v5(t, w.addr, "target", "", "", nil); err != nil {
		t.Fatal(err)
	}

	const clients, each = 8, 40
	times := rand.Perm(clients * each) // distinct times, in random order
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for i := range clients {
		c, _, err := v5(t, w.addr, fmt.Sprintf("writer-%d", i), "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ts := range times[i*each : (i+1)*each] {
				cmd := fmt.Sprintf("hammer|target|k|%d", 1_000_000+ts)
				r, err := c.Publish(ctx(t), &paho.Publish{Topic: "svc/h", QoS: 1, Payload: []byte(cmd)})
				switch {
				case r == nil:
					errs <- fmt.Errorf("%s: %v", cmd, err)
				case r.ReasonCode >= 0x80:
					reason := ""
					if r.Properties != nil {
						reason = r.Properties.ReasonString
					}
					errs <- fmt.Errorf("%s: PUBACK %#x %s", cmd, r.ReasonCode, reason)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	v, ok, err := w.srv.Attribute("target", "k")
	if want := fmt.Sprint(1_000_000 + clients*each - 1); err != nil || !ok || string(v) != want {
		t.Errorf("attribute after the hammer = %q, %v, %v; want the newest, %s", v, ok, err, want)
	}
	for _, id := range []string{"probe-a", "probe-b"} {
		if st := statusOf(t, w.h, id); st.Calls < clients*each || st.Errors != 0 {
			t.Errorf("%s: %d calls, %d errors; want %d calls, none failed", id, st.Calls, st.Errors, clients*each)
		}
	}
}
