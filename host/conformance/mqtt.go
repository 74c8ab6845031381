package conformance

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/host"
)

// mqttTimeout bounds each MQTT exchange of the scenarios: far above what
// an extension within its deadlines needs, so only a hang reaches it.
const mqttTimeout = 15 * time.Second

// mqttObserver counts the calls the embedded broker made into the
// extension, by callback and outcome.
type mqttObserver struct {
	mu    sync.Mutex
	calls map[abi.Callback]map[host.Outcome]int
}

// ObserveCall counts c, a call into the extension under test (the kit's
// admit-all authenticator is not counted).
func (o *mqttObserver) ObserveCall(c host.Call) {
	if c.Extension == admitID {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.calls == nil {
		o.calls = map[abi.Callback]map[host.Outcome]int{}
	}
	if o.calls[c.Callback] == nil {
		o.calls[c.Callback] = map[host.Outcome]int{}
	}
	o.calls[c.Callback][c.Outcome]++
}

// settle waits, at most two seconds, until no call has been made for
// 100 ms: the events of the last disconnections are delivered after the
// clients are gone.
func (o *mqttObserver) settle() {
	last := -1
	for range 20 {
		n, _ := o.summary()
		if n == last {
			return
		}
		last = n
		time.Sleep(100 * time.Millisecond)
	}
}

// summary says how many calls there were, and lists the failed ones.
func (o *mqttObserver) summary() (total int, failed []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for cb, byOutcome := range o.calls {
		for out, n := range byOutcome {
			total += n
			if !out.Answered() && out != host.OutcomeTooLarge {
				failed = append(failed, fmt.Sprintf("%s ended %s %d times", abi.Callbacks[cb].Export, out, n))
			}
		}
	}
	sort.Strings(failed)
	return total, failed
}

// mqttChecks runs the extension in an embedded broker listening on a
// loopback port, and drives it with real MQTT 3.1.1 and 5 clients:
// CONNECT (with credentials, user properties and a will), SUBSCRIBE
// (plain and shared), PUBLISH at QoS 0 and 1, DISCONNECT and a dropped
// connection. A client refused by the extension is a valid outcome; a
// client left without an answer, or any call that traps, overruns or
// answers invalidly, fails.
func mqttChecks(ctx context.Context, r *Report, t *target, opts Options) {
	tmp, err := os.MkdirTemp("", "propolis-check-")
	if err != nil {
		r.add("mqtt", "embedded broker", Fail, "temporary folder: %v", err)
		return
	}
	defer os.RemoveAll(tmp)
	extDir := filepath.Join(tmp, "extensions")
	if err := install(t, filepath.Join(extDir, t.manifest.ID)); err != nil {
		r.add("mqtt", "embedded broker", Fail, "install the extension in %s: %v", extDir, err)
		return
	}
	// An extension that does not authenticate would see no client: the
	// broker refuses every CONNECT without a security extension.
	admit := !slices.Contains(t.callbacks, abi.CallbackAuthenticate)
	if admit {
		if err := installAdmit(filepath.Join(extDir, admitID)); err != nil {
			r.add("mqtt", "embedded broker", Fail, "install the kit's admit-all authenticator in %s: %v", extDir, err)
			return
		}
	}
	cfg := config.Default()
	cfg.Listeners = []config.Listener{{Name: "tcp", Type: "tcp", Address: "127.0.0.1:0"}}
	cfg.DataDir, cfg.ExtensionsDir = filepath.Join(tmp, "data"), extDir
	obs := &mqttObserver{}
	h, err := host.New(host.Options{Dir: extDir, CacheDir: opts.CacheDir, Logger: opts.Logger, Observer: obs, BrokerVersion: "conformance-kit"})
	if err != nil {
		r.add("mqtt", "embedded broker", Fail, "%v", err)
		return
	}
	defer h.Close(context.Background())
	srv, err := broker.New(broker.Options{Config: cfg, Logger: opts.Logger, Extensions: broker.Extensions{Authenticator: h, Events: h, Interceptors: h}})
	if err != nil {
		r.add("mqtt", "embedded broker", Fail, "%v", err)
		return
	}
	defer srv.Close()
	h.UseBroker(srv)
	if err := h.LoadAll(ctx); err != nil {
		r.add("mqtt", "embedded broker", Fail, "load: %v", err)
		return
	}
	for _, id := range []string{t.manifest.ID, admitID} {
		if id == admitID && !admit {
			continue
		}
		if st, ok := statusOf(h, id); !ok || st.State != host.StateRunning {
			reason := "not loaded"
			if ok {
				reason = string(st.State) + ": " + st.Reason
			}
			what := "the extension"
			if id == admitID {
				what = "the kit's admit-all authenticator"
			}
			r.add("mqtt", "embedded broker", Fail, "%s did not start in the broker: %s", what, reason)
			return
		}
	}
	if err := srv.Start(); err != nil {
		r.add("mqtt", "embedded broker", Fail, "start: %v", err)
		return
	}
	addr := srv.Addr("tcp")
	with := "with the extension running"
	if admit {
		with += ", and the kit's admit-all authenticator, since the extension does not authenticate"
	}
	r.add("mqtt", "embedded broker", Pass, "listening on %s %s", addr, with)

	s := &scenarios{r: r, addr: addr, user: opts.Username, pass: opts.Password, admitted: admit}
	if s.user == "" {
		s.user = "kit"
	}
	if s.pass == "" {
		s.pass = "kit-password"
	}
	s.v311()
	s.v311Will()
	s.v5()
	s.v5Will()
	obs.settle()

	total, failed := obs.summary()
	if len(failed) > 0 {
		r.add("mqtt", "every call succeeded", Fail, "of %d calls the broker made into the extension: %s (run without --mqtt for the input that causes it)",
			total, strings.Join(failed, "; "))
	} else {
		r.add("mqtt", "every call succeeded", Pass, "%d calls the broker made into the extension", total)
	}
	st, _ := statusOf(h, t.manifest.ID)
	if np := st.Refused("NOT_PERMITTED"); np > 0 {
		r.add("mqtt", "uses only granted services", Fail, "%d host service calls were refused NOT_PERMITTED: the manifest does not grant their service", np)
	} else {
		r.add("mqtt", "uses only granted services", Pass, "no service call refused (granted: %s)", namesOr(st.Services, "none"))
	}
	if st.State != host.StateRunning {
		r.add("mqtt", "still running", Fail, "the host stopped the extension: %s", st.Reason)
	} else {
		r.add("mqtt", "still running", Pass, "the host counted %d failed calls", st.Errors)
	}
	r.CallsMade += total
}

// admitID is the id of the kit's admit-all authenticator (admit.wat).
const admitID = "propolis-kit-admit"

// admitWasm is admit.wat compiled (testdata/wasm/build.sh).
//
//go:embed admit.wasm
var admitWasm []byte

// installAdmit lays out the kit's admit-all authenticator in dir, at the
// lowest priority.
func installAdmit(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	manifest := "id: " + admitID + "\nversion: 1.0.0\npriority: -1000\nmodule: admit.wasm\nabi: \"1.0\"\n"
	if err := os.WriteFile(filepath.Join(dir, host.ManifestFile), []byte(manifest), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "admit.wasm"), admitWasm, 0o644)
}

