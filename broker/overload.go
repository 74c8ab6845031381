package broker

import (
	"context"
	"log/slog"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/propolis-mqtt/propolis/broker/overload"
)

// This file is overload protection (package overload does the sums): the
// node's stress level, sampled by Server.sampleLoop; each client's token
// buckets, attached to its outConn when its CONNECT is accepted
// (attachThrottle) and waited for by the connection's reader (outConn.Read);
// and the subscription limit (limitSubscriptions).

// OverloadStats is the node's stress and throttling, for metrics.
type OverloadStats struct {
	// Level is the stress level, 0 (idle) to 10 (overloaded), at the last
	// sample; 0 while overload.enabled is false.
	Level float64
	// Signals are the signals' smoothed values, 0..1, at the last sample.
	Signals []overload.SignalValue
	// Throttling holds the clients throttled now, the time readers waited
	// and the hits of each per-client limit.
	Throttling overload.Stats
}

// Overload returns the node's stress and throttling figures. Safe from any
// goroutine.
func (s *Server) Overload() OverloadStats {
	return OverloadStats{Level: s.monitor.Level(), Signals: s.monitor.Signals(), Throttling: s.throttler.Stats()}
}

// newMonitor builds the stress monitor of New: the standard signals on
// this server's backlog, store write latency (StoreWriteLatency) and
// memory limit; level, when not nil, replaces the computed level
// (Options.StressLevel).
func (s *Server) newMonitor(level func() float64) *overload.Monitor {
	src := overload.Sources{
		Backlog:           s.backlog,
		StoreWriteLatency: s.StoreWriteLatency,
		MemoryLimit:       s.memoryLimit,
	}
	return overload.NewMonitor(overload.StandardSignals(src), level)
}

// startSampling starts the sampling loop when overload.enabled is true
// (Start calls it); Close stops it.
func (s *Server) startSampling() {
	o := s.cfg.Load().Overload
	if !o.Enabled {
		return
	}
	if s.memoryLimit() <= 0 {
		s.log.Info("overload: the memory signal is off: neither overload.memory_limit nor GOMEMLIMIT is set")
	}
	s.sampling.Add(1)
	go s.sampleLoop(time.Duration(o.Interval))
}

// sampleLoop samples the stress level every interval and adjusts the
// throttling to it, until Close.
func (s *Server) sampleLoop(interval time.Duration) {
	defer s.sampling.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stopSampling:
			return
		case now := <-t.C:
			level := s.monitor.Sample()
			started, lifted := s.throttler.Adjust(level, s.overloadPolicy(), now.Sub(last))
			last = now
			if started > 0 {
				s.log.LogAttrs(context.Background(), slog.LevelInfo, "clients throttled", slog.Int("count", started),
					slog.Float64("stress", level), slog.Int("throttled", s.throttler.Stats().Throttled))
			}
			if lifted > 0 {
				s.log.LogAttrs(context.Background(), slog.LevelInfo, "throttling lifted", slog.Int("count", lifted),
					slog.Float64("stress", level), slog.Int("throttled", s.throttler.Stats().Throttled))
			}
		}
	}
}

// overloadPolicy returns the throttling policy in effect (overload.*,
// read at every sample).
func (s *Server) overloadPolicy() overload.Policy {
	o := s.cfg.Load().Overload
	return overload.Policy{ThrottleLevel: float64(o.ThrottleLevel), ReleaseLevel: float64(o.ReleaseLevel), MinRate: float64(o.MinClientRate)}
}

// memoryLimit returns overload.memory_limit in effect, or GOMEMLIMIT when
// it is 0 (0 when neither is set: no memory signal).
func (s *Server) memoryLimit() int64 {
	if l := int64(s.cfg.Load().Overload.MemoryLimit); l > 0 {
		return l
	}
	return overload.GoMemLimit()
}

// backlog returns the bytes waiting in the outbound buffers of every
// connection being served.
func (s *Server) backlog() int64 {
	var n int64
	for _, l := range s.listeners {
		l.mu.Lock()
		for c := range l.live {
			if oc, ok := c.(*outConn); ok {
				n += int64(oc.waiting())
			}
		}
		l.mu.Unlock()
	}
	return n
}

// clientLimits returns client_limits in effect as the throttler's limits.
func (h *hook) clientLimits() overload.Limits {
	l := h.cfg.Load().ClientLimits
	return overload.Limits{PublishRate: float64(l.PublishRate), PublishBurst: l.PublishBurst, BytesRate: float64(l.BytesRate)}
}

// protected reports whether the stress throttling may apply to a client of
// listener (its overload_protection) whose authenticator gave it settings.
func (h *hook) protected(listener string, settings ClientSettings) bool {
	if settings.NoThrottling {
		return false
	}
	cfg := h.cfg.Load()
	for i := range cfg.Listeners {
		if cfg.Listeners[i].Name == listener {
			return cfg.Listeners[i].Protected()
		}
	}
	return true
}

// attachThrottle gives an accepted client's connection its buckets
// (authenticateConnect, on the client's goroutine, before the CONNACK).
// The reader waits for them from its next read on; Server.connEnded
// removes them.
func (h *hook) attachThrottle(cl *mqtt.Client, settings ClientSettings) {
	oc, ok := cl.Net.Conn.(*outConn)
	if !ok || h.throttler == nil {
		return
	}
	tc := h.throttler.Add(h.clientLimits(), h.protected(cl.Net.Listener, settings))
	if old := oc.throttle.Swap(tc); old != nil {
		h.throttler.Remove(old)
	}
}

// detachThrottle removes the buckets of a connection that was served
// (Server.connEnded).
func (s *Server) detachThrottle(c net.Conn) {
	if oc, ok := c.(*outConn); ok {
		if tc := oc.throttle.Swap(nil); tc != nil {
			s.throttler.Remove(tc)
		}
	}
}

// maxSubscriptions returns client_limits.max_subscriptions in effect; 0
// is no limit.
func (h *hook) maxSubscriptions() int { return h.cfg.Load().ClientLimits.MaxSubscriptions }

// limitSubscriptions refuses, with 0x97 quota exceeded (0x80 for MQTT
// 3.1.1, which mochi writes for any refusal), the filters of a SUBSCRIBE
// that would take cl past client_limits.max_subscriptions: filters the
// session has already, filters refused already and filters mochi will
// refuse (beginSubscribe leaves them out of filters) do not count, the others
// count in the order of the packet. beginSubscribe calls it with the
// verdicts so far, on cl's goroutine; each refusal is counted and logged
// (securityLog.limitReached).
func (h *hook) limitSubscriptions(cl *mqtt.Client, filters []string, existed map[string]struct{}, verdicts map[string]Verdict) {
	maxSubs := h.maxSubscriptions()
	if maxSubs <= 0 {
		return
	}
	n := cl.State.Subscriptions.Len()
	counted := map[string]struct{}{}
	for _, f := range filters {
		if _, ok := existed[f]; ok {
			continue
		}
		if _, ok := verdicts[f]; ok {
			continue
		}
		if _, ok := counted[f]; ok {
			continue
		}
		if n < maxSubs {
			n++
			counted[f] = struct{}{}
			continue
		}
		verdicts[f] = Verdict{Decision: Deny, ReasonCode: CodeQuotaExceeded, ReasonString: "subscription limit reached"}
		if h.throttler != nil {
			h.throttler.HitSubscriptions()
		}
		h.sec.limitReached(cl, "subscriptions", maxSubs, slog.String("filter", f))
	}
}
