package host

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// gatedIDP is an identity service for the httpauth guest whose answers
// the test holds back: a GET (the guest's start check) waits while
// blockGets is set, a POST for user "slow" always, both until release is
// closed. Other POSTs answer at once: 200 for password "good", 403
// otherwise.
type gatedIDP struct {
	srv                       *httptest.Server
	blockGets                 atomic.Bool
	getsWaiting, postsWaiting atomic.Int64
	release                   chan struct{}
	once                      sync.Once
}

func newGatedIDP(t *testing.T) *gatedIDP {
	t.Helper()
	s := &gatedIDP{release: make(chan struct{})}
	hold := func(r *http.Request, n *atomic.Int64) bool {
		n.Add(1)
		select {
		case <-s.release:
			return true
		case <-r.Context().Done():
			return false
		}
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if s.blockGets.Load() && !hold(r, &s.getsWaiting) {
				return
			}
			return // 200
		}
		var body struct{ Username, Password string }
		if json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if body.Username == "slow" && !hold(r, &s.postsWaiting) {
			return
		}
		if body.Password != "good" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(func() {
		s.unblock()
		s.srv.Close()
	})
	return s
}

// unblock lets every held request go on, and later ones through.
func (s *gatedIDP) unblock() { s.once.Do(func() { close(s.release) }) }

// manifest is httpauth's manifest calling s, with limits, checking the
// service in every instance's start.
func (s *gatedIDP) manifest(limits string) string {
	return httpAuthManifest(s.srv.URL+"/check", strings.TrimPrefix(s.srv.URL, "http://"), 0, limits) + "  start_check: true\n"
}

// extOf returns the running extension id of h.
func extOf(t *testing.T, h *Host, id string) *extension {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.exts[id]
	if e == nil {
		t.Fatalf("extension %s not running", id)
	}
	return e
}

// TestAuthorizeNotStarvedByAuthenticate: authenticate calls waiting on a
// slow identity service never take the instances publish authorization
// needs, even when new instances are slow to start (their start callback
// waits on the same service): publishes are authorized within a short
// call deadline meanwhile, and the extension keeps running.
func TestAuthorizeNotStarvedByAuthenticate(t *testing.T) {
	s := newGatedIDP(t)
	w, _ := startHTTPAuth(t, s.manifest("  pool_size: 2\n  max_pool_size: 4\n  call_deadline: 100ms\n  authenticate_deadline: 1m"))
	_, _, admin := connack(t, w.addr, "admin", "alice", "pw")
	if admin == nil {
		t.Fatal("local user refused")
	}
	s.blockGets.Store(true) // instances started from now on wait in their start
	const slow = 2
	done := slowConnects(t, w.addr, slow)
	// Each slow CONNECT holds an instance waiting on its request, or waits
	// for one whose start waits on its own.
	poll.Until(t, "authenticate calls waiting", func() bool { return s.postsWaiting.Load()+s.getsWaiting.Load() == slow })
	for i := range 15 { // more than the crash-loop limit
		r, err := admin.Publish(ctx(t), &paho.Publish{Topic: "pub/admin", QoS: 1, Payload: []byte("x")})
		if err != nil || r.ReasonCode != 0 {
			t.Fatalf("publish %d not authorized while authenticate calls wait: %+v, %v\n%s", i, r, err, lastLines(w.logs.String(), 5))
		}
	}
	if st := statusOf(t, w.h, "httpauth"); st.State != StateRunning || st.Errors != 0 {
		t.Fatalf("state %s, %d errors: %s", st.State, st.Errors, st.Reason)
	}
	s.unblock()
	for range slow {
		if code := <-done; code != 0 {
			t.Fatalf("slow CONNECT: %#x once the service answered", code)
		}
	}
}

