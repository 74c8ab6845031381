package trace_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/trace"
)

// TestRecordsMQTT5 records every packet of an MQTT 5 client, in and out,
// with their decoded fields, user properties and other properties, and
// never its password.
func TestRecordsMQTT5(t *testing.T) {
	e := newEnv(t, defaultLimits)
	if e.tap.installed.Load() {
		t.Fatal("a tap is installed with no recording")
	}
	r := e.start(t, trace.Spec{})
	if !e.tap.installed.Load() {
		t.Fatal("no tap installed while recording")
	}
	const password = "s3cret-Passw0rd"
	c, msgs := v5Connect(t, e.addr, "v5-client", &paho.Connect{Username: "alice", UsernameFlag: true,
		Password: []byte(password), PasswordFlag: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{User: paho.UserProperties{{Key: "conn", Value: "prop"}}}})
	subscribe5(t, c, &paho.Subscribe{Properties: &paho.SubscribeProperties{User: paho.UserProperties{{Key: "sub", Value: "1"}}},
		Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1, NoLocal: false, RetainAsPublished: true}}})
	publish5(t, c, &paho.Publish{Topic: "t/x", QoS: 1, Payload: []byte("hello"),
		Properties: &paho.PublishProperties{ContentType: "text/plain", User: paho.UserProperties{{Key: "k", Value: "v"}}}})
	select {
	case <-msgs:
	case <-time.After(poll.Timeout):
		t.Fatal("no message delivered")
	}
	e.waitLine(t, r.ID, "v5-client", "in PUBACK") // the client acknowledges on its own goroutine
	if _, err := c.Unsubscribe(brokertest.OpCtx(t), &paho.Unsubscribe{Topics: []string{"t/#"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	// The delivery's PUBACK from the client and the DISCONNECT are the
	// last packets: wait until they are counted.
	e.waitDisconnect(t, r.ID, "v5-client")
	lines := e.stop(t, r.ID)
	if e.tap.installed.Load() {
		t.Fatal("the tap is still installed after the last recording stopped")
	}
	want := []string{"in CONNECT", "out CONNACK", "in SUBSCRIBE", "out SUBACK", "in PUBLISH", "out PUBACK",
		"out PUBLISH", "in PUBACK", "in UNSUBSCRIBE", "out UNSUBACK", "in DISCONNECT"}
	got := seqs(lines, "v5-client")
	// The PUBACK to the publisher and the delivery race (mochi sends the
	// PUBACK first, then fans out); compare as sets of ordered pairs.
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("no %q among %v", w, got)
		}
	}
	if got[0] != "in CONNECT" || got[1] != "out CONNACK" || got[len(got)-1] != "in DISCONNECT" {
		t.Errorf("packets %v, want CONNECT, CONNACK first and DISCONNECT last", got)
	}

	conn := find(t, lines, "v5-client", "in CONNECT")
	if conn.Username != "alice" || !conn.PasswordSet || conn.ProtocolVersion != 5 || conn.KeepAlive == nil || *conn.KeepAlive != 30 ||
		conn.CleanStart == nil || !*conn.CleanStart || !slices.Equal(conn.UserProperties, []trace.UserProperty{{Key: "conn", Value: "prop"}}) {
		t.Errorf("CONNECT line %+v", conn)
	}
	if ack := find(t, lines, "v5-client", "out CONNACK"); ack.ReasonCode == nil || *ack.ReasonCode != 0 || ack.SessionPresent {
		t.Errorf("CONNACK line %+v", ack)
	}
	sub := find(t, lines, "v5-client", "in SUBSCRIBE")
	if sub.PacketID == 0 || !slices.Equal(sub.Filters, []trace.Filter{{Filter: "t/#", QoS: 1, RetainAsPublished: true}}) ||
		!slices.Equal(sub.UserProperties, []trace.UserProperty{{Key: "sub", Value: "1"}}) {
		t.Errorf("SUBSCRIBE line %+v", sub)
	}
	if sa := find(t, lines, "v5-client", "out SUBACK"); sa.PacketID != sub.PacketID || !slices.Equal(sa.ReasonCodes, []int{1}) {
		t.Errorf("SUBACK line %+v, want packet id %d and reason codes [1]", sa, sub.PacketID)
	}
	pub := find(t, lines, "v5-client", "in PUBLISH")
	if pub.Topic != "t/x" || pub.QoS == nil || *pub.QoS != 1 || pub.PacketID == 0 || string(pub.Payload) != "hello" ||
		pub.PayloadText == nil || *pub.PayloadText != "hello" || pub.PayloadSize == nil || *pub.PayloadSize != 5 ||
		pub.Properties["content_type"] != "text/plain" || !slices.Equal(pub.UserProperties, []trace.UserProperty{{Key: "k", Value: "v"}}) {
		t.Errorf("inbound PUBLISH line %+v", pub)
	}
	if pa := find(t, lines, "v5-client", "out PUBACK"); pa.PacketID != pub.PacketID || pa.ReasonCode == nil || *pa.ReasonCode != 0 {
		t.Errorf("PUBACK line %+v (reason code %v), want packet id %d and reason code 0", pa, deref(pa.ReasonCode), pub.PacketID)
	}
	out := find(t, lines, "v5-client", "out PUBLISH")
	if out.Topic != "t/x" || string(out.Payload) != "hello" || !slices.Equal(out.UserProperties, pub.UserProperties) {
		t.Errorf("outbound PUBLISH line %+v", out)
	}
	if in := find(t, lines, "v5-client", "in PUBACK"); in.PacketID != out.PacketID {
		t.Errorf("inbound PUBACK line %+v, want packet id %d", in, out.PacketID)
	}
	if un := find(t, lines, "v5-client", "in UNSUBSCRIBE"); !slices.Equal(un.Filters, []trace.Filter{{Filter: "t/#"}}) {
		t.Errorf("UNSUBSCRIBE line %+v", un)
	}
	if d := find(t, lines, "v5-client", "in DISCONNECT"); d.ReasonCode == nil || *d.ReasonCode != 0 {
		t.Errorf("DISCONNECT line %+v", d)
	}
	for _, l := range lines {
		if l.Time.IsZero() || l.Time.Before(r.StartedAt) {
			t.Errorf("line %s at %v, recording started %v", seq(l), l.Time, r.StartedAt)
		}
	}

	raw := readAll(t, mustOpen(t, filepath.Join(e.dir, r.ID, "000001.jsonl")))
	if bytes.Contains(raw, []byte(password)) || bytes.Contains(raw, []byte(`"password"`)) {
		t.Fatalf("the recording holds the password:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte(`"password_set":true`)) {
		t.Fatalf("the recording does not say a password was set:\n%s", raw)
	}
}

// snapshotLines returns the lines of a running recording so far, read
// through WriteZip (which writes out its buffer first).
func (e *env) snapshotLines(t testing.TB, id string) []trace.Line {
	t.Helper()
	var buf bytes.Buffer
	if err := e.rec.WriteZip(&buf, []string{id}, nil); err != nil {
		t.Fatal(err)
	}
	var lines []trace.Line
	for name, b := range unzip(t, buf.Bytes()) {
		if strings.HasSuffix(name, ".jsonl") {
			lines = append(lines, decodeLines(t, name, b)...)
		}
	}
	return lines
}

func mustOpen(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestRecordsMQTT311 records an MQTT 3.1.1 client's packets: version 4,
// QoS 0 and 1 publishes, no properties.
func TestRecordsMQTT311(t *testing.T) {
	e := newEnv(t, defaultLimits)
	r := e.start(t, trace.Spec{ClientID: "v3-*"})
	c := v3Connect(t, e.addr, "v3-client")
	got := make(chan string, 10)
	brokertest.WaitToken(t, "subscribe", c.Subscribe("old/+", 1, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) }))
	brokertest.WaitToken(t, "publish", c.Publish("old/a", 1, false, "q1"))
	brokertest.WaitToken(t, "publish", c.Publish("old/b", 0, true, "q0"))
	for range 2 {
		select {
		case <-got:
		case <-time.After(poll.Timeout):
			t.Fatal("no message delivered")
		}
	}
	e.waitLine(t, r.ID, "v3-client", "in PUBACK") // the client acknowledges on its own goroutine
	brokertest.WaitToken(t, "unsubscribe", c.Unsubscribe("old/+"))
	c.Disconnect(250)
	e.waitDisconnect(t, r.ID, "v3-client")
	lines := e.stop(t, r.ID)
	for _, w := range []string{"in CONNECT", "out CONNACK", "in SUBSCRIBE", "out SUBACK", "in PUBLISH", "out PUBACK",
		"out PUBLISH", "in PUBACK", "in UNSUBSCRIBE", "out UNSUBACK", "in DISCONNECT"} {
		find(t, lines, "v3-client", w)
	}
	if conn := find(t, lines, "v3-client", "in CONNECT"); conn.ProtocolVersion != 4 || conn.PasswordSet || conn.Username != "" {
		t.Errorf("CONNECT line %+v", conn)
	}
	var q0 bool
	for _, l := range lines {
		if l.Properties != nil || l.UserProperties != nil || l.ReasonString != "" {
			t.Errorf("3.1.1 line with MQTT 5 properties: %+v", l)
		}
		if seq(l) == "in PUBLISH" && l.Topic == "old/b" {
			q0 = true
			if *l.QoS != 0 || !l.Retain || l.PacketID != 0 || *l.PayloadText != "q0" {
				t.Errorf("QoS 0 PUBLISH line %+v", l)
			}
		}
	}
	if !q0 {
		t.Errorf("no QoS 0 PUBLISH among %v", seqs(lines, "*"))
	}
}

