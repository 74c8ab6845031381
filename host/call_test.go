package host

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/internal/poll"
)

// recorder is a CallObserver keeping every call it hears about.
type recorder struct {
	mu    sync.Mutex
	calls []Call
}

func (r *recorder) ObserveCall(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// of returns the outcomes observed for callback cb.
func (r *recorder) of(cb abi.Callback) []Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Outcome
	for _, c := range r.calls {
		if c.Callback == cb {
			out = append(out, c.Outcome)
		}
	}
	return out
}

// observedHost loads extDir into a host that reports to a recorder.
func observedHost(t *testing.T, extDir string) (*Host, *recorder) {
	t.Helper()
	rec := &recorder{}
	h, err := New(Options{Dir: extDir, CacheDir: filepath.Join(t.TempDir(), "cache"), BrokerVersion: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	if err := h.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h, rec
}

// TestObserverSeesEveryOutcome: each way a call can end reaches the
// observer through the one invoke path, with the extension's id, and the
// broker gets the fail-closed answer for each failure.
func TestObserverSeesEveryOutcome(t *testing.T) {
	for _, tc := range []struct {
		name, fixture, manifest string
		user, pass              string
		want                    Outcome
		wantCode                byte
	}{
		{name: "allow", fixture: "ok/wat_auth", user: "wat", pass: "secret", want: OutcomeAllow},
		{name: "deny", fixture: "ok/wat_auth", user: "wat", pass: "wrong", want: OutcomeDeny, wantCode: 0x86},
		{name: "trap", fixture: "error/trap", want: OutcomeTrap, wantCode: 0x80},
		{name: "deadline", fixture: "error/spin", manifest: "limits:\n  call_deadline: 20ms\n", want: OutcomeDeadline, wantCode: 0x80},
		{name: "invalid", fixture: "error/bad_answer", want: OutcomeInvalid, wantCode: 0x80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := t.TempDir()
			installExtension(t, ext, "ext", wasmFixture(tc.fixture), 0, tc.manifest)
			h, rec := observedHost(t, ext)
			res := h.Authenticate(context.Background(), connect(tc.user, tc.pass))
			got := rec.of(abi.CallbackAuthenticate)
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("observed %v, want [%v]", got, tc.want)
			}
			if tc.want == OutcomeAllow {
				if res.Decision != broker.Allow {
					t.Fatalf("decision %v, want allow", res.Decision)
				}
				return
			}
			if res.Decision != broker.Deny || res.ReasonCode != tc.wantCode {
				t.Fatalf("answer %v 0x%x, want deny 0x%x", res.Decision, res.ReasonCode, tc.wantCode)
			}
		})
	}
}

// TestObserverSeesEachDecision: a deciding callback's answers are told
// apart (authorize_publish of wat-auth: NEXT, DENY, DISCONNECT; its
// authenticate: ALLOW), and each outcome of a decision is named as
// abi.Decisions names the decision.
func TestObserverSeesEachDecision(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	h, rec := observedHost(t, ext)
	res := h.Authenticate(context.Background(), connect("wat", "secret"))
	if res.Decision != broker.Allow {
		t.Fatalf("authenticate: %+v", res)
	}
	for _, topic := range []string{"a/b", "readonly/x", "kick"} {
		res.Client.AuthorizePublish(&broker.Publish{Topic: topic, QoS: 1})
	}
	if got, want := rec.of(abi.CallbackAuthenticate), []Outcome{OutcomeAllow}; !slices.Equal(got, want) {
		t.Errorf("authenticate outcomes %v, want %v", got, want)
	}
	if got, want := rec.of(abi.CallbackAuthorizePublish), []Outcome{OutcomeNext, OutcomeDeny, OutcomeDisconnect}; !slices.Equal(got, want) {
		t.Errorf("authorize_publish outcomes %v, want %v", got, want)
	}
	for d, info := range abi.Decisions {
		if got := decisionOutcomes[d].String(); got != strings.ToLower(info.Name) {
			t.Errorf("decision %s: outcome %q", info.Name, got)
		}
	}
	for o := range NumOutcomes {
		if o.String() == "unknown" || o.String() == "" {
			t.Errorf("outcome %d has no name", o)
		}
	}
}

// TestObserverTimesPerMessageCallsBySample: every authenticate call is
// timed; authorize_publish calls, one in timeSample at random (of 2,000,
// none timed or all timed has a chance far below 1e-50).
func TestObserverTimesPerMessageCallsBySample(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "")
	h, rec := observedHost(t, ext)
	res := h.Authenticate(context.Background(), connect("wat", "secret"))
	const n = 2000
	for range n {
		res.Client.AuthorizePublish(&broker.Publish{Topic: "a/b", QoS: 1})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	timed := map[abi.Callback]int{}
	for _, c := range rec.calls {
		if c.Timed {
			timed[c.Callback]++
			if c.Took <= 0 {
				t.Errorf("a timed call took %v", c.Took)
			}
		} else if c.Took != 0 {
			t.Errorf("a call not timed took %v", c.Took)
		}
	}
	if timed[abi.CallbackAuthenticate] != 1 {
		t.Errorf("timed authenticate calls: %d, want 1", timed[abi.CallbackAuthenticate])
	}
	if got := timed[abi.CallbackAuthorizePublish]; got == 0 || got == n {
		t.Errorf("timed authorize_publish calls: %d of %d, want about %d", got, n, n/timeSample)
	}
}

