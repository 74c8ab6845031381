package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams and buckets are made to exist by every node that starts, since
// any node may be the first. Nodes starting together then create one
// replicated stream at the same moment; with three nodes doing so, every
// creator's request went unanswered for the whole 30 s we waited (tested:
// creating the same streams one node after the other takes milliseconds).
// So each attempt has a short deadline of its own, attempts are spaced by
// a random pause, and each attempt looks the stream up first, so that a
// creation another node's attempt made counts.

const (
	// ensureAttempt bounds one attempt.
	ensureAttempt = 3 * time.Second
	// ensurePauseMin and ensurePauseMax bound the random pause between
	// attempts.
	ensurePauseMin, ensurePauseMax = 100 * time.Millisecond, 700 * time.Millisecond
)

// ensure runs attempt until it succeeds or ctx ends, naming what in the
// error (the last attempt's error included).
func ensure(ctx context.Context, what string, attempt func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, ensureAttempt)
		err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		pause := ensurePauseMin + rand.N(ensurePauseMax-ensurePauseMin)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last attempt: %v)", what, ctx.Err(), err)
		case <-time.After(pause):
		}
	}
}

// ensureStream makes stream cfg.Name exist with cfg, keeping a larger
// replica count it already has (a node that started alone must not shrink
// what the cluster raised), and returns its handle: the one its creation,
// update or lookup answered. (A lookup right after another node's creation
// could still answer "not found" on this server in a forming cluster.)
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var st jetstream.Stream
	err := ensure(ctx, "stream "+cfg.Name, func(ctx context.Context) error {
		s, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(ctx, cfg)
			return err
		}
		if err != nil {
			return err
		}
		have := s.CachedInfo().Config
		want := cfg
		want.Replicas = max(want.Replicas, have.Replicas)
		if sameStreamLimits(have, want) {
			st = s
			return nil
		}
		st, err = js.UpdateStream(ctx, want)
		return err
	})
	return st, err
}

// sameStreamLimits reports whether have already is what want asks for, in
// what the cluster sets: subjects, replicas, age, size and per-subject
// limits.
func sameStreamLimits(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Replicas == want.Replicas && have.MaxAge == want.MaxAge &&
		have.MaxBytes == want.MaxBytes && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject
}

// ensureBucket makes the key-value bucket cfg.Bucket exist, raising its
// replicas to cfg.Replicas when it has fewer (never lowering them), and
// returns it; raised reports a raise.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (kv jetstream.KeyValue, raised bool, err error) {
	err = ensure(ctx, "bucket "+cfg.Bucket, func(ctx context.Context) error {
		b, err := js.KeyValue(ctx, cfg.Bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, cfg)
			return err
		}
		if err != nil {
			return err
		}
		st, err := b.Status(ctx)
		if err != nil {
			return err
		}
		have := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas
		if have < cfg.Replicas {
			if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
				return err
			}
			raised = true
		}
		kv = b
		return nil
	})
	return kv, raised, err
}
