package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// The extension metrics over a real broker, a real host running real
// .wasm from the repository, and real MQTT clients on loopback: each
// scenario moves its metrics, read back through a Prometheus registry.

// extRig is a broker whose extensions come from dir, observed by x.
type extRig struct {
	h    *host.Host
	addr string
	dir  string
	x    *Extensions
	reg  *prometheus.Registry
}

// startExtRig installs nothing: the caller fills dir first (installExt),
// then the host loads it, and Watch follows the folder when watch is set.
func startExtRig(t *testing.T, dir string, opts host.Options, watch bool) *extRig {
	t.Helper()
	x := NewExtensions()
	opts.Dir, opts.Observer, opts.BrokerVersion = dir, x, "test"
	opts.CacheDir = filepath.Join(os.TempDir(), "propolis-test-wasm-cache")
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := host.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	srv, err := broker.New(broker.Options{Config: cfg, Logger: opts.Logger,
		Extensions: broker.Extensions{Authenticator: h, Events: h, Interceptors: h}})
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
	if watch {
		h.Watch()
	}
	x.Watch(h)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(x)
	return &extRig{h: h, addr: srv.Addr("tcp"), dir: dir, x: x, reg: reg}
}

// wasmFixture is a hand-written module of testdata/wasm.
func wasmFixture(name string) string {
	return filepath.Join("..", "testdata", "wasm", name+".wasm")
}

var guests struct {
	sync.Mutex
	dir   string
	built map[string]string
}

// guest builds a Go test guest of testdata/guests once per test binary.
func guest(t testing.TB, name string) string {
	t.Helper()
	guests.Lock()
	defer guests.Unlock()
	if p, ok := guests.built[name]; ok {
		return p
	}
	if guests.dir == "" {
		d, err := os.MkdirTemp("", "propolis-metrics-guests")
		if err != nil {
			t.Fatal(err)
		}
		guests.dir, guests.built = d, map[string]string{}
	}
	out := filepath.Join(guests.dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./"+name)
	cmd.Dir = filepath.Join("..", "testdata", "guests")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest %s: %v\n%s", name, err, b)
	}
	guests.built[name] = out
	return out
}