// waitDisconnect polls until recording id holds client's DISCONNECT.
func (e *env) waitDisconnect(t testing.TB, id, client string) {
	t.Helper()
	e.waitLine(t, id, client, "in DISCONNECT")
}

// waitLine polls until recording id holds a line of client with
// direction and type s ("in PUBACK").
func (e *env) waitLine(t testing.TB, id, client, s string) {
	t.Helper()
	poll.Until(t, client+"'s "+s+" recorded", func() bool {
		for _, l := range e.snapshotLines(t, id) {
			if l.ClientID == client && seq(l) == s {
				return true
			}
		}
		return false
	})
}

// TestFilters: each filter of a Spec alone, on the same traffic.
func TestFilters(t *testing.T) {
	e := newEnv(t, defaultLimits)
	byClient := e.start(t, trace.Spec{ClientID: "keep-?"})
	byTopic := e.start(t, trace.Spec{TopicFilter: "a/#"})
	byType := e.start(t, trace.Spec{Packets: []string{"publish", "SUBACK"}})

	keep, _ := v5Connect(t, e.addr, "keep-1", nil)
	drop, _ := v5Connect(t, e.addr, "drop-1", nil)
	subscribe5(t, keep, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "+/y"}}})
	subscribe5(t, drop, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "b/x"}}})
	for _, c := range []*paho.Client{keep, drop} {
		publish5(t, c, &paho.Publish{Topic: "a/1", QoS: 1, Payload: []byte("a")})
		publish5(t, c, &paho.Publish{Topic: "b/1", QoS: 1, Payload: []byte("b")})
	}
	for _, c := range []*paho.Client{keep, drop} {
		if err := c.Disconnect(&paho.Disconnect{}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitDisconnect(t, byClient.ID, "keep-1")
	e.waitDisconnect(t, byTopic.ID, "drop-1")
	e.waitPackets(t, byType.ID, 6) // 4 PUBLISH, 2 SUBACK

	lines := e.stop(t, byClient.ID)
	if got := seqs(lines, "*"); len(got) == 0 || len(seqs(lines, "keep-1")) != len(got) {
		t.Errorf("client pattern keep-?: lines %v, want keep-1's only (%v)", got, seqs(lines, "keep-1"))
	}

	lines = e.stop(t, byTopic.ID)
	var subs, pubs []string
	for _, l := range lines {
		switch l.Type {
		case "PUBLISH":
			pubs = append(pubs, l.ClientID+" "+l.Topic)
		case "SUBSCRIBE":
			subs = append(subs, l.ClientID+" "+l.Filters[0].Filter)
		}
	}
	slices.Sort(pubs)
	if !slices.Equal(pubs, []string{"drop-1 a/1", "keep-1 a/1"}) {
		t.Errorf("topic filter a/#: PUBLISH lines %v, want a/1 of each client", pubs)
	}
	if !slices.Equal(subs, []string{"keep-1 +/y"}) {
		t.Errorf("topic filter a/#: SUBSCRIBE lines %v, want keep-1's +/y (intersects), not b/x", subs)
	}
	for _, id := range []string{"keep-1", "drop-1"} {
		find(t, lines, id, "in CONNECT") // packets without a topic are not narrowed
	}

	lines = e.stop(t, byType.ID)
	types := map[string]int{}
	for _, l := range lines {
		types[seq(l)]++
	}
	if types["in PUBLISH"] != 4 || types["out SUBACK"] != 2 || len(types) != 2 {
		t.Errorf("packets PUBLISH, SUBACK: got %v, want 4 inbound PUBLISH and 2 SUBACK", types)
	}
	if r, _ := e.rec.Get(byType.ID); !slices.Equal(r.Spec.Packets, []string{"PUBLISH", "SUBACK"}) {
		t.Errorf("spec packets %v, want the names normalized", r.Spec.Packets)
	}
}

// publishN publishes n QoS 1 messages of size bytes to topic.
func publishN(t testing.TB, c *paho.Client, topic string, n, size int) {
	t.Helper()
	payload := bytes.Repeat([]byte("x"), size)
	for range n {
		publish5(t, c, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	}
}

// TestRotation: a recording's files are rotated at MaxFileSize, each
// holding whole lines, together every packet counted.
func TestRotation(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 1 << 20})
	r := e.start(t, trace.Spec{ClientID: "rot", Packets: []string{"PUBLISH"}})
	c, _ := v5Connect(t, e.addr, "rot", nil)
	publishN(t, c, "rot/t", 60, 200)
	e.waitPackets(t, r.ID, 60)
	if _, err := e.rec.Stop(r.ID, ""); err != nil {
		t.Fatal(err)
	}
	r, _ = e.rec.Get(r.ID)
	files, _ := filepath.Glob(filepath.Join(e.dir, r.ID, "*.jsonl"))
	if len(files) < 3 || r.Files != len(files) {
		t.Fatalf("files %v, recording says %d; want at least 3 for 60 lines of over 200 bytes in 4KiB files", files, r.Files)
	}
	var total int64
	var n int
	for i, name := range files {
		if filepath.Base(name) != fmt.Sprintf("%06d.jsonl", i+1) {
			t.Errorf("file %d is %s", i, name)
		}
		b := readAll(t, mustOpen(t, name))
		if len(b) > 4<<10 {
			t.Errorf("%s holds %d bytes, over max_file_size 4KiB", name, len(b))
		}
		total += int64(len(b))
		n += len(decodeLines(t, name, b))
	}
	if n != 60 || r.Packets != 60 || total != r.Bytes || e.rec.TotalSize() != total || r.StopReason != "stopped" {
		t.Fatalf("%d lines and %d bytes on disk; recording %+v, total %d", n, total, r, e.rec.TotalSize())
	}
}

