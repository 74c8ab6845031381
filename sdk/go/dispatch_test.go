package propolis

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// recorder is a fake host recording every host function call. fail makes
// the named function return the given status.
type recorder struct {
	calls []string
	fail  map[string]int32
}

func (r *recorder) call(name string, args ...any) int32 {
	s := name + "("
	for i, a := range args {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%v", a)
	}
	r.calls = append(r.calls, s+")")
	return r.fail[name]
}

func (r *recorder) log(level Level, msg string) int32 { return r.call("log", level, msg) }
func (r *recorder) setReason(s string) int32          { return r.call("set_reason", s) }
func (r *recorder) declareCallbacks(m uint32) int32   { return r.call("declare_callbacks", m) }
func (r *recorder) addPublishFilter(f string) int32   { return r.call("add_publish_filter", f) }
func (r *recorder) setSessionExpiry(s uint32) int32   { return r.call("set_session_expiry", s) }
func (r *recorder) setReceiveMaximum(n uint16) int32  { return r.call("set_receive_maximum", n) }
func (r *recorder) setKeepalive(s uint16) int32       { return r.call("set_keepalive", s) }
func (r *recorder) setMaxQueued(n uint16) int32       { return r.call("set_max_queued", n) }
func (r *recorder) setOverloadThrottling(on bool) int32 {
	if on {
		return r.call("set_overload_throttling", 1)
	}
	return r.call("set_overload_throttling", 0)
}
func (r *recorder) addPermission(p []byte) int32 {
	return r.call("add_permission", fmt.Sprintf("% x", p))
}
func (r *recorder) addConnackUserProperty(k, v string) int32 {
	return r.call("add_connack_user_property", k, v)
}
func (r *recorder) packetSet(f uint32, v string) int32 {
	return r.call("packet_set", fieldName(f), fmt.Sprintf("%q", v))
}
func (r *recorder) packetSetInt(f uint32, v int64) int32 {
	return r.call("packet_set_int", fieldName(f), v)
}
func (r *recorder) addInterceptFilter(m uint32, f string) int32 {
	return r.call("add_intercept_filter", m, f)
}
func (r *recorder) addInterceptClient(p string) int32 {
	return r.call("add_intercept_client", p)
}

// with registers e for the duration of the test.
func with(t *testing.T, e Extension) {
	t.Helper()
	old, oldRegistered := ext, registered
	registered = false
	Register(e)
	t.Cleanup(func() { ext, registered = old, oldRegistered })
}

func vector(t *testing.T, name string) []byte {
	return readHex(t, filepath.Join(vectorDir, name+".hex"))
}

func TestRegisterTwicePanics(t *testing.T) {
	with(t, Extension{})
	defer func() {
		if recover() == nil {
			t.Error("second Register did not panic")
		}
	}()
	Register(Extension{})
}

func TestStart(t *testing.T) {
	var got StartInfo
	with(t, Extension{
		Start:            func(info StartInfo) error { got = info; return nil },
		AuthorizePublish: func(*Publish) Verdict { return Next() },
		OnEvent:          func(*Event) {},
		PublishFilters:   []string{"devices/#", "alerts/+"},
	})
	h := &recorder{}
	if rc := start(h, vector(t, "start")); rc != 0 {
		t.Fatalf("start returned %d", rc)
	}
	want := []string{"declare_callbacks(10)", "add_publish_filter(devices/#)", "add_publish_filter(alerts/+)"}
	if !reflect.DeepEqual(h.calls, want) {
		t.Errorf("calls %q, want %q", h.calls, want)
	}
	if got.ID != "topic-acl" || string(got.Config) != `{"prefix":"devices"}` {
		t.Errorf("StartInfo %+v", got)
	}
}

func TestStartWithoutHandlers(t *testing.T) {
	with(t, Extension{PublishFilters: []string{"ignored/#"}})
	h := &recorder{}
	if rc := start(h, vector(t, "start")); rc != 0 || !reflect.DeepEqual(h.calls, []string{"declare_callbacks(0)"}) {
		t.Errorf("rc %d, calls %q", rc, h.calls)
	}
}

