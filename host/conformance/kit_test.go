package conformance

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
)

// cacheDir is one compilation cache for the whole test run, so that a
// module checked twice (offline, then with --mqtt) compiles once.
var cacheDir = func() string {
	d, err := os.MkdirTemp("", "propolis-kit-cache")
	if err != nil {
		panic(err)
	}
	return d
}()

func TestMain(m *testing.M) {
	code := m.Run()
	os.RemoveAll(cacheDir)
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// check runs the kit on path with a fixed seed and a small corpus.
func check(t *testing.T, path string, opts Options) *Report {
	t.Helper()
	if opts.Calls == 0 {
		opts.Calls = 40
	}
	if opts.Seed == 0 {
		opts.Seed = 7
	}
	opts.CacheDir = cacheDir
	r, err := Check(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func text(r *Report) string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// wat returns the path of a committed WAT fixture's module.
func wat(name string) string {
	return filepath.Join("..", "..", "testdata", "wasm", name+".wasm")
}

// folder lays out the module at wasm as an extension folder named id with
// the given manifest lines after id, version and module.
func folder(t *testing.T, id, wasm, manifest string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(wasm)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "ext.wasm"), string(bin))
	write(t, filepath.Join(dir, "propolis-extension.yaml"), "id: "+id+"\nversion: 1.0.0\nmodule: ext.wasm\n"+manifest)
	return dir
}

// examples are the extensions of examples/ (the Makefile's EXAMPLES).
var examples = []string{"allow-all", "topic-acl", "banlist", "publish-guard", "topic-lint", "session-tracker", "payload-enricher", "topic-rewriter"}

func TestExamplesPass(t *testing.T) {
	for _, id := range examples {
		t.Run(id, func(t *testing.T) {
			r := check(t, exampleFolder(t, id), Options{})
			if !r.Passed() {
				t.Fatalf("%s failed the kit:\n%s", id, text(r))
			}
			if r.CallsMade == 0 {
				t.Fatalf("%s: no call made:\n%s", id, text(r))
			}
		})
	}
}

// TestKeptVerdicts: an extension that marks authorize_publish verdicts
// kept (cache_result, ABI 1.4) is asked again with other payloads; one
// whose verdict reads the payload fails, naming the input and both
// answers, and topic-lint, whose verdict reads only the topic, passes.
func TestKeptVerdicts(t *testing.T) {
	result := func(r *Report) Result {
		t.Helper()
		for _, res := range r.Results {
			if res.Name == keptCheck {
				return res
			}
		}
		t.Fatalf("no %q result:\n%s", keptCheck, text(r))
		return Result{}
	}
	bad := check(t, buildGo(t, "testdata/guests", "keptpayload"), Options{})
	if res := result(bad); res.Status != Fail || !strings.Contains(res.Message, "marked with cache_result for 60s") ||
		!strings.Contains(res.Message, "payload over 16 bytes") || !strings.Contains(res.Message, "authorize_publish") {
		t.Fatalf("keptpayload: %+v\n%s", res, text(bad))
	}
	good := check(t, exampleFolder(t, "topic-lint"), Options{})
	if res := result(good); res.Status != Pass || !good.Passed() {
		t.Fatalf("topic-lint: %+v\n%s", res, text(good))
	}
	plain := check(t, exampleFolder(t, "publish-guard"), Options{})
	if res := result(plain); res.Status != Skip {
		t.Fatalf("publish-guard marks nothing: %+v", res)
	}
}

// TestValidGuestsPass runs the kit on the valid guests of testdata/: Go
// guests and WAT modules, as bare modules.
func TestValidGuestsPass(t *testing.T) {
	paths := []string{wat("ok/minimal"), wat("ok/wat_auth"), wat("ok/events"), wat("ok/features"), wat("ok/svc_bad_args")}
	for _, g := range []string{"bench", "bigrecord", "connattrs", "interceptnomatch", "interceptnoop", "interceptprobe", "kicker", "perms",
		"svcbench", "svcprobe", "ticker"} {
		paths = append(paths, buildGo(t, "testdata/guests", g))
	}
	// httpauth asks an identity service on every CONNECT: a real one on
	// loopback, granted in its manifest.
	var asked atomic.Int64
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		var c struct{ Username string }
		_ = json.NewDecoder(r.Body).Decode(&c)
		if !strings.HasPrefix(c.Username, "user-") {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(idp.Close)
	host := strings.TrimPrefix(idp.URL, "http://")
	paths = append(paths, folder(t, "httpauth", buildGo(t, "testdata/guests", "httpauth"),
		"services: [http, auth_cache]\nhttp:\n  hosts: [\""+host+"\"]\nconfig:\n  url: "+idp.URL+"/check\n  cache_seconds: 60\n"))
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			if r := check(t, p, Options{Network: filepath.Base(p) == "httpauth"}); !r.Passed() {
				t.Fatalf("failed the kit:\n%s", text(r))
			}
		})
	}
	if asked.Load() == 0 {
		t.Fatal("httpauth never asked its identity service")
	}
}

