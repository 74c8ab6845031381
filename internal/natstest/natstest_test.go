package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestStartServesJetStream checks that Start's server takes a JetStream
// publish and Connect's connection reads it back from the stream.
func TestStartServesJetStream(t *testing.T) {
	s := Start(t, "n1")
	nc := Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("hello")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "t.a")
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if string(m.Data) != "hello" {
		t.Fatalf("stored %q, want hello", m.Data)
	}
}