// statusOf returns the status of the extension id in h.
func statusOf(h *host.Host, id string) (host.Status, bool) {
	for _, st := range h.Status() {
		if st.ID == id {
			return st, true
		}
	}
	return host.Status{}, false
}

// install copies the extension into dir: the folder's files, or the bare
// module with its made-up manifest.
func install(t *target, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if t.bare {
		if err := os.WriteFile(filepath.Join(dir, host.ManifestFile), t.yaml, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(t.module)), t.bin, 0o644)
	}
	return filepath.WalkDir(t.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(t.dir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		if !d.Type().IsRegular() || rel == host.DisabledFile {
			return nil
		}
		return copyFile(path, filepath.Join(dir, rel))
	})
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// scenarios drives the embedded broker with real clients.
type scenarios struct {
	r          *Report
	addr       string
	user, pass string
	// admitted: the kit's admit-all authenticator lets every client in
	// (the extension does not authenticate).
	admitted bool
}

// v311 connects an MQTT 3.1.1 client with credentials and no will,
// subscribes, publishes at QoS 0 and 1, and disconnects.
func (s *scenarios) v311() {
	const name = "MQTT 3.1.1: CONNECT, SUBSCRIBE, PUBLISH, DISCONNECT"
	c, ok := s.dial311(name, "kit-v311", false, nil)
	if !ok {
		return
	}
	defer c.Disconnect(250)
	var steps []string
	sub := c.Subscribe("kit/v311/#", 1, func(paho3.Client, paho3.Message) {})
	if !sub.WaitTimeout(mqttTimeout) {
		s.r.add("mqtt", name, Fail, "no SUBACK within %v for kit/v311/#", mqttTimeout)
		return
	}
	steps = append(steps, fmt.Sprintf("SUBACK %v", sub.(*paho3.SubscribeToken).Result()))
	for _, qos := range []byte{0, 1} {
		p := c.Publish("kit/v311/a", qos, false, "hello")
		if !p.WaitTimeout(mqttTimeout) {
			s.r.add("mqtt", name, Fail, "PUBLISH QoS %d to kit/v311/a: no answer within %v", qos, mqttTimeout)
			return
		}
		steps = append(steps, fmt.Sprintf("PUBLISH QoS %d sent", qos))
	}
	s.r.add("mqtt", name, Pass, "accepted; %s", strings.Join(steps, ", "))
}

