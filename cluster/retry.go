package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A JetStream request to a Raft group whose leader just died is not
// answered until the group's replicas elect another, 4 to 9 s after the
// leader's last heartbeat: a request times out or finds no responder
// meanwhile. A claim or release that gave its whole budget to one such
// request, or failed at its first "no response", refused CONNECTs that a
// second try a few seconds later would have served. So each request of a
// claim or release gets its own short deadline and is tried again while
// it fails this way and the operation's budget lasts.
const (
	// requestTimeout bounds one try of a request (within the caller's
	// deadline).
	requestTimeout = 3 * time.Second
	// retryPause is the pause between tries.
	retryPause = 250 * time.Millisecond
)

// NATS's API error codes for "no leader (yet)", which nats.go does not
// name (nats-server's errors.json).
const (
	jsErrClusterIncomplete jetstream.ErrorCode = 10004 // incomplete results
	jsErrClusterNotAvail   jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
	jsErrClusterNotLeader  jetstream.ErrorCode = 10009 // JetStream cluster can not handle request
	jsErrStreamOffline     jetstream.ErrorCode = 10118 // stream is offline
)

// refused reports whether err says a JetStream request reached no leader
// and so did nothing: no responder, or an API error for a group without
// a leader.
func refused(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsErrClusterIncomplete, jsErrClusterNotAvail, jsErrClusterNotLeader, jsErrStreamOffline:
			return true
		}
	}
	return false
}

// transient reports whether err is how a JetStream request fails while a
// group has no leader: refused, or no answer in time (which for a write
// leaves open whether it applied).
func transient(err error) bool {
	return err != nil && (refused(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat))
}

// retry runs op with a deadline of requestTimeout (or ctx's, if sooner),
// again after retryPause while it fails transiently and ctx has not
// ended. It returns op's last error. op must be safe to repeat.
func retry(ctx context.Context, op func(context.Context) error) error {
	return retryWhile(ctx, requestTimeout, transient, op)
}

// writeRetry is retry for a write that a try which timed out may have
// applied all the same: it tries again only after a refusal, and returns
// a time-out at once (the caller reads what is there).
func writeRetry(ctx context.Context, op func(context.Context) error) error {
	return retryWhile(ctx, requestTimeout, refused, op)
}

// retryWhile runs op, each try with a deadline of perTry (none when 0)
// within ctx's, again after retryPause while again(its error) holds and
// ctx has not ended; it returns op's last error.
func retryWhile(ctx context.Context, perTry time.Duration, again func(error) bool, op func(context.Context) error) error {
	for {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if perTry > 0 {
			rctx, cancel = context.WithTimeout(ctx, perTry)
		}
		err := op(rctx)
		cancel()
		if err == nil || !again(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryPause):
		}
	}
}