// TestBrokenModulesFail runs the kit on modules that break the ABI, each
// in one way, and wants the check that names it to fail with a message
// naming the problem.
func TestBrokenModulesFail(t *testing.T) {
	fast := "limits:\n  authenticate_deadline: 100ms\n  call_deadline: 50ms\n"
	cases := []struct {
		name, path, check, message string
	}{
		{"missing marker", wat("error/no_marker"), "ABI marker", "export propolis_abi_v1: missing: not a Propolis ABI 1 module"},
		{"wrong export signature", wat("error/bad_export"), "export signatures", "export propolis_authenticate: got (i32,i32)->i32, want (i32)->i32"},
		{"wrong import signature", wat("error/bad_import"), "imports", "import propolis_v1.add_permission: got (i32)->i32, want (i32,i32)->i32"},
		{"unknown import", wat("error/unknown_import"), "imports", "import propolis_v1.teleport: no such host function"},
		{"future ABI", wat("error/future_minor"), "ABI version", "module is built for ABI 1.7"},
		{"traps", wat("error/trap"), "authenticate: no trap", "traps on 3 of"},
		{"spins", folder(t, "spin", wat("error/spin"), fast), "authorize_publish: answers within the deadline", "call deadline exceeded (50ms)"},
		{"leaks memory", wat("error/leak"), "memory does not keep growing", "leaks memory: it grew to its limit"},
		{"leaks memory slowly", wat("error/slow_leak"), "memory does not keep growing", "leaks memory"},
		{"Go guest leaks slowly", buildGo(t, "testdata/guests", "slowleak"), "memory does not keep growing", "leaks memory"},
		{"per-client state across callbacks", buildGo(t, "testdata/guests", "percli"), "same answer on every instance",
			"depends on state kept in the instance or on nondeterminism (clock, random): input #"},
		{"packet changes from a global", buildGo(t, "testdata/guests", "seqstamp"), "same answer on every instance", "changing user_properties=[\"seq\"="},
		{"reason string from a global", wat("error/reason_state"), "same answer on every instance", "reason \"even\""},
		{"invalid decision", wat("error/bad_answer"), "authenticate: answers are valid decisions", "invalid answer: decision 0x3"},
		{"undeclared service, static", folder(t, "undeclared", wat("error/undeclared_service"), ""), "services",
			"imports storage_get of service storage, which the manifest's services list does not grant"},
		{"undeclared service, run", folder(t, "undeclared", wat("error/undeclared_service"), ""), "authorize_publish: uses only granted services",
			"calls storage_get, of service storage, which the manifest does not grant"},
		{"granted but unused service", folder(t, "overgranted", wat("ok/minimal"), "services: [storage]\n"), "services",
			"grants service storage but the module imports none of its functions"},
		{"globals state", wat("error/globals_state"), "same answer on every instance", "depends on state kept in the instance"},
		{"refuses to start", wat("error/refuse_start"), "start and stop", "refused to start: missing license key"},
		{"stop overruns", folder(t, "stopspin", wat("error/stop_spin"), fast), "start and stop", "the stop callback failed: propolis_stop ended deadline"},
		{"bad manifest", folder(t, "badmanifest", wat("ok/minimal"), "limits:\n  pool_size: 0\n  memory: lots\nservices: [teleport]\n"),
			"manifest", "propolis-extension.yaml:6:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := check(t, c.path, Options{})
			if r.Passed() {
				t.Fatalf("passed the kit:\n%s", text(r))
			}
			for _, x := range r.Results {
				if x.Name == c.check {
					if x.Status != Fail || !strings.Contains(x.Message, c.message) {
						t.Fatalf("check %q: %s %q, want fail with %q\n%s", c.check, x.Status, x.Message, c.message, text(r))
					}
					return
				}
			}
			t.Fatalf("no check %q:\n%s", c.check, text(r))
		})
	}
}

