package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRetryClassifiesErrors(t *testing.T) {
	noLeader := &jetstream.APIError{Code: 503, ErrorCode: jsErrClusterNotAvail, Description: "JetStream system temporarily unavailable"}
	cases := []struct {
		err                error
		refused, transient bool
	}{
		{jetstream.ErrNoStreamResponse, true, true},
		{fmt.Errorf("wrapped: %w", nats.ErrNoResponders), true, true},
		{noLeader, true, true},
		{context.DeadlineExceeded, false, true},
		{nats.ErrTimeout, false, true},
		{jetstream.ErrKeyExists, false, false},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, false, false},
		{errors.New("other"), false, false},
	}
	for _, c := range cases {
		if got := refused(c.err); got != c.refused {
			t.Errorf("refused(%v) = %v, want %v", c.err, got, c.refused)
		}
		if got := transient(c.err); got != c.transient {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.transient)
		}
	}
}

func TestRetryTriesAgainWithinTheBudget(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A try that times out gets its own deadline, not the caller's.
	tries := 0
	err := retry(ctx, func(rctx context.Context) error {
		tries++
		dl, ok := rctx.Deadline()
		if !ok || time.Until(dl) > requestTimeout {
			t.Fatalf("try %d: deadline %v (set %v), want at most %s away", tries, dl, ok, requestTimeout)
		}
		if tries < 3 {
			return jetstream.ErrNoStreamResponse
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("retry: %v after %d tries, want nil after 3", err, tries)
	}
	// A write that timed out may have landed: not tried again.
	tries = 0
	err = writeRetry(ctx, func(context.Context) error { tries++; return context.DeadlineExceeded })
	if !errors.Is(err, context.DeadlineExceeded) || tries != 1 {
		t.Fatalf("writeRetry of a time-out: %v after %d tries, want the time-out after 1", err, tries)
	}
	tries = 0
	err = writeRetry(ctx, func(context.Context) error {
		if tries++; tries < 2 {
			return nats.ErrNoResponders
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Fatalf("writeRetry of a refusal: %v after %d tries, want nil after 2", err, tries)
	}
	// A lasting error ends at the caller's deadline, with op's error.
	short, cancel2 := context.WithTimeout(ctx, 3*retryPause)
	defer cancel2()
	err = retry(short, func(context.Context) error { return jetstream.ErrNoStreamResponse })
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("retry past the deadline: %v, want the last error", err)
	}
	// Other errors are returned at once.
	tries = 0
	err = retry(ctx, func(context.Context) error { tries++; return jetstream.ErrKeyExists })
	if !errors.Is(err, jetstream.ErrKeyExists) || tries != 1 {
		t.Fatalf("retry of a conflict: %v after %d tries, want it after 1", err, tries)
	}
}

// TestConflictClassifiesCAS: the errors nats.go v1.55.0 returns for a
// conditional write that lost, on a single-replica stream (10071) and on
// a replicated one (10164), are conflicts; a time-out is not.
func TestConflictClassifiesCAS(t *testing.T) {
	seq := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}
	constant := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"create, 10071", fmt.Errorf("%w: key exists", seq), true},
		{"update, 10071", fmt.Errorf("%w: %w", seq, jetstream.ErrKeyRevisionMismatch), true},
		{"create, 10164", fmt.Errorf("%w: %w", constant, jetstream.ErrKeyExists), true},
		{"update, 10164", fmt.Errorf("%w: %w", constant, jetstream.ErrKeyRevisionMismatch), true},
		{"time-out", context.DeadlineExceeded, false},
	} {
		if got := conflict(c.err); got != c.want {
			t.Errorf("conflict(%s: %v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
