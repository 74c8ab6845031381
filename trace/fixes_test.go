package trace_test

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/propolis-mqtt/propolis/broker/brokertest"
	"github.com/propolis-mqtt/propolis/internal/poll"
	"github.com/propolis-mqtt/propolis/trace"
)

// An MQTT 5 CONNECT's authentication data is a credential: the files say
// that it was there, never what it was.
func TestAuthDataNotRecorded(t *testing.T) {
	e := newEnv(t, defaultLimits)
	rec := e.start(t, trace.Spec{Packets: []string{"CONNECT"}})
	c := brokertest.DialV5(t, e.addr, paho.ClientConfig{ClientID: "a"})
	_, _ = c.Connect(brokertest.OpCtx(t), &paho.Connect{ClientID: "a", CleanStart: true, KeepAlive: 60,
		Properties: &paho.ConnectProperties{AuthMethod: "TOKEN", AuthData: []byte("s3cret-jwt-token")}})
	e.waitPackets(t, rec.ID, 1)
	lines := e.stop(t, rec.ID)
	b, err := os.ReadFile(filepath.Join(e.dir, rec.ID, "000001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString([]byte("s3cret-jwt-token")))) || bytes.Contains(b, []byte("s3cret")) {
		t.Fatalf("authentication data in the file: %s", b)
	}
	if p := find(t, lines, "a", "in CONNECT").Properties; p["authentication_data_set"] != true || p["authentication_method"] != "TOKEN" {
		t.Fatalf("CONNECT properties %v", p)
	}
}

// A topic filter takes the PUBLISH packets a client sends with a topic
// alias alone, recorded with the topic the alias stands for.
func TestTopicAliasFiltered(t *testing.T) {
	e := newEnv(t, defaultLimits)
	rec := e.start(t, trace.Spec{TopicFilter: "t/#", Packets: []string{"PUBLISH"}})
	sub, msgs := v5Connect(t, e.addr, "sub", nil)
	subscribe5(t, sub, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}})
	pub, _ := v5Connect(t, e.addr, "pub", nil)
	alias := uint16(1)
	for _, topic := range []string{"t/a", ""} {
		publish5(t, pub, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("m"), Properties: &paho.PublishProperties{TopicAlias: &alias}})
		select {
		case <-msgs:
		case <-brokertest.OpCtx(t).Done():
			t.Fatal("message not delivered")
		}
	}
	e.waitPackets(t, rec.ID, 4)
	lines := e.stop(t, rec.ID)
	var in, out int
	for _, l := range lines {
		if l.Topic != "t/a" {
			t.Errorf("%s %s of %s: topic %q", l.Direction, l.Type, l.ClientID, l.Topic)
		}
		if l.Direction == "in" {
			in++
		} else {
			out++
		}
	}
	if in != 2 || out != 2 {
		t.Fatalf("%d inbound and %d outbound PUBLISH lines, want 2 and 2", in, out)
	}
}

// A recording cut by a crash in the middle of a line (its buffer is
// written out when full, not at a line's end) has that part line cut off
// at the next Open: counted bytes are whole lines, and the zip, even
// without strip, holds valid lines only.
func TestCrashPartialLineCut(t *testing.T) {
	e := newEnv(t, defaultLimits)
	rec := e.start(t, trace.Spec{ClientID: "c"})
	c, _ := v5Connect(t, e.addr, "c", nil)
	publishN(t, c, "a", 3, 10)
	e.waitPackets(t, rec.ID, 5)
	want := e.stop(t, rec.ID)
	// As the crash left it: still "recording", the last line half written.
	folder := filepath.Join(e.dir, rec.ID)
	name := filepath.Join(folder, "000001.jsonl")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"time":"2026-11-30T00:00:00Z","client_id":"c","dir`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	meta, err := os.ReadFile(filepath.Join(folder, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	meta = bytes.Replace(meta, []byte(`"state": "stopped"`), []byte(`"state": "recording"`), 1)
	if err := os.WriteFile(filepath.Join(folder, "meta.json"), meta, 0o640); err != nil {
		t.Fatal(err)
	}

	r2, err := trace.Open(e.dir, defaultLimits, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r2.Close() })
	got, err := r2.Get(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' || int64(len(b)) != got.Bytes || got.Packets != int64(len(want)) || got.StopReason != trace.ReasonInterrupted {
		t.Fatalf("after the restart: %d bytes on disk ending %q, recording %+v; want %d whole lines", len(b), b[max(0, len(b)-10):], got, len(want))
	}
	var zb bytes.Buffer
	if err := r2.WriteZip(&zb, nil, nil); err != nil {
		t.Fatal(err)
	}
	files := unzip(t, zb.Bytes())
	if n := len(decodeLines(t, "zip", files[rec.ID+"/000001.jsonl"])); n != len(want) {
		t.Fatalf("zip holds %d lines, want %d", n, len(want))
	}
}

