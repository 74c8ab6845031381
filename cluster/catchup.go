package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/propolis-mqtt/propolis/broker"
)

// This file is the catch-up of connected subscribers (docs/cluster.md,
// "Catch-up after a gap"): a node that dropped messages of other nodes
// (its inbox full) or was cut off from them (routes down, JetStream not
// current, the process stopped) reads back from PROPOLIS_MESSAGES what
// was stored since its last good checkpoint, on the subjects of its
// current subscriptions, and injects it as live messages; a shared
// subscription group with local members gets each message of its filter
// once, at one local member. Duplicates are possible (QoS 1 is at least
// once; a group's messages that another node's member had during the gap
// come again); loss is what it prevents.

// Timings of the catch-up.
const (
	// catchUpEvery is how often the node samples its health and the
	// stream's last sequence.
	catchUpEvery = 500 * time.Millisecond
	// catchUpLag is how long the node must stay healthy after a sample
	// before the sample becomes its checkpoint: a message stored before
	// the sample reached the node by then.
	catchUpLag = 2 * time.Second
	// catchUpTimeout bounds one catch-up; what it did not reach is left
	// for the next.
	catchUpTimeout = time.Minute
	// catchUpPage is how many stream sequences one read of a catch-up
	// covers: the messages of one page are held in memory at a time.
	catchUpPage = 4096
)

// catchUpOptions are the explicit dependencies of a catchUpper.
type catchUpOptions struct {
	// Router gives the subjects subscribed, the drop count, the node's
	// name and the broker to inject into.
	Router *router
	// Sessions reads PROPOLIS_MESSAGES (read, last).
	Sessions *sessions
	// Shared gives the shared subscription groups with local members and
	// their drop count; nil for none.
	Shared *shared
	// Healthy reports whether the node has a route to every alive node
	// and a current JetStream, and the epochs of its connections, by
	// connection (its NATS connection's reconnects, the ids of its routes
	// to each node): an epoch that changed from one tick to the next
	// means the connection was lost and made again, so that a cut shorter
	// than a tick is seen too. A connection appearing or going (a node
	// joining or leaving) is no gap.
	Healthy func() (bool, map[string]string)
	// Every, Lag and Timeout replace catchUpEvery, catchUpLag and
	// catchUpTimeout when positive (tests).
	Every, Lag, Timeout time.Duration
	Log                 *slog.Logger
}

// sample is the stream's last sequence at a time the node was healthy.
type sample struct {
	at  time.Time
	seq uint64
}

// catchUpper keeps the checkpoint and runs the catch-ups, one at a time,
// on its own goroutine.
type catchUpper struct {
	o    catchUpOptions
	stop chan struct{}
	wg   sync.WaitGroup

	// Owned by run's goroutine.
	checkpoint uint64 // 0: none yet
	known      bool   // checkpoint read
	samples    []sample
	drops      uint64
	gap        string    // why a catch-up is due, "" for none
	badAt      time.Time // the last tick the node was not healthy
	lastTick   time.Time
	epoch      map[string]string // Healthy's epochs at the last tick

	mu      sync.Mutex
	runs    int  // catch-ups done (tests)
	started bool // the first checkpoint read (tests)
}

// newCatchUp starts the sampling goroutine.
func newCatchUp(o catchUpOptions) *catchUpper {
	if o.Every <= 0 {
		o.Every = catchUpEvery
	}
	if o.Lag <= 0 {
		o.Lag = catchUpLag
	}
	if o.Timeout <= 0 {
		o.Timeout = catchUpTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	c := &catchUpper{o: o, stop: make(chan struct{})}
	c.wg.Add(1)
	go c.run()
	return c
}

// close stops the sampling and waits for a catch-up running.
func (c *catchUpper) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
}