// TestStatusRows: every status code of the ABI table is counted under its
// own row; a length counts as OK.
func TestStatusRows(t *testing.T) {
	for i, st := range abi.Statuses {
		if got := statusRow(st.Code); got != i {
			t.Errorf("%s: row %d, want %d", st.Name, got, i)
		}
	}
	if got := abi.Statuses[statusRow(42)].Name; got != "OK" {
		t.Errorf("a length counts as %s", got)
	}
}

// TestObserverCallDetails: the observer gets the extension id and the
// callback, for start callbacks too.
func TestObserverCallDetails(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "wat-auth", wasmFixture("ok/wat_auth"), 0, "limits:\n  pool_size: 2\n")
	h, rec := observedHost(t, ext)
	if starts := rec.of(abi.CallbackStart); len(starts) != 2 || starts[0] != OutcomeOK {
		t.Fatalf("start outcomes %v, want two ok (one per instance)", starts)
	}
	h.Authenticate(context.Background(), connect("wat", "secret"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	last := rec.calls[len(rec.calls)-1]
	if last.Extension != "wat-auth" || last.Callback != abi.CallbackAuthenticate || last.Took <= 0 {
		t.Fatalf("last call %+v", last)
	}
}

// TestAuthenticateHonoursContext: the broker's deadline for a CONNECT ends
// the decision even when the extension's own call deadline is longer: a
// spinning authenticator is stopped when ctx ends, and a context that has
// already ended is refused without a call.
func TestAuthenticateHonoursContext(t *testing.T) {
	ext := t.TempDir()
	installExtension(t, ext, "spin", wasmFixture("error/spin"), 0, "limits:\n  call_deadline: 1m\n  pool_size: 1\n")
	h, rec := observedHost(t, ext)

	// The call runs until ctx is cancelled; its own deadline (1m) is far
	// beyond the wait below, so only ctx can end it in time.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answered := make(chan broker.AuthResult, 1)
	go func() { answered <- h.Authenticate(ctx, connect("u", "p")) }()
	e := h.chain.Load().callers(abi.CallbackAuthenticate)[0]
	inFlight := func() bool {
		n := 0
		e.pool.busy(func(*instance, int64) { n++ })
		return n > 0
	}
	poll.Until(t, "the authenticate call in flight", inFlight)
	cancel()
	var res broker.AuthResult
	select {
	case res = <-answered:
	case <-time.After(poll.Timeout):
		t.Fatal("Authenticate did not return after its context ended")
	}
	if res.Decision != broker.Deny || res.ReasonCode != failClosedCode {
		t.Fatalf("answer %v 0x%x, want deny 0x80", res.Decision, res.ReasonCode)
	}
	if got := rec.of(abi.CallbackAuthenticate); len(got) != 1 || got[0] != OutcomeDeadline {
		t.Fatalf("observed %v, want [deadline]", got)
	}
	// The broker gave up, not the extension: no failure is counted
	// towards the crash-loop stop, and the interrupted instance is
	// replaced.
	if st := statusOf(t, h, "spin"); st.Errors != 0 || st.State != StateRunning {
		t.Fatalf("status after a cancelled call: %+v, want running with no errors", st)
	}
	poll.Until(t, "the interrupted instance replaced", func() bool { return e.pool.idleCount() == 1 })

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if res := h.Authenticate(done, connect("u", "p")); res.Decision != broker.Deny {
		t.Fatalf("ended context: decision %v, want deny", res.Decision)
	}
	if got := rec.of(abi.CallbackAuthenticate); len(got) != 2 || got[1] != OutcomeDeadline {
		t.Fatalf("observed %v, want a second deadline", got)
	}
	if st := statusOf(t, h, "spin"); st.Errors != 0 {
		t.Fatalf("an ended context was counted against the extension: %+v", st)
	}
}

// TestEveryHostFunctionImplemented: each row of abi.HostFuncs has a body
// (a missing one would refuse every extension at load).
func TestEveryHostFunctionImplemented(t *testing.T) {
	for f, info := range abi.HostFuncs {
		if hostFuncBodies[f] == nil {
			t.Errorf("host function %s has no body", info.Name)
		}
	}
}

// TestEncodeCoversEveryRecordKind: the one invoke path can write a record
// of every kind the table's callbacks take (a kind without a case in
// encode would panic at its first call).
func TestEncodeCoversEveryRecordKind(t *testing.T) {
	samples := map[uint16]record{
		abi.KindStart:        &abi.StartRecord{},
		abi.KindConnect:      &abi.ConnectRecord{},
		abi.KindPublish:      &abi.PublishRecord{},
		abi.KindSubscribe:    &abi.SubscribeRecord{},
		abi.KindEvent:        &abi.EventRecord{},
		abi.KindConnack:      &abi.ConnackRecord{},
		abi.KindMessage:      &abi.MessageRecord{},
		abi.KindSubscription: &abi.SubscriptionRecord{},
		abi.KindDisconnect:   &abi.DisconnectRecord{},
	}
	for _, c := range abi.Callbacks {
		if c.Record == 0 {
			continue
		}
		rec, ok := samples[c.Record]
		if !ok {
			t.Errorf("callback %s takes record kind %d: add a sample here and a case in encode", c.Name, c.Record)
			continue
		}
		b := encode(rec, nil)
		if len(b) < abi.HeaderSize || uint16(b[4])|uint16(b[5])<<8 != c.Record {
			t.Errorf("callback %s: encoded % x, want a record of kind %d", c.Name, b, c.Record)
		}
	}
}