// TestBusyWhileGrowingIsNoCrash: calls that find every instance busy
// while the pool is starting one more (whose start waits on HTTP) fail
// closed, but are no crash loop: the extension keeps running and serves
// once the instance is up.
func TestBusyWhileGrowingIsNoCrash(t *testing.T) {
	s := newGatedIDP(t)
	ext := t.TempDir()
	installExtension(t, ext, "httpauth", buildGuest(t, "testdata/guests", "httpauth"), 0,
		s.manifest("  pool_size: 1\n  max_pool_size: 3\n  call_deadline: 100ms"))
	h, logs := newTestHost(t, ext)
	e := extOf(t, h, "httpauth")
	res := h.Authenticate(context.Background(), &broker.Connect{ClientID: "c1", Username: "alice", HasUsername: true,
		Password: []byte("pw"), Listener: "tcp", ProtocolVersion: 5})
	if res.Decision != broker.Allow {
		t.Fatalf("local user refused: %+v", res)
	}
	// Hold every instance there is; the next one waits in its start.
	var held []*instance
	for n := e.pool.count(); len(held) < n; {
		in, err := e.pool.get(context.Background(), abi.CallbackAuthorizePublish, new(bool))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, in)
	}
	s.blockGets.Store(true)
	const calls = 2 * crashLoopFailures
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v := res.Client.AuthorizePublish(&broker.Publish{Topic: "pub/c1", QoS: 1}); v.Decision == broker.Allow {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != 0 {
		t.Fatalf("%d calls allowed without an instance", n)
	}
	if st := statusOf(t, h, "httpauth"); st.State != StateRunning || st.Errors != calls {
		t.Fatalf("state %s (%s), %d errors; want running, %d errors\n%s", st.State, st.Reason, st.Errors, calls, lastLines(logs.String(), 5))
	}
	s.unblock()
	for _, in := range held {
		e.pool.put(in)
	}
	if v := res.Client.AuthorizePublish(&broker.Publish{Topic: "pub/c1", QoS: 1}); v.Decision != broker.Allow {
		t.Fatalf("not served once the instance started: %+v", v)
	}
}

// TestStopWaitsForGrowth: an instance still starting when its extension
// stops (its start callback waiting on HTTP) finishes starting, and is
// stopped like the others, stop callback included, before the runtime
// closes.
func TestStopWaitsForGrowth(t *testing.T) {
	s := newGatedIDP(t)
	ext := t.TempDir()
	installExtension(t, ext, "httpauth", buildGuest(t, "testdata/guests", "httpauth"), 0,
		s.manifest("  pool_size: 1\n  max_pool_size: 2"))
	rec := &recorder{}
	w := startWired(t, ext, Options{Observer: rec})
	e := extOf(t, w.h, "httpauth")
	s.blockGets.Store(true)
	e.pool.grow()
	poll.Until(t, "the new instance's start waits on HTTP", func() bool { return s.getsWaiting.Load() == 1 })
	var stopped atomic.Bool
	go func() {
		e.stop(true)
		stopped.Store(true)
	}()
	poll.Until(t, "the pool closing", func() bool {
		e.pool.mu.Lock()
		defer e.pool.mu.Unlock()
		return e.pool.closed
	})
	s.unblock()
	poll.Until(t, "stopped", stopped.Load)
	starts, stops := rec.of(abi.CallbackStart), rec.of(abi.CallbackStop)
	if len(starts) != 2 || starts[0] != OutcomeOK || starts[1] != OutcomeOK {
		t.Fatalf("starts observed when the stop returned: %v, want two ok", starts)
	}
	if len(stops) != 2 || stops[0] != OutcomeOK || stops[1] != OutcomeOK {
		t.Fatalf("stop callbacks: %v, want one ok per instance", stops)
	}
}