// TestManifestErrorsLocated wants every problem of a manifest, each with
// its file, line and column.
func TestManifestErrorsLocated(t *testing.T) {
	dir := folder(t, "badmanifest", wat("ok/minimal"), "limits:\n  memory: lots\nservices: [teleport]\n")
	r := check(t, dir, Options{})
	msg := r.Results[0].Message
	file := filepath.Join(dir, "propolis-extension.yaml")
	for _, want := range []string{file + ":5:11: limits.memory:", file + ":6:12: services[0]: unknown host service \"teleport\""} {
		if !strings.Contains(msg, want) {
			t.Errorf("manifest message %q lacks %q", msg, want)
		}
	}
}

// TestSeedReplays wants the same corpus from the same seed, and another
// from another seed.
func TestSeedReplays(t *testing.T) {
	cbs := []abi.Callback{abi.CallbackAuthenticate, abi.CallbackAuthorizePublish, abi.CallbackOnEvent, abi.CallbackInterceptPublishInbound}
	descs := func(seed uint64) []string {
		var out []string
		for _, in := range newGen(seed).corpus(cbs, 30) {
			out = append(out, in.String())
		}
		return out
	}
	if a, b := descs(42), descs(42); !reflect.DeepEqual(a, b) {
		t.Fatal("seed 42 gave two corpora")
	}
	if a, b := descs(42), descs(43); reflect.DeepEqual(a, b) {
		t.Fatal("seeds 42 and 43 gave the same corpus")
	}
	r := check(t, wat("error/trap"), Options{Seed: 42})
	if !strings.Contains(text(r), "replay: propolis extensions check --seed 42 --calls 40 ") {
		t.Fatalf("no replay line:\n%s", text(r))
	}
}

// TestCorpusCoversEdgeCases wants each edge case of the issue in a corpus
// of the default size.
func TestCorpusCoversEdgeCases(t *testing.T) {
	corpus := newGen(1).corpus([]abi.Callback{abi.CallbackAuthenticate, abi.CallbackAuthorizePublish, abi.CallbackAuthorizeSubscribe}, DefaultCalls)
	seen := map[string]bool{}
	for _, in := range corpus {
		if len(in.extra) > 0 {
			seen["later minor"] = true
		}
		switch r := in.rec.(type) {
		case *abi.ConnectRecord:
			seen["empty client id"] = seen["empty client id"] || r.ClientID == ""
			seen["max client id"] = seen["max client id"] || len(r.ClientID) == maxMQTT
			seen["max password"] = seen["max password"] || len(r.Password) == maxMQTT
			seen["non-UTF-8 password"] = seen["non-UTF-8 password"] || (len(r.Password) > 0 && !isText(r.Password) && len(r.Password) < 100)
			seen["many user properties"] = seen["many user properties"] || len(r.UserProperties) >= manyProperties
			seen["3.1.1"] = seen["3.1.1"] || r.ProtocolVersion == 4
			seen["5"] = seen["5"] || r.ProtocolVersion == 5
			seen["will"] = seen["will"] || r.Flags&abi.ConnectHasWill != 0
		case *abi.PublishRecord:
			seen["empty topic"] = seen["empty topic"] || r.Topic == ""
			seen["max topic"] = seen["max topic"] || len(r.Topic) == maxMQTT
		case *abi.SubscribeRecord:
			seen["shared subscription"] = seen["shared subscription"] || r.Flags&abi.SubscribeShared != 0
		}
	}
	for _, want := range []string{"later minor", "empty client id", "max client id", "max password", "non-UTF-8 password", "many user properties",
		"3.1.1", "5", "will", "empty topic", "max topic", "shared subscription"} {
		if !seen[want] {
			t.Errorf("no %s in the corpus", want)
		}
	}
}