func TestStartRefused(t *testing.T) {
	tests := []struct {
		name string
		e    Extension
		fail map[string]int32
		rec  []byte
		want string
	}{
		{"start error", Extension{Start: func(StartInfo) error { return errors.New("no config") }}, nil, nil, "set_reason(no config)"},
		{"bad filter", Extension{AuthorizePublish: func(*Publish) Verdict { return Next() }, PublishFilters: []string{"a#"}},
			map[string]int32{"add_publish_filter": statusInvalidArgument}, nil, `set_reason(propolis: add_publish_filter "a#": INVALID_ARGUMENT)`},
		{"declare fails", Extension{}, map[string]int32{"declare_callbacks": statusNotAvailable}, nil, "set_reason(propolis: declare_callbacks: NOT_AVAILABLE)"},
		{"bad record", Extension{}, nil, []byte{1, 2, 3}, "set_reason(propolis: malformed START record: propolis: record truncated)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			with(t, tt.e)
			h := &recorder{fail: tt.fail}
			rec := tt.rec
			if rec == nil {
				rec = vector(t, "start")
			}
			if rc := start(h, rec); rc != 1 {
				t.Errorf("start returned %d", rc)
			}
			if last := h.calls[len(h.calls)-1]; last != tt.want {
				t.Errorf("last call %s, want %s", last, tt.want)
			}
		})
	}
}

func TestNoHandlersAnswerNext(t *testing.T) {
	with(t, Extension{})
	h := &recorder{}
	if authenticate(h, vector(t, "connect")) != 0 || authorizePublish(h, vector(t, "publish")) != 0 ||
		authorizeSubscribe(h, vector(t, "subscribe")) != 0 {
		t.Error("a missing handler did not answer NEXT")
	}
	onEvent(h, vector(t, "event"))
	stop()
	if len(h.calls) != 0 {
		t.Errorf("host calls %q", h.calls)
	}
}