// publishUntilStopped publishes with c to topic, five messages of 300
// bytes at a time, until recording id has stopped (on its own: a write
// failed or a limit was reached).
func (e *env) publishUntilStopped(t testing.TB, c *paho.Client, topic, id string) {
	t.Helper()
	for {
		publishN(t, c, topic, 5, 300)
		if got, _ := e.rec.Get(id); got.State == trace.StateStopped {
			return
		}
	}
}

// stoppedWith polls until recording id stops and checks its reason.
func (e *env) stoppedWith(t testing.TB, id, reason string) trace.Recording {
	t.Helper()
	var r trace.Recording
	poll.Until(t, "recording "+id+" stopped", func() bool {
		r, _ = e.rec.Get(id)
		return r.State == trace.StateStopped
	})
	if !strings.HasPrefix(r.StopReason, reason) {
		t.Fatalf("stop reason %q, want %q", r.StopReason, reason)
	}
	return r
}

// writtenOut polls until the writer of stopped recording id has written
// out what it took. A recording the recorder stopped itself (a limit)
// says stopped at once, while its writer still writes; the writer writes
// meta.json last, so a test reading the packet files waits for it.
func (e *env) writtenOut(t testing.TB, id string) {
	t.Helper()
	poll.Until(t, "recording "+id+"'s meta.json says stopped", func() bool {
		b, err := os.ReadFile(filepath.Join(e.dir, id, "meta.json"))
		return err == nil && bytes.Contains(b, []byte(`"state": "`+trace.StateStopped+`"`))
	})
}