// TestFormats wants the three formats to carry the same results.
func TestFormats(t *testing.T) {
	r := check(t, wat("error/trap"), Options{})
	var js struct {
		Passed  bool     `json:"passed"`
		Seed    uint64   `json:"seed"`
		Replay  string   `json:"replay"`
		Results []Result `json:"results"`
	}
	var b strings.Builder
	if err := r.Write(&b, "json"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b.String()), &js); err != nil {
		t.Fatal(err)
	}
	if js.Passed || js.Seed != 7 || !reflect.DeepEqual(js.Results, r.Results) || js.Replay != r.Replay() {
		t.Fatalf("json: %+v", js)
	}
	b.Reset()
	if err := r.Write(&b, "junit"); err != nil {
		t.Fatal(err)
	}
	var ju junitSuites
	if err := xml.Unmarshal([]byte(b.String()), &ju); err != nil {
		t.Fatal(err)
	}
	s := ju.Suites[0]
	if s.Tests != len(r.Results) || s.Failures != r.Failed() || len(s.Cases) != len(r.Results) {
		t.Fatalf("junit: %d tests %d failures, want %d and %d", s.Tests, s.Failures, len(r.Results), r.Failed())
	}
	for i, c := range s.Cases {
		x := r.Results[i]
		if c.Name != x.Name || (c.Failure != nil) != (x.Status == Fail) || (c.Skipped != nil) != (x.Status == Skip) {
			t.Fatalf("junit case %d: %+v, result %+v", i, c, x)
		}
		if c.Failure != nil && !strings.Contains(c.Failure.Text, x.Message) {
			t.Fatalf("junit failure %q lacks %q", c.Failure.Text, x.Message)
		}
	}
	if err := r.Write(&b, "yaml"); err == nil {
		t.Fatal("format yaml accepted")
	}
}

// TestMQTT runs an example and a trapping module in the embedded broker
// with real MQTT clients.
func TestMQTT(t *testing.T) {
	r := check(t, exampleFolder(t, "allow-all"), Options{MQTT: true, Calls: 10})
	if !r.Passed() {
		t.Fatalf("allow-all failed with --mqtt:\n%s", text(r))
	}
	var mqtt []string
	for _, x := range r.Results {
		if x.Group == "mqtt" {
			mqtt = append(mqtt, x.Name+": "+x.Message)
		}
	}
	all := strings.Join(mqtt, "\n")
	for _, want := range []string{"MQTT 3.1.1: CONNECT, SUBSCRIBE, PUBLISH, DISCONNECT: accepted", "MQTT 5: CONNECT, SUBSCRIBE (plain and shared), PUBLISH, DISCONNECT: accepted",
		"3 of 3 messages delivered back", "every call succeeded"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the MQTT results:\n%s", want, all)
		}
	}

	r = check(t, wat("error/trap"), Options{MQTT: true, Calls: 5})
	for _, x := range r.Results {
		if x.Group == "mqtt" && x.Name == "every call succeeded" {
			if x.Status != Fail || !strings.Contains(x.Message, "propolis_authenticate ended trap") {
				t.Fatalf("trap with --mqtt: %s %q", x.Status, x.Message)
			}
			return
		}
	}
	t.Fatalf("no MQTT result for trap:\n%s", text(r))
}

// TestMQTTWithoutAuthenticate: an extension that does not authenticate
// (here an interceptor) is driven by every MQTT scenario, the kit's
// admit-all authenticator letting the clients in, and its calls are
// counted; the broker alone would refuse every CONNECT.
func TestMQTTWithoutAuthenticate(t *testing.T) {
	r := check(t, exampleFolder(t, "payload-enricher"), Options{MQTT: true, Calls: 5})
	scenarios := 0
	for _, x := range r.Results {
		if x.Group != "mqtt" {
			continue
		}
		if x.Status != Pass {
			t.Errorf("%s: %s %q", x.Name, x.Status, x.Message)
		}
		if strings.HasPrefix(x.Name, "MQTT ") {
			scenarios++
		}
		if x.Name == "embedded broker" && !strings.Contains(x.Message, "admit-all authenticator") {
			t.Errorf("embedded broker: %q does not say the kit admits the clients", x.Message)
		}
		if x.Name == "every call succeeded" && strings.HasPrefix(x.Message, "0 calls") {
			t.Errorf("every call succeeded: %q, want the interceptor called", x.Message)
		}
	}
	if scenarios != 4 {
		t.Errorf("%d MQTT scenarios, want 4:\n%s", scenarios, text(r))
	}
}

