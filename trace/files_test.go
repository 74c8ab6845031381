package trace_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/trace"
)

// unzip opens a zip archive with archive/zip and returns its files by name.
func unzip(t testing.TB, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("open zip: %v", err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("open %s: %v", f.Name, err)
		}
		files[f.Name] = readAll(t, rc)
		rc.Close()
	}
	return files
}

// TestZip: WriteZip archives every recording (or those named), newest
// first, meta.json and packet files; the strip callback rewrites every
// line, and StripUserProperties removes user properties and nothing else.
func TestZip(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 1 << 20})
	older := e.start(t, trace.Spec{ClientID: "z", Packets: []string{"CONNECT"}})
	newer := e.start(t, trace.Spec{ClientID: "z", Packets: []string{"PUBLISH"}})
	c, _ := v5Connect(t, e.addr, "z", &paho.Connect{Properties: &paho.ConnectProperties{User: paho.UserProperties{{Key: "who", Value: "z"}}}})
	for i := range 30 {
		publish5(t, c, &paho.Publish{Topic: "z/t", QoS: 1, Payload: bytes.Repeat([]byte{0xff, byte(i)}, 100),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "secret", Value: "s"}}, CorrelationData: []byte{1, 2}}})
	}
	e.waitPackets(t, newer.ID, 30)
	e.waitPackets(t, older.ID, 1)
	// The newer recording still runs: the zip holds what it counted.
	var buf bytes.Buffer
	if err := e.rec.WriteZip(&buf, nil, nil); err != nil {
		t.Fatal(err)
	}
	files := unzip(t, buf.Bytes())
	var names []string
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	nr, _ := e.rec.Get(newer.ID)
	want := []string{older.ID + "/000001.jsonl", older.ID + "/meta.json"}
	for i := 1; i <= nr.Files; i++ {
		want = append(want, newer.ID+"/"+filepath.Base(filepath.Join(e.dir, newer.ID, fmtFile(i))))
	}
	want = append(want, newer.ID+"/meta.json")
	slices.Sort(want)
	if nr.Files < 2 || !slices.Equal(names, want) {
		t.Fatalf("zip holds %v, want %v", names, want)
	}
	var meta trace.Recording
	if err := json.Unmarshal(files[newer.ID+"/meta.json"], &meta); err != nil || meta.ID != newer.ID || meta.State != trace.StateRecording ||
		!slices.Equal(meta.Spec.Packets, []string{"PUBLISH"}) {
		t.Fatalf("meta.json %s: %v", files[newer.ID+"/meta.json"], err)
	}
	var pubs []trace.Line
	for i := 1; i <= nr.Files; i++ {
		pubs = append(pubs, decodeLines(t, fmtFile(i), files[newer.ID+"/"+fmtFile(i)])...)
	}
	if int64(len(pubs)) < 30 || pubs[0].Payload == nil || pubs[0].PayloadText != nil ||
		!slices.Equal(pubs[0].UserProperties, []trace.UserProperty{{Key: "secret", Value: "s"}}) {
		t.Fatalf("%d PUBLISH lines, first %+v; want 30 with binary payloads (no payload_text) and user properties", len(pubs), pubs[0])
	}

	// One recording, through StripUserProperties.
	buf.Reset()
	if err := e.rec.WriteZip(&buf, []string{newer.ID}, trace.StripUserProperties); err != nil {
		t.Fatal(err)
	}
	stripped := unzip(t, buf.Bytes())
	if _, ok := stripped[older.ID+"/meta.json"]; ok || len(stripped) < nr.Files+1 {
		t.Fatalf("zip of one recording holds %d files, the other recording's too?", len(stripped))
	}
	for name, b := range stripped {
		if bytes.Contains(b, []byte("user_properties")) || bytes.Contains(b, []byte("secret")) {
			t.Fatalf("%s holds user properties after StripUserProperties:\n%s", name, b)
		}
	}
	got := decodeLines(t, "stripped", stripped[newer.ID+"/000001.jsonl"])
	orig := decodeLines(t, "original", files[newer.ID+"/000001.jsonl"])
	for i := range orig {
		orig[i].UserProperties = nil
		o, _ := json.Marshal(orig[i])
		g, _ := json.Marshal(got[i])
		if !bytes.Equal(o, g) {
			t.Fatalf("line %d changed beyond its user properties:\n%s\n%s", i, o, g)
		}
	}

	// A strip callback sees each line without its newline; nil drops it.
	buf.Reset()
	var seen int
	err := e.rec.WriteZip(&buf, []string{older.ID}, func(line []byte) []byte {
		seen++
		if bytes.HasSuffix(line, []byte("\n")) {
			t.Errorf("line given with its newline: %q", line)
		}
		return nil
	})
	if err != nil || seen != 1 {
		t.Fatalf("strip saw %d lines (%v), want the one CONNECT", seen, err)
	}
	if b := unzip(t, buf.Bytes())[older.ID+"/000001.jsonl"]; len(b) != 0 {
		t.Fatalf("dropped lines written: %q", b)
	}
}