// installExt writes extensions/<id>/ with the module at wasm and a
// manifest of version, with extra appended.
func installExt(t testing.TB, extDir, id, wasm, version, extra string) {
	t.Helper()
	dir := filepath.Join(extDir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ext.wasm"), bin, 0o644); err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf("id: %s\nversion: %s\nmodule: ext.wasm\n%s", id, version, extra)
	if err := os.WriteFile(filepath.Join(dir, host.ManifestFile), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
}

// connect sends an MQTT 5 CONNECT and returns the CONNACK's reason code
// (0: accepted), and the client when accepted.
func connect(t *testing.T, addr, id, user, pass string) (byte, *paho.Client) {
	t.Helper()
	c := brokertest.DialV5(t, addr, paho.ClientConfig{ClientID: id})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(pass), true
	}
	ack, err := c.Connect(brokertest.OpCtx(t), cp)
	if ack == nil {
		t.Fatalf("connect %s: no CONNACK: %v", id, err)
	}
	if err != nil {
		return ack.ReasonCode, nil
	}
	return ack.ReasonCode, c
}

// value returns the value of the sample of family name whose labels
// include want, scraped now (families, sample); -1 when there is none.
func (r *extRig) value(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := sample(families(t, r.reg), name, want)
	if !ok {
		return -1
	}
	return v
}

// calls is the labels of propolis_extension_calls_total.
func calls(ext, cb, outcome string) map[string]string {
	return map[string]string{"extension": ext, "callback": cb, "outcome": outcome}
}

// TestExtensionMetricsConnect: an allowed and a denied CONNECT through the
// hand-written wat-auth, counted by outcome and timed; the status metrics
// say one running security extension with its instances; every metric
// passes the Prometheus linter.
func TestExtensionMetricsConnect(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "limits:\n  pool_size: 2\n")
	r := startExtRig(t, dir, host.Options{}, false)
	if code, _ := connect(t, r.addr, "ok", "wat", "secret"); code != 0 {
		t.Fatalf("allowed CONNECT: %#x", code)
	}
	if code, _ := connect(t, r.addr, "no", "wat", "wrong"); code != 0x86 {
		t.Fatalf("denied CONNECT: %#x, want 0x86", code)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"propolis_extension_calls_total", calls("wat-auth", "authenticate", "allow"), 1},
		{"propolis_extension_calls_total", calls("wat-auth", "authenticate", "deny"), 1},
		// wat-auth also authorizes publishes, so authentication keeps
		// off the pool's last pool_size instances: the first CONNECT
		// found none it could take, waited, and the pool grew by one
		// (host/pool.go); the second took that one.
		{"propolis_extension_calls_total", calls("wat-auth", "start", "ok"), 3}, // one per instance
		{"propolis_extension_instances", map[string]string{"extension": "wat-auth"}, 3},
		{"propolis_extension_instance_waits_total", map[string]string{"extension": "wat-auth"}, 1},
		{"propolis_extension_call_duration_seconds", map[string]string{"extension": "wat-auth", "callback": "authenticate"}, 2},
		{"propolis_extension_reloads_total", map[string]string{"extension": "wat-auth"}, 0},
		{"propolis_extension_crash_loop_stops_total", map[string]string{"extension": "wat-auth"}, 0},
		{"propolis_extensions", map[string]string{"state": "running"}, 1},
		{"propolis_extensions", map[string]string{"state": "failed"}, 0},
		{"propolis_security_extensions", nil, 1},
	} {
		if got := r.value(t, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("wat-auth", "authenticate", "trap")); got != -1 {
		t.Errorf("an outcome that never happened is exported: %v", got)
	}
	problems, err := testutil.GatherAndLint(r.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestExtensionMetricsTrapAndCrashLoop: a trapping authenticator counts a
// trap per CONNECT, then a crash-loop stop after ten; the extension is
// then failed and no security extension runs.
func TestExtensionMetricsTrapAndCrashLoop(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "trap", wasmFixture("error/trap"), "1.0.0", "")
	r := startExtRig(t, dir, host.Options{}, false)
	if code, _ := connect(t, r.addr, "c0", "u", "p"); code != 0x80 {
		t.Fatalf("CONNECT to a trapping extension: %#x, want 0x80", code)
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("trap", "authenticate", "trap")); got != 1 {
		t.Fatalf("trap outcomes after one CONNECT: %v", got)
	}
	// Ten failures within ten seconds stop it. A CONNECT that finds the
	// discarded instance's replacement still starting fails without
	// counting (unavailable), so CONNECT until the stop, at most 40 times.
	stops := func() float64 {
		return r.value(t, "propolis_extension_crash_loop_stops_total", map[string]string{"extension": "trap"})
	}
	for i := 1; i < 40 && stops() == 0; i++ {
		connect(t, r.addr, fmt.Sprintf("c%d", i), "u", "p")
	}
	poll.Until(t, "a crash-loop stop", func() bool { return stops() == 1 })
	poll.Until(t, "the extension counted failed", func() bool {
		return r.value(t, "propolis_extensions", map[string]string{"state": "failed"}) == 1
	})
	if got := r.value(t, "propolis_extensions", map[string]string{"state": "running"}); got != 0 {
		t.Errorf("running extensions after the crash loop: %v", got)
	}
	if got := r.value(t, "propolis_security_extensions", nil); got != 0 {
		t.Errorf("security extensions after the crash loop: %v", got)
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("trap", "authenticate", "trap")); got < 10 {
		t.Errorf("trap outcomes: %v, want at least 10", got)
	}
	// The stopped extension stays in the chain and fails closed: once its
	// pool is closed, a later CONNECT finds no instance.
	poll.Until(t, "the stopped extension's pool closed", func() bool {
		return r.value(t, "propolis_extension_instances", map[string]string{"extension": "trap"}) == 0
	})
	before := r.value(t, "propolis_extension_calls_total", calls("trap", "authenticate", "unavailable"))
	if code, _ := connect(t, r.addr, "later", "u", "p"); code == 0 {
		t.Fatal("a CONNECT let in by a stopped extension")
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("trap", "authenticate", "unavailable")); got != max(before, 0)+1 {
		t.Errorf("unavailable outcomes: %v after a CONNECT to the stopped extension, %v before", got, before)
	}
}

// TestExtensionMetricsDeadlineAndWaits: an authenticator that spins past
// its deadline counts deadline outcomes; with one instance, CONNECTs made
// together wait for it.
func TestExtensionMetricsDeadlineAndWaits(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "spin", wasmFixture("error/spin"), "1.0.0",
		"limits:\n  call_deadline: 200ms\n  authenticate_deadline: 200ms\n  pool_size: 1\n  max_pool_size: 1\n")
	r := startExtRig(t, dir, host.Options{}, false)
	if code, _ := connect(t, r.addr, "c", "u", "p"); code != 0x80 {
		t.Fatalf("CONNECT to a spinning extension: %#x, want 0x80", code)
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("spin", "authenticate", "deadline")); got != 1 {
		t.Fatalf("deadline outcomes: %v, want 1", got)
	}
	// Two CONNECTs at once, each call spinning for its whole deadline on
	// the pool's one instance: the second waits. At most five pairs (a
	// pair whose calls did not overlap is tried again), under the crash
	// loop's ten failures.
	waits := func() float64 {
		return r.value(t, "propolis_extension_instance_waits_total", map[string]string{"extension": "spin"})
	}
	for pair := 0; pair < 4 && waits() == 0; pair++ {
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				connect(t, r.addr, fmt.Sprintf("p%d-%d", pair, i), "u", "p")
			}()
		}
		wg.Wait()
	}
	if waits() < 1 {
		t.Fatal("no wait for an instance counted")
	}
	if got := r.value(t, "propolis_extension_instances", map[string]string{"extension": "spin"}); got > 1 {
		t.Errorf("instances: %v, want at most 1", got)
	}
}