// TestWaiterMovesToSuccessor: a call waiting for an instance of a version
// being replaced is served by the new version as soon as the old one's
// pool closes, not after its call deadline.
func TestWaiterMovesToSuccessor(t *testing.T) {
	s := newIDP(t)
	w, extDir := startHTTPAuth(t, httpAuthManifest(s.srv.URL+"/check", s.hostPort(), 0,
		"  pool_size: 1\n  max_pool_size: 1\n  call_deadline: 20s"))
	old := extOf(t, w.h, "httpauth")
	res := w.h.Authenticate(context.Background(), &broker.Connect{ClientID: "c1", Username: "alice", HasUsername: true,
		Password: []byte("pw"), Listener: "tcp", ProtocolVersion: 5})
	if res.Decision != broker.Allow {
		t.Fatalf("local user refused: %+v", res)
	}
	held, err := old.pool.get(context.Background(), abi.CallbackAuthorizePublish, new(bool))
	if err != nil {
		t.Fatal(err)
	}
	var verdict atomic.Pointer[broker.Verdict]
	go func() {
		v := res.Client.AuthorizePublish(&broker.Publish{Topic: "pub/c1", QoS: 1})
		verdict.Store(&v)
	}()
	w.h.Watch()
	manifest := filepath.Join(extDir, "httpauth", ManifestFile)
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, []byte(strings.Replace(string(b), "version: 1.0.0", "version: 1.0.1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the waiting call answered", func() bool { return verdict.Load() != nil })
	if v := verdict.Load(); v.Decision != broker.Allow {
		t.Fatalf("waiting call: %+v, want served by the new version", *v)
	}
	if st := statusOf(t, w.h, "httpauth"); st.Version != "1.0.1" || st.Errors != 0 {
		t.Fatalf("version %s, %d errors", st.Version, st.Errors)
	}
	old.pool.put(held)
	poll.Until(t, "the old version stopped", func() bool { return old.pool.count() == 0 })
}

// TestPoolHotHandOff: many callers share one instance (pool_size and
// max_pool_size 1), so most of them wait on idle while the instance moves
// between them through hot and idle. Every call must get the instance
// well within its deadline: an instance left in hot while a caller sleeps
// on idle would show as a call failing with "all instances busy" after
// its deadline (or the run taking that long). At the end the one instance
// is idle, in hot or idle.
func TestPoolHotHandOff(t *testing.T) {
	wasm := buildGuest(t, "testdata/guests", "bench")
	ext := t.TempDir()
	installExtension(t, ext, "bench", wasm, 0, "limits:\n  pool_size: 1\n  max_pool_size: 1\n  call_deadline: 5s\n")
	h, logs := newTestHost(t, ext)
	res := h.Authenticate(context.Background(), connect("u", "p"))
	if res.Decision != broker.Allow {
		t.Fatalf("authenticate: %+v", res)
	}
	p := &broker.Publish{Topic: "a/b", QoS: 1, Payload: []byte("x")}
	const callers, calls = 8, 400
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if v := res.Client.AuthorizePublish(p); v.Decision != broker.Allow {
					failed.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d callers got a refusal\n%s", n, lastLines(logs.String(), 5))
	}
	e := h.chain.Load().callers(abi.CallbackAuthorizePublish)[0]
	if n, idle := e.pool.count(), e.pool.idleCount(); n != 1 || idle != 1 {
		t.Fatalf("pool has %d instances, %d idle; want 1 and 1", n, idle)
	}
}

// TestPoolPutSeesLateWaiter runs put's two races with a caller beginning
// to wait, at the point between put's store into hot and its second look
// at waiters (testAfterHotStore): a waiter that looked at hot before the
// store (and found it empty) must get the instance through idle; one that
// looks after takes it from hot, and put leaves idle alone.
func TestPoolPutSeesLateWaiter(t *testing.T) {
	e := &extension{deadline: time.Second}
	p := newPool(e, 1, 1)
	in := &instance{ext: e}
	p.mu.Lock()
	p.all[in] = struct{}{}
	p.mu.Unlock()
	t.Cleanup(func() { testAfterHotStore = nil })

	// The waiter found hot empty before put stored into it.
	testAfterHotStore = func() { p.waiters.Add(1) }
	p.put(in)
	if len(p.idle) != 1 || p.hot.Load() != nil {
		t.Fatalf("late waiter: %d in idle, hot %p; want the instance in idle", len(p.idle), p.hot.Load())
	}
	<-p.idle
	p.waiters.Add(-1)

	// The waiter looks at hot after the store and takes the instance.
	var took *instance
	testAfterHotStore = func() {
		p.waiters.Add(1)
		took = p.takeHot()
	}
	p.put(in)
	if took != in || len(p.idle) != 0 || p.hot.Load() != nil {
		t.Fatalf("waiter taking from hot: took %p, %d in idle, hot %p", took, len(p.idle), p.hot.Load())
	}
	p.waiters.Add(-1)

	// No waiter: the instance stays in hot, and the next get takes it.
	testAfterHotStore = nil
	p.put(in)
	if p.hot.Load() != in || p.idleCount() != 1 {
		t.Fatalf("no waiter: hot %p, idle count %d", p.hot.Load(), p.idleCount())
	}
	if got, err := p.get(context.Background(), abi.CallbackAuthorizePublish, new(bool)); got != in || err != nil {
		t.Fatalf("get: %p, %v", got, err)
	}
}

// TestFailureOnReplacementIsReplaced: a pool of one instance whose every
// call traps is replaced after every call, and every next call finds the
// replacement. A call failing on a replacement right after it was handed
// over, while its growth was still counted, once started no replacement,
// and the next call, finding the pool still growing, grew none either: it
// waited its whole deadline and failed busy (the conformance kit's
// "an instance is available" failed on a loaded CI machine).
func TestFailureOnReplacementIsReplaced(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "trap", wasmFixture("error/trap"), 0,
		"limits:\n  pool_size: 1\n  max_pool_size: 1\n  authenticate_deadline: 2s\n")
	h, logs := newTestHost(t, ext)
	e := extOf(t, h, "trap")
	// Each replacement, once handed over, holds its goroutine until the
	// call it serves has ended and the next call waits for an instance.
	e.pool.afterReplace = func() {
		calls := e.calls.Load()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			if e.calls.Load() > calls && e.pool.waiters.Load() > 0 {
				return
			}
			select {
			case <-e.pool.done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	for i := range 30 {
		a, err := h.invoke(context.Background(), e, abi.CallbackAuthenticate, &abi.ConnectRecord{})
		if a.outcome != OutcomeTrap {
			t.Fatalf("call %d: outcome %s (%v), want trap; pool has %d instances\n%s",
				i, a.outcome, err, e.pool.count(), lastLines(logs.String(), 5))
		}
		e.mu.Lock()
		e.failures = nil // no crash-loop stop: the test is about the pool
		e.mu.Unlock()
	}
}

// TestPoolSettleWaitsForStart: a probe's call waits while the pool starts
// an instance (settle) and goes on once it has started: when settle
// returns, the start it waited for is over (a settle that did not wait
// returns before the start ends and fails the check); it never waits past
// its limit.
func TestPoolSettleWaitsForStart(t *testing.T) {
	e := &extension{deadline: time.Second}
	p := newPool(e, 1, 1)
	p.mu.Lock()
	p.growing = 1
	p.mu.Unlock()
	started := false
	end := time.AfterFunc(20*time.Millisecond, func() { // the instance's start ends
		p.mu.Lock()
		p.growing, started = 0, true
		p.mu.Unlock()
	})
	defer end.Stop()
	p.settle(context.Background(), time.Hour)
	p.mu.Lock()
	ok := started
	p.mu.Unlock()
	if !ok {
		t.Fatal("settle returned while an instance was starting")
	}
	p.mu.Lock()
	p.growing = 1
	p.mu.Unlock()
	p.settle(context.Background(), time.Millisecond) // the limit ends it
}