func TestAuthenticate(t *testing.T) {
	expiry, keepalive := uint32(7200), uint16(0)
	full := AuthResult{
		Verdict:               Allow(),
		SessionExpiry:         &expiry,
		ReceiveMaximum:        10,
		Keepalive:             &keepalive,
		MaxQueued:             500,
		NoThrottling:          true,
		ConnackUserProperties: []UserProperty{{"tier", "gold"}},
		Permissions:           []Permission{DenyTopic("devices/secret/#"), AllowTopic("devices/{clientid}/#")},
	}
	tests := []struct {
		name  string
		res   AuthResult
		fail  map[string]int32
		want  uint32
		calls []string
	}{
		{"allow plain", AuthResult{Verdict: Allow(), Unrestricted: true}, nil, 1, nil},
		{"allow with everything", full, nil, 1, []string{
			"set_session_expiry(7200)",
			"set_receive_maximum(10)",
			"set_keepalive(0)",
			"set_max_queued(500)",
			"set_overload_throttling(0)",
			"add_connack_user_property(tier, gold)",
			"add_permission(02 03 00 00 00 00 00 00 10 00 00 00 64 65 76 69 63 65 73 2f 73 65 63 72 65 74 2f 23)",
			"add_permission(01 03 00 00 00 00 00 00 14 00 00 00 64 65 76 69 63 65 73 2f 7b 63 6c 69 65 6e 74 69 64 7d 2f 23)",
		}},
		{"next", AuthResult{Verdict: Next(), Permissions: full.Permissions}, nil, 0, nil},
		{"deny ignores settings", AuthResult{Verdict: Deny(0x86, "bad password"), MaxQueued: 3}, nil, 0x8602, []string{"set_reason(bad password)"}},
		{"deny without reason", AuthResult{Verdict: Deny(0, "")}, nil, 0x0002, nil},
		{"disconnect becomes deny", AuthResult{Verdict: Disconnect(0x98, "")}, nil, 0x9802, nil},
		{"host refuses a permission", full, map[string]int32{"add_permission": statusTooLarge}, 0x8002, nil},
		{"invalid permission", AuthResult{Verdict: Allow(), Permissions: []Permission{AllowTopic("a/#/b")}}, nil, 0x8002, []string{
			`log(error, propolis: refusing client "sensor-1": propolis: permission filter "a/#/b": "#" must be the last level)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *Connect
			with(t, Extension{Authenticate: func(c *Connect) AuthResult { got = c.Clone(); return tt.res }})
			h := &recorder{fail: tt.fail}
			if d := authenticate(h, vector(t, "connect")); d != tt.want {
				t.Errorf("decision %#x, want %#x", d, tt.want)
			}
			if tt.calls != nil && !reflect.DeepEqual(h.calls, tt.calls) {
				t.Errorf("calls\n%s\nwant\n%s", strings.Join(h.calls, "\n"), strings.Join(tt.calls, "\n"))
			}
			if tt.calls == nil && tt.fail == nil && len(h.calls) != 0 {
				t.Errorf("calls %q", h.calls)
			}
			if got.ClientID != "sensor-1" || got.Will == nil || got.Will.Topic != "devices/sensor-1/status" {
				t.Errorf("handler got %+v", got)
			}
		})
	}
}

// An Allow with no permissions lets the client use every topic: the SDK
// says so in the log, once per instance, unless Unrestricted says it is
// meant.
func TestAuthenticateUnrestrictedWarning(t *testing.T) {
	defer func(old bool) { warnedUnrestricted = old }(warnedUnrestricted)
	for _, tc := range []struct {
		name string
		res  AuthResult
		warn bool
	}{
		{"no permissions", AuthResult{Verdict: Allow()}, true},
		{"unrestricted", AuthResult{Verdict: Allow(), Unrestricted: true}, false},
		{"with permissions", AuthResult{Verdict: Allow(), Permissions: []Permission{AllowTopic("a/#")}}, false},
		{"deny", AuthResult{Verdict: Deny(0x87, "")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warnedUnrestricted = false
			with(t, Extension{Authenticate: func(*Connect) AuthResult { return tc.res }})
			h := &recorder{}
			authenticate(h, vector(t, "connect"))
			authenticate(h, vector(t, "connect"))
			var warnings []string
			for _, c := range h.calls {
				if strings.HasPrefix(c, "log(warn, ") {
					warnings = append(warnings, c)
				}
			}
			want := 0
			if tc.warn {
				want = 1
			}
			if len(warnings) != want {
				t.Fatalf("%d warnings over two calls, want %d: %q", len(warnings), want, warnings)
			}
			if tc.warn && (!strings.Contains(warnings[0], "every topic") || !strings.Contains(warnings[0], `"sensor-1"`)) {
				t.Errorf("warning %q does not say what happens and to whom", warnings[0])
			}
		})
	}
}

func TestAuthenticateMalformed(t *testing.T) {
	with(t, Extension{Authenticate: func(*Connect) AuthResult { t.Error("handler called"); return AuthResult{} }})
	h := &recorder{}
	if d := authenticate(h, vector(t, "publish")); d != 0x8002 {
		t.Errorf("decision %#x", d)
	}
	if len(h.calls) != 1 || !strings.HasPrefix(h.calls[0], "log(error, propolis: malformed CONNECT record") {
		t.Errorf("calls %q", h.calls)
	}
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		v     Verdict
		want  uint32
		calls []string
	}{
		{Allow(), 1, nil},
		{Next(), 0, nil},
		{Deny(0x87, "read only"), 0x8702, []string{"set_reason(read only)"}},
		{Disconnect(0x98, "bye"), 0x9803, []string{"set_reason(bye)"}},
		{Deny(0x90, strings.Repeat("x", 2000)), 0x9002, []string{"set_reason(" + strings.Repeat("x", maxReason) + ")"}},
	}
	for _, tt := range tests {
		var gotPub Publish
		var gotSub Subscribe
		with(t, Extension{
			AuthorizePublish:   func(p *Publish) Verdict { gotPub = *p; gotPub.Payload = append([]byte(nil), p.Payload...); return tt.v },
			AuthorizeSubscribe: func(s *Subscribe) Verdict { gotSub = *s; return tt.v },
		})
		h := &recorder{}
		if d := authorizePublish(h, vector(t, "publish")); d != tt.want {
			t.Errorf("%+v: publish decision %#x, want %#x", tt.v, d, tt.want)
		}
		if d := authorizeSubscribe(h, vector(t, "subscribe")); d != tt.want {
			t.Errorf("%+v: subscribe decision %#x, want %#x", tt.v, d, tt.want)
		}
		want := append(append([]string(nil), tt.calls...), tt.calls...)
		if len(h.calls) != len(want) || (len(want) > 0 && !reflect.DeepEqual(h.calls, want)) {
			t.Errorf("%+v: calls %.200q", tt.v, h.calls)
		}
		if gotPub.Topic != "devices/sensor-1/temp" || string(gotPub.Payload) != "21.5" || !gotPub.Retain || gotPub.QoS != 2 {
			t.Errorf("publish handler got %+v", gotPub)
		}
		if gotSub.Filter != "$share/g/jobs/#" || !gotSub.Shared || gotSub.Username != "bob" {
			t.Errorf("subscribe handler got %+v", gotSub)
		}
	}
}

func TestOnEvent(t *testing.T) {
	var got []*Event
	with(t, Extension{OnEvent: func(e *Event) { got = append(got, e) }})
	h := &recorder{}
	onEvent(h, vector(t, "event"))
	onEvent(h, vector(t, "event_subscribe"))
	onEvent(h, vector(t, "publish")) // wrong kind: dropped, logged
	if len(got) != 2 || got[0].DisconnectKind != DisconnectConnectionLost || got[1].Filters[1].ReasonCode != 0x87 {
		t.Errorf("events %+v", got)
	}
	if len(h.calls) != 1 || !strings.HasPrefix(h.calls[0], "log(error, propolis: malformed EVENT record") {
		t.Errorf("calls %q", h.calls)
	}
}

func TestStop(t *testing.T) {
	stopped := false
	with(t, Extension{Stop: func() { stopped = true }})
	stop()
	if !stopped {
		t.Error("Stop not called")
	}
}

// nopHost is a host that does nothing, for allocation counts.
type nopHost struct{}

func (nopHost) log(Level, string) int32                  { return 0 }
func (nopHost) setReason(string) int32                   { return 0 }
func (nopHost) declareCallbacks(uint32) int32            { return 0 }
func (nopHost) addPublishFilter(string) int32            { return 0 }
func (nopHost) setSessionExpiry(uint32) int32            { return 0 }
func (nopHost) setReceiveMaximum(uint16) int32           { return 0 }
func (nopHost) setKeepalive(uint16) int32                { return 0 }
func (nopHost) setMaxQueued(uint16) int32                { return 0 }
func (nopHost) setOverloadThrottling(bool) int32         { return 0 }
func (nopHost) addConnackUserProperty(_, _ string) int32 { return 0 }
func (nopHost) addPermission([]byte) int32               { return 0 }
func (nopHost) packetSet(uint32, string) int32           { return 0 }
func (nopHost) packetSetInt(uint32, int64) int32         { return 0 }
func (nopHost) addInterceptFilter(uint32, string) int32  { return 0 }
func (nopHost) addInterceptClient(string) int32          { return 0 }

func TestAuthorizePublishAllocations(t *testing.T) {
	with(t, Extension{AuthorizePublish: func(p *Publish) Verdict {
		if strings.HasPrefix(p.Topic, "devices/") && len(p.Payload) < 100 {
			return Deny(CodeNotAuthorized, "no")
		}
		return Next()
	}})
	rec := vector(t, "publish")
	var h hostAPI = nopHost{}
	authorizePublish(h, rec) // first call fills the string caches
	if n := testing.AllocsPerRun(1000, func() { authorizePublish(h, rec) }); n != 0 {
		t.Errorf("authorize_publish of a repeated client and topic allocates %v times", n)
	}
}

func BenchmarkAuthorizePublish(b *testing.B) {
	old, oldRegistered := ext, registered
	defer func() { ext, registered = old, oldRegistered }()
	ext = Extension{AuthorizePublish: func(p *Publish) Verdict { return Next() }}
	rec := readHex(b, filepath.Join(vectorDir, "publish.hex"))
	b.ReportAllocs()
	for b.Loop() {
		authorizePublish(nopHost{}, rec)
	}
}

func TestBufferSize(t *testing.T) {
	const limit = 1 << 20
	for _, tc := range []struct {
		name string
		cur  int
		size int64
		n    int
		ok   bool
	}{
		{"first, small", 0, 100, minBuffer, true},
		{"first, zero", 0, 0, minBuffer, true},
		{"fits", 8192, 8000, 8192, true},
		{"grows to a power of two", 4096, 70000, 131072, true},
		{"grows to the limit, not beyond", 4096, limit - 1, limit, true},
		{"exactly the limit", 4096, limit, limit, true},
		{"beyond the limit keeps the buffer", 8192, limit + 1, 8192, false},
		{"negative", 8192, -1, 8192, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := bufferSize(tc.cur, tc.size, limit)
			if n != tc.n || ok != tc.ok {
				t.Fatalf("bufferSize(%d, %d) = %d, %v; want %d, %v", tc.cur, tc.size, n, ok, tc.n, tc.ok)
			}
			if ok && int64(n) < tc.size {
				t.Fatalf("buffer of %d bytes for a request of %d", n, tc.size)
			}
		})
	}
	if got := (&Extension{}).maxRecordSize(); got != DefaultMaxRecordSize {
		t.Errorf("default MaxRecordSize %d", got)
	}
	if got := (&Extension{MaxRecordSize: 1 << 20}).maxRecordSize(); got != 1<<20 {
		t.Errorf("MaxRecordSize 1 MiB gives %d", got)
	}
	if got := (&Extension{MaxRecordSize: 123}).maxRecordSize(); got != minBuffer {
		t.Errorf("MaxRecordSize 123 gives %d, want the broker's least request %d", got, minBuffer)
	}
}