// TestExtensionMetricsRateLimited: a host service over the extension's
// rate limit is counted by service and status, and makes the call's
// outcome rate_limited.
func TestExtensionMetricsRateLimited(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "svcprobe", guest(t, "svcprobe"), "1.0.0", "services: [session_attributes]\n")
	r := startExtRig(t, dir, host.Options{ServiceRate: 0.001, ServiceBurst: 3}, false)
	code, c := connect(t, r.addr, "c1", "", "")
	if code != 0 {
		t.Fatalf("CONNECT: %#x", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), poll.Timeout)
	defer cancel()
	ack, err := c.Publish(ctx, &paho.Publish{Topic: "svc/x", QoS: 1, Payload: []byte("burst|5|c1|k")})
	if ack == nil || ack.Properties == nil {
		t.Fatalf("PUBLISH: no PUBACK reason: %v", err)
	}
	if got, want := ack.Properties.ReasonString, "ok:ok=3,limited=2,other=0"; got != want {
		t.Fatalf("burst: %q, want %q", got, want)
	}
	svc := func(status string) map[string]string {
		return map[string]string{"extension": "svcprobe", "service": "session_attributes", "status": status}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"propolis_extension_service_calls_total", svc("RATE_LIMITED"), 2},
		{"propolis_extension_service_calls_total", svc("NOT_FOUND"), 3}, // no attribute k: the calls let through
		{"propolis_extension_calls_total", calls("svcprobe", "authorize_publish", "rate_limited"), 1},
		{"propolis_extension_calls_total", calls("svcprobe", "authenticate", "allow"), 1},
	} {
		if got := r.value(t, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("svcprobe", "authorize_publish", "deny")); got != -1 {
		t.Errorf("the rate-limited call also counted as deny: %v", got)
	}
}

// TestExtensionMetricsReloadAndRemoval: a hot reload counts one reload and
// keeps the folder's counters; removing the folder drops the extension's
// series at the next scrape.
func TestExtensionMetricsReloadAndRemoval(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "")
	r := startExtRig(t, dir, host.Options{}, true)
	if code, _ := connect(t, r.addr, "a", "wat", "secret"); code != 0 {
		t.Fatalf("CONNECT: %#x", code)
	}
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "2.0.0", "")
	poll.Until(t, "a reload counted", func() bool {
		return r.value(t, "propolis_extension_reloads_total", map[string]string{"extension": "wat-auth"}) == 1
	})
	poll.Until(t, "version 2 serving", func() bool {
		for _, st := range r.h.Status() {
			if st.ID == "wat-auth" && st.Version == "2.0.0" && st.State == host.StateRunning {
				return true
			}
		}
		return false
	})
	if code, _ := connect(t, r.addr, "b", "wat", "secret"); code != 0 {
		t.Fatalf("CONNECT after the reload: %#x", code)
	}
	if got := r.value(t, "propolis_extension_calls_total", calls("wat-auth", "authenticate", "allow")); got != 2 {
		t.Errorf("allowed CONNECTs across the reload: %v, want 2", got)
	}
	if err := os.RemoveAll(filepath.Join(dir, "wat-auth")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the removed extension's series gone", func() bool {
		return r.value(t, "propolis_extension_calls_total", calls("wat-auth", "authenticate", "allow")) == -1 &&
			r.value(t, "propolis_extension_call_duration_seconds", map[string]string{"extension": "wat-auth"}) == -1 &&
			r.value(t, "propolis_extension_reloads_total", map[string]string{"extension": "wat-auth"}) == -1
	})
	if got := r.value(t, "propolis_security_extensions", nil); got != 0 {
		t.Errorf("security extensions after the removal: %v", got)
	}
	for _, st := range []string{"running", "disabled", "failed"} {
		if got := r.value(t, "propolis_extensions", map[string]string{"state": st}); got != 0 {
			t.Errorf("propolis_extensions{state=%q} = %v after the removal, want 0", st, got)
		}
	}
	if m := *r.x.byExt.Load(); len(m) != 0 {
		t.Errorf("the observer still holds counters of %d extensions", len(m))
	}
}