func (c *catchUpper) run() {
	defer c.wg.Done()
	t := time.NewTicker(c.o.Every)
	defer t.Stop()
	c.drops = c.dropped()
	c.lastTick = time.Now()
	for {
		c.tick(time.Now())
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

// tick samples once, and runs a catch-up when one is due and the node
// has been healthy for Lag.
func (c *catchUpper) tick(now time.Time) {
	healthy, epoch := c.o.Healthy()
	for k, v := range epoch {
		if old, ok := c.epoch[k]; ok && old != v {
			healthy = false // this tick's sample is not trusted either
			c.setGap("connection " + k + " was lost and made again")
		}
	}
	c.epoch = epoch
	// A tick far later than due: the process was stopped (SIGSTOP) or
	// starved; what arrived meanwhile is unknown.
	if now.Sub(c.lastTick) > c.o.Every+c.o.Lag {
		healthy = false
		c.setGap("the node was stopped or starved")
	}
	c.lastTick = now
	if d := c.dropped(); d > c.drops {
		c.setGap(fmt.Sprintf("%d messages dropped", d-c.drops))
		c.drops = d
		c.samples = nil
		// A subscription gets a message as it is published, before the
		// stream has stored it: one dropped now may be after the last
		// sequence read below. The catch-up waits Lag after the last
		// drop, as after a cut, so that its last sequence covers them.
		c.badAt = now
	}
	if !healthy {
		if c.known {
			c.setGap("not connected to every node or JetStream not current")
		}
		c.badAt = now
		c.samples = nil
		return
	}
	ctx, cancel := c.context(publishTimeout)
	last, err := c.o.Sessions.last.read(ctx)
	cancel()
	if err != nil {
		c.samples = nil
		c.badAt = now
		return
	}
	if !c.known {
		// The first reading: no subscriber of this node was owed
		// anything before it (the broker had just started).
		c.checkpoint, c.known = last, true
		c.mu.Lock()
		c.started = true
		c.mu.Unlock()
		return
	}
	if c.gap != "" {
		if now.Sub(c.badAt) >= c.o.Lag {
			c.catchUp(last)
			c.lastTick = time.Now() // a long catch-up is no stop
		}
		return
	}
	c.samples = append(c.samples, sample{at: now, seq: last})
	for len(c.samples) > 0 && now.Sub(c.samples[0].at) >= c.o.Lag {
		c.checkpoint = c.samples[0].seq
		c.samples = c.samples[1:]
	}
}

func (c *catchUpper) setGap(why string) {
	if c.gap == "" && c.known {
		c.gap = why
	}
}

// catchUp replays (checkpoint, upTo] on the subjects subscribed now,
// a page at a time, skipping this node's own messages, and injects them
// as live ones. The checkpoint moves to what was done: a catch-up cut by
// its timeout or an error leaves the rest to the next tick.
func (c *catchUpper) catchUp(upTo uint64) {
	from := c.checkpoint
	if upTo <= from {
		c.gap, c.samples = "", nil
		c.checkpoint = upTo // lower only when the stream was made anew
		return
	}
	groups := c.groups()
	subjects, groupSubjects := c.subjects(), c.groupSubjects(groups)
	why := c.gap
	start := time.Now()
	ctx, cancel := c.context(c.o.Timeout)
	defer cancel()
	injected, failed := 0, 0
	notShared := map[sharedKey]int{} // messages a group's local members could not take
	var err error
	done := from
	if len(subjects)+len(groupSubjects) > 0 {
		st, serr := c.o.Sessions.messages(ctx)
		err = serr
		for err == nil && done < upTo {
			end := min(done+catchUpPage, upTo)
			b := c.o.Router.currentBroker()
			if b == nil {
				err = errors.New("no broker")
				break
			}
			// Plain subscriptions: this node's own messages are left out
			// (its subscribers had them locally).
			var msgs []broker.Message
			if len(subjects) > 0 {
				if msgs, _, err = c.o.Sessions.read(ctx, st, subjects, done+1, end, 0, c.o.Router.o.Node); err != nil {
					break
				}
			}
			for _, m := range msgs {
				if err = ctx.Err(); err != nil {
					break
				}
				if ierr := b.InjectRemote(m, m.Origin); ierr != nil {
					failed++
					c.o.Router.reject(m.Topic, "", ierr)
					continue
				}
				injected++
			}
			// Shared groups: this node's own messages too (NATS may have
			// given one to this node's queue subscription, which dropped
			// it).
			msgs = nil
			if err == nil && len(groupSubjects) > 0 {
				msgs, _, err = c.o.Sessions.read(ctx, st, groupSubjects, done+1, end, 0, "")
			}
			for _, m := range msgs {
				if err = ctx.Err(); err != nil {
					break
				}
				for _, k := range groups {
					if matched, derr := c.o.Shared.deliverTo(k, m, m.Origin); derr != nil {
						notShared[k]++
					} else if matched {
						injected++
					}
				}
			}
			if err != nil {
				break
			}
			done = end
		}
	} else {
		done = upTo
	}
	for k, n := range notShared {
		c.o.Log.Warn("cluster: catch-up messages not delivered to a shared subscription group here (its members left?)",
			"group", k.group, "filter", k.filter, "messages", n)
	}
	c.checkpoint = done
	c.samples = nil
	if err != nil {
		c.o.Log.Warn("cluster: catch-up of messages missed stopped early; the rest comes at the next one", "reason", why,
			"from", from+1, "reached", done, "to", upTo, "injected", injected, "error", err)
		return
	}
	c.gap = ""
	c.mu.Lock()
	c.runs++
	c.mu.Unlock()
	c.o.Log.Info("cluster: caught up with messages stored while this node missed them", "reason", why,
		"from", from+1, "to", upTo, "subjects", len(subjects)+len(groupSubjects), "injected", injected, "not_delivered", failed,
		"took", time.Since(start).Round(time.Millisecond))
}

// dropped is how many messages of other nodes this node dropped: its
// inbox's and its shared queue subscriptions'.
func (c *catchUpper) dropped() uint64 {
	n := c.o.Router.Dropped()
	if c.o.Shared != nil {
		n += c.o.Shared.Dropped()
	}
	return n
}

// context is a context ending after d or when close is called.
func (c *catchUpper) context(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// groups are the shared subscription groups with local members now.
func (c *catchUpper) groups() []sharedKey {
	if c.o.Shared == nil {
		return nil
	}
	return c.o.Shared.joined()
}

// subjects are the pm. subjects subscribed now, none covering another.
func (c *catchUpper) subjects() []string {
	var subs []string
	for subj := range c.o.Router.subjects() {
		subs = append(subs, subj)
	}
	return coverSubjectList(subs)
}

// groupSubjects are the subjects of groups' filters, none covering
// another.
func (c *catchUpper) groupSubjects(groups []sharedKey) []string {
	var subs []string
	for _, k := range groups {
		subs = append(subs, filterSubject(k.filter, c.o.Router.o.Levels))
	}
	return coverSubjectList(subs)
}

// done reports how many catch-ups completed (tests).
func (c *catchUpper) done() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs
}

// ready reports whether the first checkpoint was read (tests).
func (c *catchUpper) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}
