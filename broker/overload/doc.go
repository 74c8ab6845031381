// Package overload computes the node's stress level and throttles the
// clients that overload it. The broker imports it; it depends on nothing of
// Propolis's own.
//
// # Stress level
//
// A Monitor samples a set of Signals every sampling interval
// (overload.interval, default 1s; the broker runs the loop). Each Signal
// reads one measure and maps it to 0 (fine) .. 1 (saturated) with a linear
// ramp between two documented thresholds, below which it is 0 and above
// which it is 1:
//
//	signal         measure                                           0 at     1 at    weight
//	backlog        bytes waiting in the outbound buffers of all      0        64 MiB  0.8
//	               connections (the broker's outConn), not yet
//	               taken by the sockets
//	sched_latency  p99 of the Go scheduler latency since the last    1 ms     50 ms   0.7
//	               sample (runtime/metrics /sched/latencies:seconds)
//	gc_cpu         share of the CPU available to Go (GOMAXPROCS x    10 %     50 %    0.5
//	               wall time) spent in GC between the last two GC
//	               ends the samples saw (/cpu/classes/gc/total vs
//	               /cpu/classes/total, which the runtime updates
//	               when a GC cycle ends; samples in between repeat
//	               the last value)
//	store_latency  the store's recent write latency (a function the  10 ms    500 ms  0.6
//	               broker gives; skipped while nil)
//	memory         Go runtime memory (/memory/classes/total minus    70 %     95 %    0.9
//	               heap released) against overload.memory_limit
//	               (default GOMEMLIMIT when set, else the signal is
//	               off)
//
// Each signal's value is smoothed with an exponential moving average (half
// the new sample, half the previous value), so one spike moves it halfway
// at most: a lone sample of a saturated memory signal gives a level of 4.5,
// below the default throttle level of 7, and it takes two consecutive
// saturated samples to pass it.
//
// The level combines the smoothed signals s_i with their weights w_i as a
// "noisy or":
//
//	level = 10 * (1 - (1 - w_1 s_1) (1 - w_2 s_2) ... )
//
// A weight is the share of the scale one signal alone can reach when it is
// saturated: memory at its limit alone gives 9, a full backlog 8, a 50 ms
// scheduler p99 7, a 500 ms store write 6, GC eating half the CPU 5; two
// saturated signals together come close to 10, which the level never
// reaches (all five saturated give 9.988), so overload.throttle_level is
// at most 9. These ceilings are approached, not reached: the smoothing
// halves the distance each sample, so a signal saturated from idle is at
// 1/2, 3/4, 7/8 of its ceiling after one, two, three samples, and a
// scheduler latency saturated alone reads 6.1 after three samples and
// never reaches the default throttle_level of 7 by itself; it takes a
// second signal rising with it. A weighted mean would let
// one saturated signal be averaged away by idle ones (memory at its limit
// with everything else quiet would read 2 of 10), and a plain maximum would
// ignore several signals rising together. Why each weight is what it is:
//
//   - memory 0.9: at the limit the Go runtime collects continuously and the
//     next step is the kernel's OOM killer; nothing is worse.
//   - backlog 0.8: the broker is taking in messages faster than it gets them
//     out; the buffers grow until slow consumers are cut off.
//   - sched_latency 0.7: goroutines wait to run, so every client's latency
//     grows; it is also what a busy shared machine shows, hence below the
//     two above.
//   - store_latency 0.6: QoS 1/2 acknowledgements wait for the disk; reading
//     publishers more slowly is the only relief, but a slow disk is often
//     not caused by publishers at all.
//   - gc_cpu 0.5: high GC share usually follows memory pressure, which the
//     memory signal already counts, so it counts for less on its own.
//
// A nil Signal.Value is skipped, as if the signal did not exist (a broker
// without a store latency measure has four signals).
//
// # Throttling
//
// A Throttler holds a Client for each connected client. The reader of each
// connection calls Client.Wait with the bytes it read and the PUBLISH
// packets they end; Wait blocks that reader (and only it) as long as the
// client's token buckets (golang.org/x/time/rate) say, so the client's
// socket is read more slowly and TCP's flow control slows the sender
// down. Nothing is dropped and nobody is disconnected for it; Wait returns
// early when its done channel closes (the connection ends or the broker
// shuts down).
//
// Two kinds of bucket:
//
//   - the operator's per-client limits (Limits: messages per second with a
//     burst, bytes per second), always in force;
//   - the stress bucket, in bytes per second, which Throttler.Adjust sets
//     and lifts from the stress level, for clients with protection on (a
//     listener's overload_protection, a client setting of the
//     authenticator).
//
// Adjust runs once per sample (Policy):
//
//  1. level >= Policy.ThrottleLevel: the protected clients that sent the
//     most since the last Adjust, the fewest that together sent at least
//     half of the bytes the protected clients sent (unprotected clients
//     neither rank nor count), each sending at least Policy.MinRate, are
//     throttled to half the rate they sent at; clients throttled already
//     are halved again; nobody goes below MinRate.
//  2. level < Policy.ReleaseLevel: every throttled client's rate doubles;
//     once it is back to the rate it sent at when it was throttled, its
//     bucket is lifted.
//  3. in between: nothing changes.
//
// # Goroutines
//
// Monitor.Sample and Throttler.Adjust run on one goroutine (the broker's
// sampling loop); Client.Wait on each connection's reader; the rest
// (Stats, Add, Remove) on any goroutine.
package overload