func TestBadPath(t *testing.T) {
	if _, err := Check(context.Background(), t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "no propolis-extension.yaml") {
		t.Fatalf("empty folder: %v", err)
	}
	p := filepath.Join(t.TempDir(), "x.txt")
	write(t, p, "x")
	if _, err := Check(context.Background(), p, Options{}); err == nil || !strings.Contains(err.Error(), "not a .wasm file") {
		t.Fatalf("text file: %v", err)
	}
}

// Without Options.Network the kit is offline: an extension's http_request
// fails at once, its identity service is never asked, and the failure is
// a valid answer of the extension (here a denial), not a failed check.
func TestOfflineByDefault(t *testing.T) {
	var asked atomic.Int64
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked.Add(1) }))
	t.Cleanup(idp.Close)
	host := strings.TrimPrefix(idp.URL, "http://")
	dir := folder(t, "httpauth", buildGo(t, "testdata/guests", "httpauth"),
		"services: [http, auth_cache]\nhttp:\n  hosts: [\""+host+"\"]\nconfig:\n  url: "+idp.URL+"/check\n  cache_seconds: 60\n")
	r := check(t, dir, Options{Calls: 20})
	if !r.Passed() {
		t.Fatalf("failed the kit:\n%s", text(r))
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("the identity service was asked %d times by an offline run", n)
	}
	if strings.Contains(r.Replay(), "--network") {
		t.Errorf("replay %q of an offline run asks for the network", r.Replay())
	}
	r = check(t, dir, Options{Calls: 20, Network: true})
	if !r.Passed() || asked.Load() == 0 || !strings.Contains(r.Replay(), "--network ") {
		t.Fatalf("with Network: passed %v, asked %d, replay %q", r.Passed(), asked.Load(), r.Replay())
	}
}

// TestModuleNotRegular wants a module that is not a regular file (a link
// to /dev/zero) or is larger than the host loads refused with a message
// naming the path and the limit, without reading it.
func TestModuleNotRegular(t *testing.T) {
	dir := t.TempDir()
	zero := filepath.Join(dir, "z.wasm")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Skip(err)
	}
	big := filepath.Join(dir, "big.wasm")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(300 << 20); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	for path, want := range map[string]string{zero: "not a regular file", big: "more than"} {
		r := check(t, path, Options{})
		found := false
		for _, x := range r.Results {
			if x.Name == "module compiles" {
				found = true
				if x.Status != Fail || !strings.Contains(x.Message, path) || !strings.Contains(x.Message, "256 MiB") || !strings.Contains(x.Message, want) {
					t.Errorf("%s: %s %q, want a failure naming the path, the 256 MiB limit and %q", path, x.Status, x.Message, want)
				}
			}
		}
		if !found || r.Passed() {
			t.Errorf("%s: no failed module check:\n%s", path, text(r))
		}
	}
}

// TestBadManifestStillChecksModule wants the module of a folder with a bad
// manifest checked too, and the run skipped.
func TestBadManifestStillChecksModule(t *testing.T) {
	dir := folder(t, "badboth", wat("error/bad_export"), "limits:\n  memory: lots\n")
	r := check(t, dir, Options{})
	got := map[string]Result{}
	for _, x := range r.Results {
		got[x.Name] = x
	}
	if x := got["manifest"]; x.Status != Fail {
		t.Errorf("manifest: %s %q", x.Status, x.Message)
	}
	if x := got["export signatures"]; x.Status != Fail || !strings.Contains(x.Message, "export propolis_authenticate: got (i32,i32)->i32") {
		t.Errorf("export signatures of a folder with a bad manifest: %s %q\n%s", x.Status, x.Message, text(r))
	}
	if x := got["start and stop"]; x.Status != Skip {
		t.Errorf("start and stop: %s %q", x.Status, x.Message)
	}
}