// TestSizeLimit: a recording stops when its next packet would pass its
// MaxSize; what it holds stays within it.
func TestSizeLimit(t *testing.T) {
	e := newEnv(t, defaultLimits)
	r := e.start(t, trace.Spec{ClientID: "big", MaxSize: 4 << 10})
	c, _ := v5Connect(t, e.addr, "big", nil)
	publishN(t, c, "big/t", 40, 200)
	r = e.stoppedWith(t, r.ID, trace.ReasonSizeLimit)
	e.writtenOut(t, r.ID)
	lines := readLines(t, filepath.Join(e.dir, r.ID))
	if r.Bytes > 4<<10 || r.Bytes < 3<<10 || int64(len(lines)) != r.Packets || r.StoppedAt.IsZero() {
		t.Fatalf("recording %+v with %d lines", r, len(lines))
	}
	e.tapRemoved(t)
	publishN(t, c, "big/t", 2, 10) // the broker goes on
}

// TestTotalCap: recordings stop when all recordings together would pass
// MaxTotalSize, no recording starts while it is reached, and deleting one
// makes room.
func TestTotalCap(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 16 << 10, MaxTotalSize: 64 << 10})
	r1 := e.start(t, trace.Spec{ClientID: "cap", MaxSize: 48 << 10})
	r2 := e.start(t, trace.Spec{ClientID: "cap", MaxSize: 48 << 10})
	c, _ := v5Connect(t, e.addr, "cap", nil)
	var stopped bool
	for !stopped {
		publishN(t, c, "cap/t", 10, 500)
		a, _ := e.rec.Get(r1.ID)
		b, _ := e.rec.Get(r2.ID)
		stopped = a.State == trace.StateStopped && b.State == trace.StateStopped
		if a.Bytes+b.Bytes > 64<<10 {
			t.Fatalf("recordings hold %d bytes together, over 64KiB", a.Bytes+b.Bytes)
		}
	}
	for _, id := range []string{r1.ID, r2.ID} {
		r := e.stoppedWith(t, id, trace.ReasonTotalCap)
		if r.Bytes >= 48<<10 {
			t.Errorf("%s holds %d bytes: stopped by its own limit", id, r.Bytes)
		}
	}
	if err := e.rec.Delete(r1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, r1.ID)); !os.IsNotExist(err) {
		t.Fatalf("deleted recording's folder: %v", err)
	}
	if _, err := e.rec.Start(trace.Spec{ClientID: "after"}); err != nil {
		t.Fatalf("start after delete: %v", err)
	}
}

