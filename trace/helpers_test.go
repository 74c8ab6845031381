package trace_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/trace"
)

// testLogger writes to stderr with -v, else nowhere.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// spyTapper is the broker as the Recorder sees it, remembering whether a
// tap is installed.
type spyTapper struct {
	s         *broker.Server
	installed atomic.Bool
}

func (p *spyTapper) SetPacketTap(t broker.PacketTap) {
	p.installed.Store(t != nil)
	p.s.SetPacketTap(t)
}

// env is a real broker on a free loopback port with a Recorder attached.
type env struct {
	addr string
	srv  *broker.Server
	tap  *spyTapper
	rec  *trace.Recorder
	dir  string // the recordings' folder
}

// newEnv starts a broker (allow-all security, data in a temporary folder)
// and a Recorder on <data>/traces with limits, both closed when the test
// ends.
func newEnv(t testing.TB, limits trace.Limits) *env {
	t.Helper()
	data := t.TempDir()
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.DataDir = data
	cfg.Durability.Mode = "none"
	s, err := broker.New(broker.Options{Config: cfg, Extensions: broker.Extensions{Authenticator: brokertest.AllowAll{}}, Logger: testLogger()})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	dir := trace.Dir(data)
	rec, err := trace.Open(dir, limits, testLogger())
	if err != nil {
		t.Fatalf("open recorder: %v", err)
	}
	t.Cleanup(func() { _ = rec.Close() })
	e := &env{addr: s.Addr(cfg.Listeners[0].Name), srv: s, tap: &spyTapper{s: s}, rec: rec, dir: dir}
	rec.Attach(e.tap)
	return e
}

// defaultLimits are the configuration's defaults.
var defaultLimits = trace.LimitsOf(config.Default().Trace)

// start starts a recording or fails the test.
func (e *env) start(t testing.TB, s trace.Spec) trace.Recording {
	t.Helper()
	r, err := e.rec.Start(s)
	if err != nil {
		t.Fatalf("start %+v: %v", s, err)
	}
	return r
}

// stop stops recording id and returns its lines, read from its files.
func (e *env) stop(t testing.TB, id string) []trace.Line {
	t.Helper()
	if _, err := e.rec.Stop(id, "stopped by test"); err != nil {
		t.Fatalf("stop %s: %v", id, err)
	}
	return readLines(t, filepath.Join(e.dir, id))
}

// readLines decodes every line of the packet files in dir, in order.
func readLines(t testing.TB, dir string) []trace.Line {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []trace.Line
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, decodeLines(t, name, b)...)
	}
	return lines
}

// decodeLines decodes one packet file's content; every line must be whole.
func decodeLines(t testing.TB, name string, b []byte) []trace.Line {
	t.Helper()
	var lines []trace.Line
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l trace.Line
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.DisallowUnknownFields()
		if err := d.Decode(&l); err != nil {
			t.Fatalf("%s: line %q: %v", name, sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", name)
	}
	return lines
}

// seq is a line's direction and type, "in CONNECT".
func seq(l trace.Line) string { return l.Direction + " " + l.Type }

// seqs lists seq of the lines of client id (all when id is "*").
func seqs(lines []trace.Line, id string) []string {
	var out []string
	for _, l := range lines {
		if id == "*" || l.ClientID == id {
			out = append(out, seq(l))
		}
	}
	return out
}

// find returns the first line of client id with direction and type (seq),
// or fails the test listing what there is.
func find(t testing.TB, lines []trace.Line, id, s string) trace.Line {
	t.Helper()
	for _, l := range lines {
		if l.ClientID == id && seq(l) == s {
			return l
		}
	}
	t.Fatalf("no %q line of %s among %v", s, id, seqs(lines, id))
	return trace.Line{}
}

// waitPackets polls until recording id counts at least n packets.
func (e *env) waitPackets(t testing.TB, id string, n int64) {
	t.Helper()
	poll.Settle(t, "recording "+id+" counting packets", func() string {
		r, err := e.rec.Get(id)
		if err != nil {
			return err.Error()
		}
		if r.Packets < n {
			return "packets " + itoa(r.Packets) + ", want " + itoa(n)
		}
		return ""
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// v5Connect connects an MQTT 5 client id with a clean start and returns
// it with a channel of the messages it receives.
func v5Connect(t testing.TB, addr, id string, cp *paho.Connect) (*paho.Client, chan *paho.Publish) {
	t.Helper()
	msgs := make(chan *paho.Publish, 1024)
	c := brokertest.DialV5(t, addr, paho.ClientConfig{ClientID: id, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil }}})
	if cp == nil {
		cp = &paho.Connect{}
	}
	cp.ClientID, cp.CleanStart = id, true
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 60
	}
	ca, err := c.Connect(brokertest.OpCtx(t), cp)
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	return c, msgs
}

// v3Connect connects an MQTT 3.1.1 client id.
func v3Connect(t testing.TB, addr, id string) paho3.Client {
	t.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(poll.Timeout).SetWriteTimeout(poll.Timeout).SetKeepAlive(time.Minute)
	c := paho3.NewClient(o)
	brokertest.WaitToken(t, "connect "+id, c.Connect())
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(0)
		}
	})
	return c
}

// publish5 publishes with an MQTT 5 client, failing the test on error.
func publish5(t testing.TB, c *paho.Client, p *paho.Publish) {
	t.Helper()
	if _, err := c.Publish(brokertest.OpCtx(t), p); err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
}

// subscribe5 subscribes with an MQTT 5 client, failing the test on error.
func subscribe5(t testing.TB, c *paho.Client, s *paho.Subscribe) {
	t.Helper()
	if _, err := c.Subscribe(brokertest.OpCtx(t), s); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
}

// readAll reads r or fails.
func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deref is *p, or nil.
func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// tapRemoved polls until the broker has no tap: a recording that stopped
// by itself removes it just after its state changed.
func (e *env) tapRemoved(t testing.TB) {
	t.Helper()
	poll.Until(t, "packet tap removed", func() bool { return !e.tap.installed.Load() })
}