// fmtFile is the name of packet file n.
func fmtFile(n int) string {
	return strings.Repeat("0", 6-len(itoa(int64(n)))) + itoa(int64(n)) + ".jsonl"
}

// TestStripUserPropertiesLine: user properties go, every other field
// stays as written, and a line that is not a Line is dropped.
func TestStripUserPropertiesLine(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"none", `{"time":"2026-11-30T00:00:00Z","client_id":"c","direction":"in","type":"PINGREQ"}`,
			`{"time":"2026-11-30T00:00:00Z","client_id":"c","direction":"in","type":"PINGREQ"}`},
		{"publish",
			`{"time":"2026-11-30T00:00:00.123456789Z","client_id":"c","direction":"out","type":"PUBLISH","topic":"t","qos":0,"payload_size":2,"payload":"aGk=","payload_text":"\"user_properties\":[]","properties":{"message_expiry_interval":4294967295},"user_properties":[{"key":"a]","value":"b\""}]}`,
			`{"time":"2026-11-30T00:00:00.123456789Z","client_id":"c","direction":"out","type":"PUBLISH","topic":"t","qos":0,"payload_size":2,"payload":"aGk=","payload_text":"\"user_properties\":[]","properties":{"message_expiry_interval":4294967295}}`},
		{"broken", `{"client_id":"c","user_properties":[{"key":"a","value":"b"}`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(trace.StripUserProperties([]byte(tc.in))); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestRestartListsRecordings: a new Recorder on the folder lists the
// recordings of the last one, stopped as they were, counts read from the
// files; one left "recording" (a crash) is "interrupted", its packets
// counted from its files; anything else in the folder is left alone.
func TestRestartListsRecordings(t *testing.T) {
	e := newEnv(t, defaultLimits)
	done := e.start(t, trace.Spec{ClientID: "r", Packets: []string{"PUBLISH"}})
	crashed := e.start(t, trace.Spec{ClientID: "r", Packets: []string{"PUBLISH", "PUBACK"}})
	c, _ := v5Connect(t, e.addr, "r", nil)
	publishN(t, c, "r/t", 5, 10)
	e.waitPackets(t, crashed.ID, 10)
	e.stop(t, done.ID)
	if err := e.rec.Close(); err != nil {
		t.Fatal(err)
	}
	before := e.rec.List()
	if before[0].ID != crashed.ID || before[0].StopReason != trace.ReasonBrokerStopped || before[1].StopReason != "stopped by test" {
		t.Fatalf("at close: %+v", before)
	}
	// A crash leaves meta.json as written at start.
	metaPath := filepath.Join(e.dir, crashed.ID, "meta.json")
	var m map[string]any
	b, _ := os.ReadFile(metaPath)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["state"], m["packets"], m["bytes"], m["files"] = "recording", 0, 0, 0
	delete(m, "stop_reason")
	delete(m, "stopped_at")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(metaPath, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "not-a-recording"), 0o750); err != nil {
		t.Fatal(err)
	}

	rec, err := trace.Open(e.dir, defaultLimits, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	after := rec.List()
	if len(after) != 2 {
		t.Fatalf("listed %+v", after)
	}
	want := before
	want[0].StopReason = trace.ReasonInterrupted
	for i := range after {
		a, w := after[i], want[i]
		if a.ID != w.ID || a.State != trace.StateStopped || a.StopReason != w.StopReason || a.Packets != w.Packets ||
			a.Bytes != w.Bytes || a.Files != w.Files || !a.StartedAt.Equal(w.StartedAt) || a.StoppedAt.IsZero() ||
			!slices.Equal(a.Spec.Packets, w.Spec.Packets) {
			t.Errorf("after restart %+v\nbefore          %+v", a, w)
		}
	}
	if rec.TotalSize() != after[0].Bytes+after[1].Bytes {
		t.Errorf("total %d, recordings hold %d", rec.TotalSize(), after[0].Bytes+after[1].Bytes)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "not-a-recording")); err != nil {
		t.Errorf("the stray folder: %v", err)
	}
	if _, err := rec.Stop(done.ID, ""); err == nil {
		t.Error("stopped a recording restored stopped")
	}
}