// TestStartRefusedAtCap: Start fails with ErrTotalCap while the
// recordings on disk leave less than MinMaxSize of MaxTotalSize, here
// recordings of a broker restarted with a lower cap.
func TestStartRefusedAtCap(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 1 << 20})
	r := e.start(t, trace.Spec{ClientID: "fill", Packets: []string{"PUBLISH"}})
	c, _ := v5Connect(t, e.addr, "fill", nil)
	publishN(t, c, "fill/t", 10, 200)
	e.waitPackets(t, r.ID, 10)
	e.stop(t, r.ID)
	if err := e.rec.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := trace.Open(e.dir, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 3 << 10}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	_, err = rec.Start(trace.Spec{MaxSize: 1 << 10})
	want := "start trace recording: trace recordings reach trace.max_total_size (" // then the sizes
	if !errors.Is(err, trace.ErrTotalCap) || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "of 3KiB on disk): delete recordings first") {
		t.Fatalf("start over the cap: %v", err)
	}
	if err := rec.Delete(r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Start(trace.Spec{MaxSize: 1 << 10}); err != nil {
		t.Fatalf("start after delete: %v", err)
	}
}

// TestDurationStop: a recording stops by itself after its Duration.
func TestDurationStop(t *testing.T) {
	e := newEnv(t, defaultLimits)
	r := e.start(t, trace.Spec{Duration: time.Second})
	got := e.stoppedWith(t, r.ID, trace.ReasonDuration)
	if got.StoppedAt.Sub(got.StartedAt) < time.Second {
		t.Fatalf("stopped %v after it started, before its duration", got.StoppedAt.Sub(got.StartedAt))
	}
	e.tapRemoved(t)
	if _, err := e.rec.Stop(r.ID, "again"); !errors.Is(err, trace.ErrNotRecording) {
		t.Fatalf("stop of a stopped recording: %v", err)
	}
}