// v311Will connects an MQTT 3.1.1 client with a will and drops its
// connection, so the broker publishes the will (if allowed).
func (s *scenarios) v311Will() {
	const name = "MQTT 3.1.1: will, then a dropped connection"
	var conn net.Conn
	c, ok := s.dial311(name, "kit-v311-will", true, func(_ *url.URL, _ paho3.ClientOptions) (net.Conn, error) {
		var err error
		conn, err = net.DialTimeout("tcp", s.addr, mqttTimeout)
		return conn, err
	})
	if !ok {
		return
	}
	conn.Close() // dropped: no DISCONNECT, so the will is published
	c.Disconnect(0)
	s.r.add("mqtt", name, Pass, "accepted, then dropped")
}

// dial311 connects an MQTT 3.1.1 client, with a will when will is true,
// over the connection open makes (nil: paho's own). It reports a failure,
// or a refusal as not driven, and returns false then.
func (s *scenarios) dial311(name, id string, will bool, open paho3.OpenConnectionFunc) (paho3.Client, bool) {
	o := paho3.NewClientOptions().AddBroker("tcp://" + s.addr).SetClientID(id).SetProtocolVersion(4).
		SetUsername(s.user).SetPassword(s.pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(mqttTimeout).SetWriteTimeout(mqttTimeout)
	if will {
		o.SetWill("kit/will/v311", "gone", 1, false)
	}
	if open != nil {
		o.SetCustomOpenConnectionFn(open)
	}
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(mqttTimeout) {
		s.r.add("mqtt", name, Fail, "no CONNACK within %v", mqttTimeout)
		return nil, false
	}
	rc := tok.(*paho3.ConnectToken).ReturnCode()
	if rc == 0 && tok.Error() != nil {
		s.r.add("mqtt", name, Fail, "CONNECT: %v", tok.Error())
		return nil, false
	}
	if rc != 0 {
		if rc > 5 {
			s.r.add("mqtt", name, Fail, "CONNACK return code %#x is not one MQTT 3.1.1 defines", rc)
			return nil, false
		}
		s.r.add("mqtt", name, Skip, "not driven: the extension refused the CONNECT (return code %#x)%s", rc, s.hint())
		return nil, false
	}
	return c, true
}

// hint says how to get a refused scenario driven: credentials the
// extension accepts, when it is the extension that authenticates.
func (s *scenarios) hint() string {
	if s.admitted {
		return "; the kit's admit-all authenticator allowed it, so the broker refused it (see its log with --verbose)"
	}
	return fmt.Sprintf("; it ran as user %q: give --username and --password of a user the extension lets in", s.user)
}

// dialV5 connects an MQTT 5 client; onPub receives its messages.
func (s *scenarios) dialV5(id string, will *paho.WillMessage, onPub func(*paho.Publish)) (net.Conn, *paho.Client, *paho.Connack, error) {
	conn, err := net.DialTimeout("tcp", s.addr, mqttTimeout)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) { onPub(p.Packet); return true, nil }}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), mqttTimeout)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, Username: s.user, UsernameFlag: true, Password: []byte(s.pass),
		PasswordFlag: true, Properties: &paho.ConnectProperties{User: paho.UserProperties{{Key: "kit", Value: "conformance"}, {Key: "lang", Value: "go"}}}}
	if will != nil {
		cp.WillMessage = will
	}
	ack, err := c.Connect(ctx, cp)
	return conn, c, ack, err
}