// TestExtensionMetricsConcurrentScrape: calls on several goroutines while
// the registry is gathered over and over; every call is counted once, in
// its outcome and its histogram.
func TestExtensionMetricsConcurrentScrape(t *testing.T) {
	dir := t.TempDir()
	installExt(t, dir, "wat-auth", wasmFixture("ok/wat_auth"), "1.0.0", "limits:\n  pool_size: 2\n")
	x := NewExtensions()
	h, err := host.New(host.Options{Dir: dir, Observer: x, CacheDir: filepath.Join(os.TempDir(), "propolis-test-wasm-cache"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	x.Watch(h)
	r := &extRig{h: h, x: x, reg: prometheus.NewPedanticRegistry()}
	r.reg.MustRegister(x)
	const workers, each = 4, 200
	done := make(chan struct{})
	scraped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				scraped <- n
				return
			default:
			}
			if _, err := r.reg.Gather(); err != nil {
				t.Errorf("gather: %v", err)
			}
			n++
		}
	}()
	// What the callers got: ALLOW, and wat-auth's own DENY (0x86); a call
	// that found no instance in time on a loaded machine is refused with
	// another code and counted under another outcome.
	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pass := "secret"
				if i%2 == 1 {
					pass = "wrong"
				}
				res := h.Authenticate(context.Background(), &broker.Connect{ClientID: fmt.Sprintf("c%d-%d", w, i), Username: "wat",
					Password: []byte(pass), ProtocolVersion: 5, Listener: "tcp", RemoteAddr: "127.0.0.1:1"})
				switch {
				case res.Decision == broker.Allow:
					allowed.Add(1)
				case res.ReasonCode == 0x86:
					denied.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	t.Logf("%d scrapes during the calls", <-scraped)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"propolis_extension_calls_total", calls("wat-auth", "authenticate", "allow"), float64(allowed.Load())},
		{"propolis_extension_calls_total", calls("wat-auth", "authenticate", "deny"), float64(denied.Load())},
		{"propolis_extension_call_duration_seconds", map[string]string{"extension": "wat-auth", "callback": "authenticate"}, workers * each},
	} {
		if got := r.value(t, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestExtensionMetricsDroppedAndPutBack: a scrape drops the counters of an
// extension the host does not list; a call still made through the
// extension's observer puts them back, counts kept, for the next scrape to
// judge again.
func TestExtensionMetricsDroppedAndPutBack(t *testing.T) {
	h, err := host.New(host.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	x := NewExtensions()
	x.Watch(h)
	r := &extRig{h: h, x: x, reg: prometheus.NewPedanticRegistry()}
	r.reg.MustRegister(x)
	obs := x.ForExtension("unlisted", 1)
	c := host.Call{Extension: "unlisted", Folder: 1, Callback: abi.CallbackAuthorizePublish, Outcome: host.OutcomeAllow}
	obs.ObserveCall(c)
	if got := r.value(t, "propolis_extension_calls_total", calls("unlisted", "authorize_publish", "allow")); got != -1 {
		t.Fatalf("an unlisted extension's series exported: %v", got)
	}
	if m := *x.byExt.Load(); len(m) != 0 {
		t.Fatalf("counters of %d extensions kept after the scrape", len(m))
	}
	obs.ObserveCall(c)
	e := (*x.byExt.Load())["unlisted"]
	if e == nil || e != obs {
		t.Fatal("a call through dropped counters did not put them back")
	}
	if n := e.cbs[abi.CallbackAuthorizePublish].Load().outcomes[host.OutcomeAllow].Load(); n != 2 {
		t.Fatalf("counted %d calls, want 2", n)
	}
}