// TestBadSpecs: Start refuses each bad field, naming it.
func TestBadSpecs(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 1 << 20})
	for _, tc := range []struct {
		name string
		spec trace.Spec
		want string
	}{
		{"client pattern", trace.Spec{ClientID: "a[b"}, `client_id: "a[b" is not a valid pattern (path.Match syntax: *, ?, [a-z], \)`},
		{"topic filter", trace.Spec{TopicFilter: "a/#/b"}, `topic_filter: "a/#/b" is not a valid topic filter`},
		{"shared filter", trace.Spec{TopicFilter: "$share/g/a"}, `topic_filter: "$share/g/a" is a shared subscription; give the topic filter without $share/<group>/`},
		{"packet type", trace.Spec{Packets: []string{"PUBLISH", "PUBLISHED"}}, `packets[1]: unknown packet type "PUBLISHED" (allowed: CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH)`},
		{"short duration", trace.Spec{Duration: 500 * time.Millisecond}, `duration_seconds: 500ms out of range 1s-24h0m0s`},
		{"long duration", trace.Spec{Duration: 25 * time.Hour}, `duration_seconds: 25h0m0s out of range 1s-24h0m0s`},
		{"negative duration", trace.Spec{Duration: -time.Second}, `duration_seconds: -1s out of range 1s-24h0m0s`},
		{"small size", trace.Spec{MaxSize: 10}, `max_bytes: 10 out of range 1024-1048576 (trace.max_total_size 1MiB)`},
		{"size over cap", trace.Spec{MaxSize: 2 << 20}, `max_bytes: 2097152 out of range 1024-1048576 (trace.max_total_size 1MiB)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.rec.Start(tc.spec)
			var se *trace.SpecError
			if err == nil || err.Error() != tc.want || !errors.Is(err, trace.ErrInvalidSpec) || !errors.As(err, &se) {
				t.Fatalf("Start(%+v) = %v\nwant %s", tc.spec, err, tc.want)
			}
		})
	}
	if got := e.rec.List(); len(got) != 0 {
		t.Fatalf("refused specs left recordings: %+v", got)
	}
	r := e.start(t, trace.Spec{})
	if r.Spec.Duration != trace.DefaultDuration || r.Spec.MaxSize != 1<<20 {
		t.Fatalf("defaults: %+v, want 10m and the total cap (below 64MiB)", r.Spec)
	}
	for _, call := range []func() error{
		func() error { _, err := e.rec.Stop("nope", ""); return err },
		func() error { return e.rec.Delete("../x") },
		func() error { return e.rec.WriteZip(&bytes.Buffer{}, []string{r.ID, "nope"}, nil) },
	} {
		if err := call(); !errors.Is(err, trace.ErrNotFound) {
			t.Errorf("unknown id: %v, want ErrNotFound", err)
		}
	}
}