// A slow or hung disk holds up neither the clients nor the recorder's
// other methods: the recording's writer waits alone, the packets it cannot
// take meanwhile are dropped and counted (Recording and meta.json), and
// Stop writes out all it took. The second file is a named pipe nobody
// reads yet: opening it hangs like a dead disk.
func TestHungDisk(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 256 << 20})
	rec := e.start(t, trace.Spec{ClientID: "pub", Packets: []string{"PUBLISH"}})
	fifo := filepath.Join(e.dir, rec.ID, "000002.jsonl")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Skip("no named pipes:", err)
	}
	fromPipe := make(chan []byte, 1)
	unblock := func() {
		go func() {
			f, err := os.Open(fifo)
			if err != nil {
				fromPipe <- nil
				return
			}
			b, _ := io.ReadAll(f) // until the writer closes it
			f.Close()
			fromPipe <- b
		}()
	}
	unblocked := false
	t.Cleanup(func() { // before the recorder's Close
		if !unblocked {
			unblock()
		}
	})

	pub, _ := v5Connect(t, e.addr, "pub", nil)
	const n = 100
	payload := make([]byte, 64<<10) // 100 of them: more than the recording's hand-over limit
	for range n {
		publish5(t, pub, &paho.Publish{Topic: "big", QoS: 1, Payload: payload})
	}
	// Meanwhile the recorder answers.
	answered := make(chan struct{})
	go func() {
		e.rec.List()
		if r, err := e.rec.Start(trace.Spec{ClientID: "other"}); err == nil {
			_, _ = e.rec.Stop(r.ID, "done")
		}
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(poll.Timeout):
		t.Fatal("List, Start and Stop of another recording held up by the hung disk")
	}
	got, err := e.rec.Get(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dropped == 0 || got.Packets+got.Dropped != n {
		t.Fatalf("while hung: %+v; want packets dropped, packets+dropped = %d", got, n)
	}

	unblocked = true
	unblock()
	stopped, err := e.rec.Stop(rec.ID, "stopped by test")
	if err != nil {
		t.Fatal(err)
	}
	pipe := <-fromPipe
	if stopped.Dropped != got.Dropped || stopped.Packets != got.Packets {
		t.Fatalf("stopped %+v, while hung %+v", stopped, got)
	}
	var meta trace.Recording
	b, err := os.ReadFile(filepath.Join(e.dir, rec.ID, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil || meta.Dropped != stopped.Dropped {
		t.Fatalf("meta.json %s: %v; want dropped %d", b, err, stopped.Dropped)
	}
	lines := len(decodeLines(t, "pipe", pipe))
	for i := 1; i <= stopped.Files; i++ {
		if i == 2 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(e.dir, rec.ID, fmtFile(i)))
		if err != nil {
			t.Fatal(err)
		}
		lines += len(decodeLines(t, fmtFile(i), b))
	}
	if int64(lines) != stopped.Packets {
		t.Fatalf("%d lines written, %d packets counted", lines, stopped.Packets)
	}
}

// A Start failing after it made the recording's folder leaves nothing
// behind: here meta.json.tmp's path is one byte longer than the longest a
// path may be (PATH_MAX), the first packet file's just fits.
func TestFailedStartLeavesNothing(t *testing.T) {
	const pathMax = 4095 // bytes, without the final NUL
	dir := t.TempDir()
	// <dir>/<id>/000001.jsonl is len(dir)+1+24+1+12 bytes.
	for want := pathMax - 1 - 24 - 1 - 12; len(dir) < want; {
		seg := min(200, want-len(dir)-1)
		if seg < 1 {
			t.Fatalf("cannot make a folder path %d bytes long from %s", want, dir)
		}
		dir = filepath.Join(dir, strings.Repeat("d", seg))
	}
	r, err := trace.Open(dir, defaultLimits, testLogger())
	if err != nil {
		t.Skip("cannot make a folder that deep:", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	_, err = r.Start(trace.Spec{})
	if err == nil || !strings.Contains(err.Error(), "file name too long") {
		t.Fatalf("start: %v, want meta.json not written: file name too long", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 || len(r.List()) != 0 {
		t.Fatalf("after a failed start: %d entries in the folder (%v), %d recordings listed", len(entries), entries, len(r.List()))
	}
}

// A Delete while the recording is being downloaded waits for the download,
// which is whole: every file, every line.
func TestDeleteDuringDownload(t *testing.T) {
	e := newEnv(t, trace.Limits{MaxFileSize: 4 << 10, MaxTotalSize: 64 << 20})
	rec := e.start(t, trace.Spec{ClientID: "c", Packets: []string{"PUBLISH"}})
	c, _ := v5Connect(t, e.addr, "c", nil)
	noise := make([]byte, 1500) // incompressible: the archive is written out as it goes
	for range 60 {
		_, _ = rand.Read(noise)
		publish5(t, c, &paho.Publish{Topic: "n", QoS: 1, Payload: noise})
	}
	e.waitPackets(t, rec.ID, 60)
	stopped, err := e.rec.Stop(rec.ID, "stopped by test")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	zipped := make(chan error, 1)
	go func() {
		err := e.rec.WriteZip(pw, nil, nil)
		pw.CloseWithError(err)
		zipped <- err
	}()
	var got bytes.Buffer
	if _, err := io.CopyN(&got, pr, 1); err != nil { // the download is under way
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() { deleted <- e.rec.Delete(rec.ID) }()
	if _, err := io.Copy(&got, pr); err != nil {
		t.Fatalf("download: %v", err)
	}
	if err := <-zipped; err != nil {
		t.Fatalf("WriteZip: %v", err)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("Delete: %v", err)
	}
	zr, err := zip.NewReader(bytes.NewReader(got.Bytes()), int64(got.Len()))
	if err != nil {
		t.Fatal(err)
	}
	files := unzip(t, got.Bytes())
	var lines int
	for i := 1; i <= stopped.Files; i++ {
		lines += len(decodeLines(t, fmtFile(i), files[rec.ID+"/"+fmtFile(i)]))
	}
	if len(zr.File) != stopped.Files+1 || int64(lines) != stopped.Packets {
		t.Fatalf("archive: %d entries, %d lines; want %d files and meta.json, %d lines", len(zr.File), lines, stopped.Files, stopped.Packets)
	}
	if _, err := os.Stat(filepath.Join(e.dir, rec.ID)); !os.IsNotExist(err) {
		t.Fatalf("deleted recording's folder: %v", err)
	}
}