// TestWasmSuffixAnyCase wants a module named .WASM checked as a module.
func TestWasmSuffixAnyCase(t *testing.T) {
	bin, err := os.ReadFile(wat("ok/minimal"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "Minimal.WASM")
	write(t, p, string(bin))
	if r := check(t, p, Options{}); !r.Passed() {
		t.Fatalf("Minimal.WASM:\n%s", text(r))
	}
}

// TestBareServicesCannotFail wants a bare module's services result to say
// that its grants are inferred.
func TestBareServicesCannotFail(t *testing.T) {
	r := check(t, wat("ok/minimal"), Options{Calls: 5})
	for _, x := range r.Results {
		if x.Name == "services" && strings.Contains(x.Message, "inferred from its imports, so this check cannot fail") {
			return
		}
	}
	t.Fatalf("no services result saying the grants are inferred:\n%s", text(r))
}

// TestReplayFlags wants every flag that changes the run in the replay,
// the path shell-quoted and the password never.
func TestReplayFlags(t *testing.T) {
	r := &Report{Path: "/tmp/my ext's/x.wasm", Seed: 5, Calls: 10, MQTT: true, Username: "bob", PasswordSet: true, Network: true}
	want := `propolis extensions check --seed 5 --calls 10 --network --mqtt --username bob --password ... '/tmp/my ext'\''s/x.wasm'`
	if got := r.Replay(); got != want {
		t.Fatalf("replay\n%s\nwant\n%s", got, want)
	}
	var b strings.Builder
	_ = r.WriteJSON(&b)
	if strings.Contains(b.String(), "secret") {
		t.Fatal("password in the JSON report")
	}
}

// TestMQTTRefusedNotDriven wants scenarios an extension refused reported
// as skipped (not driven), and a 3.1.1 client without a will driven when
// the extension refuses wills.
func TestMQTTRefusedNotDriven(t *testing.T) {
	wasm := buildGo(t, "testdata/guests", "nowill")
	r := check(t, wasm, Options{MQTT: true, Calls: 5, Username: "kit", Password: "secret"})
	got := map[string]Result{}
	for _, x := range r.Results {
		if x.Group == "mqtt" {
			got[x.Name] = x
		}
	}
	if x := got["MQTT 3.1.1: CONNECT, SUBSCRIBE, PUBLISH, DISCONNECT"]; x.Status != Pass || !strings.HasPrefix(x.Message, "accepted") {
		t.Errorf("3.1.1 without a will: %s %q\n%s", x.Status, x.Message, text(r))
	}
	for _, n := range []string{"MQTT 3.1.1: will, then a dropped connection", "MQTT 5: will, then a dropped connection"} {
		if x := got[n]; x.Status != Skip || !strings.Contains(x.Message, "not driven: the extension refused") {
			t.Errorf("%s: %s %q, want skip, not driven", n, x.Status, x.Message)
		}
	}
	if !r.Passed() || !strings.Contains(r.Replay(), "--mqtt --username kit --password ... ") || strings.Contains(text(r), "secret") {
		t.Errorf("passed %v, replay %q", r.Passed(), r.Replay())
	}
	r = check(t, wasm, Options{MQTT: true, Calls: 5, Username: "intruder"})
	for _, x := range r.Results {
		if x.Group == "mqtt" && strings.HasPrefix(x.Name, "MQTT ") && (x.Status != Skip || !strings.Contains(x.Message, "not driven")) {
			t.Errorf("refused credentials: %s: %s %q", x.Name, x.Status, x.Message)
		}
	}
}

// TestMemoryPlan wants the full budget for a fast extension, even on a
// loaded machine, and a few runs for a slow one.
func TestMemoryPlan(t *testing.T) {
	warm, window, windows := memoryPlan(100, 20*time.Millisecond)
	if warm*100 < warmCalls || window*100 < windowCalls || windows != memWindows {
		t.Errorf("100 calls in 20ms: %d warm-up runs, windows of %d runs, %d windows", warm, window, windows)
	}
	warm, window, windows = memoryPlan(300, 2*time.Second)
	if total := warm + window*windows; total < minMemoryRuns || total > 2*minMemoryRuns || warm < 1 || windows < 4 {
		t.Errorf("300 calls in 2s: %d warm-up runs, windows of %d runs, %d windows", warm, window, windows)
	}
}