// v5 connects an MQTT 5 client with credentials and user properties,
// subscribes to a plain and a shared filter, publishes at QoS 0 and 1 with
// user properties, and disconnects.
func (s *scenarios) v5() {
	const name = "MQTT 5: CONNECT, SUBSCRIBE (plain and shared), PUBLISH, DISCONNECT"
	got := make(chan string, 8)
	conn, c, ack, err := s.dialV5("kit-v5", nil, func(p *paho.Publish) {
		select {
		case got <- p.Topic:
		default:
		}
	})
	if conn == nil {
		s.r.add("mqtt", name, Fail, "dial: %v", err)
		return
	}
	defer conn.Close()
	if ack == nil {
		s.r.add("mqtt", name, Fail, "no CONNACK within %v: %v", mqttTimeout, err)
		return
	}
	if ack.ReasonCode != 0 {
		if ack.ReasonCode < 0x80 {
			s.r.add("mqtt", name, Fail, "CONNACK reason code %#x is not a refusal MQTT 5 defines", ack.ReasonCode)
			return
		}
		s.r.add("mqtt", name, Skip, "not driven: the extension refused the CONNECT (reason code %#x)%s", ack.ReasonCode, s.hint())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), mqttTimeout)
	defer cancel()
	var steps []string
	suback, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "kit/v5/#", QoS: 1}, {Topic: "$share/kit/kit/shared/#", QoS: 1}}})
	if suback == nil {
		s.r.add("mqtt", name, Fail, "SUBSCRIBE kit/v5/# and $share/kit/kit/shared/#: no SUBACK: %v", err)
		return
	}
	steps = append(steps, fmt.Sprintf("SUBACK % x", suback.Reasons))
	for _, p := range []*paho.Publish{
		{Topic: "kit/v5/a", QoS: 0, Payload: []byte("hello")},
		{Topic: "kit/v5/b", QoS: 1, Payload: []byte("hello"), Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}}},
		{Topic: "kit/shared/x", QoS: 1, Payload: []byte("to the group")},
	} {
		res, err := c.Publish(ctx, p)
		if p.QoS > 0 && res == nil {
			s.r.add("mqtt", name, Fail, "PUBLISH QoS %d to %s: no PUBACK: %v", p.QoS, p.Topic, err)
			return
		}
		if p.QoS > 0 {
			steps = append(steps, fmt.Sprintf("PUBACK %#x for %s", res.ReasonCode, p.Topic))
		}
	}
	// Both interceptors and authorization may stop a delivery: a message
	// that does not arrive is reported, not failed.
	delivered := 0
	wait := time.NewTimer(time.Second)
	defer wait.Stop()
collect:
	for delivered < 3 {
		select {
		case <-got:
			delivered++
		case <-wait.C:
			break collect
		}
	}
	steps = append(steps, fmt.Sprintf("%d of 3 messages delivered back", delivered))
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		s.r.add("mqtt", name, Fail, "DISCONNECT: %v", err)
		return
	}
	s.r.add("mqtt", name, Pass, "accepted; %s", strings.Join(steps, ", "))
}

// v5Will connects an MQTT 5 client with a will and drops its connection
// without DISCONNECT, so the broker publishes the will (if allowed).
func (s *scenarios) v5Will() {
	const name = "MQTT 5: will, then a dropped connection"
	conn, _, ack, err := s.dialV5("kit-v5-will", &paho.WillMessage{Topic: "kit/will/v5", QoS: 1, Payload: []byte("gone")}, nil)
	if conn == nil {
		s.r.add("mqtt", name, Fail, "dial: %v", err)
		return
	}
	if ack == nil {
		conn.Close()
		s.r.add("mqtt", name, Fail, "no CONNACK within %v: %v", mqttTimeout, err)
		return
	}
	conn.Close()
	if ack.ReasonCode != 0 {
		s.r.add("mqtt", name, Skip, "not driven: the extension refused the CONNECT with a will (reason code %#x)%s", ack.ReasonCode, s.hint())
		return
	}
	s.r.add("mqtt", name, Pass, "accepted, then dropped")
}