// TestDiskFull: a recording whose file cannot be written (a full disk,
// /dev/full) stops with the write error as its reason; the broker goes on.
func TestDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full:", err)
	}
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 1 << 20})
	r := e.start(t, trace.Spec{ClientID: "full"})
	// The second file is the full device.
	if err := os.Symlink("/dev/full", filepath.Join(e.dir, r.ID, "000002.jsonl")); err != nil {
		t.Fatal(err)
	}
	c, msgs := v5Connect(t, e.addr, "full", nil)
	subscribe5(t, c, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "full/t", QoS: 1}}})
	e.publishUntilStopped(t, c, "full/t", r.ID)
	got := e.stoppedWith(t, r.ID, "write failed: ")
	if !strings.Contains(got.StopReason, "no space left on device") {
		t.Fatalf("stop reason %q", got.StopReason)
	}
	e.tapRemoved(t)
	for len(msgs) > 0 {
		<-msgs
	}
	publish5(t, c, &paho.Publish{Topic: "full/t", QoS: 1, Payload: []byte("still")})
	for m := range msgs {
		if string(m.Payload) == "still" {
			break
		}
	}
}

// TestUnwritableFolder: a recording whose folder went away (replaced by a
// file) stops at its next file with the error; Start in a folder that
// cannot hold recordings fails with the error, and the broker goes on.
func TestUnwritableFolder(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 1 << 20})
	r := e.start(t, trace.Spec{ClientID: "gone"})
	dir := filepath.Join(e.dir, r.ID)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("in the way"), 0o640); err != nil {
		t.Fatal(err)
	}
	c, _ := v5Connect(t, e.addr, "gone", nil)
	e.publishUntilStopped(t, c, "gone/t", r.ID)
	got := e.stoppedWith(t, r.ID, "write failed: open ")
	if !strings.HasSuffix(got.StopReason, "not a directory") {
		t.Fatalf("stop reason %q", got.StopReason)
	}

	if err := os.RemoveAll(e.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.dir, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := e.rec.Start(trace.Spec{})
	if err == nil || !strings.HasPrefix(err.Error(), "start trace recording: mkdir ") || !strings.HasSuffix(err.Error(), "not a directory") {
		t.Fatalf("start in a file: %v", err)
	}
	publishN(t, c, "gone/t", 1, 1)
}

// TestJSON: a Spec reads and writes the admin API's keys, a Recording
// lists its own.
func TestJSON(t *testing.T) {
	var s trace.Spec
	in := `{"client_id":"c-*","topic_filter":"a/#","packets":["PUBLISH"],"duration_seconds":90,"max_bytes":2048}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.ClientID != "c-*" || s.TopicFilter != "a/#" || !slices.Equal(s.Packets, []string{"PUBLISH"}) || s.Duration.Seconds() != 90 || s.MaxSize != 2048 {
		t.Fatalf("decoded %+v", s)
	}
	out, _ := json.Marshal(s)
	if string(out) != in {
		t.Fatalf("encoded %s, want %s", out, in)
	}
	e := newEnv(t, defaultLimits)
	r := e.start(t, trace.Spec{})
	b, _ := json.Marshal(r)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"bytes", "dropped", "files", "id", "packets", "spec", "started_at", "state"}; !slices.Equal(keys, want) {
		t.Fatalf("running recording's keys %v, want %v", keys, want)
	}
	r, _ = e.rec.Stop(r.ID, "stopped by alice")
	b, _ = json.Marshal(r)
	if !bytes.Contains(b, []byte(`"stop_reason":"stopped by alice"`)) || !bytes.Contains(b, []byte(`"stopped_at":"`)) {
		t.Fatalf("stopped recording %s", b)
	}
}

// A Spec's JSON with a key it does not know, or a duration_seconds out of
// range, is refused naming the key, as a *trace.SpecError, also through a
// decoder refusing unknown fields (as the admin API's).
func TestSpecJSONRefused(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"typos", `{"topic":"a/#","duration":60,"client_id":"c"}`,
			`"duration", "topic": unknown key (the keys are client_id, topic_filter, packets, duration_seconds, max_bytes)`},
		{"duration too short", `{"duration_seconds":1e-10}`, "duration_seconds: 1e-10 out of range 1-86400"},
		{"duration too long", `{"duration_seconds":1e12}`, "duration_seconds: 1e+12 out of range 1-86400"},
		{"negative duration", `{"duration_seconds":-5}`, "duration_seconds: -5 out of range 1-86400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := json.NewDecoder(strings.NewReader(tc.body))
			d.DisallowUnknownFields()
			var s trace.Spec
			err := d.Decode(&s)
			if err == nil || err.Error() != tc.want || !errors.Is(err, trace.ErrInvalidSpec) {
				t.Fatalf("decode %s: %v, want %s (ErrInvalidSpec)", tc.body, err, tc.want)
			}
		})
	}
}
