package host

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/broker/config"
)

// This file is least privilege and overload protection for host services
// (ABI.md section 5, "Host services"): an extension calls a service only
// when its manifest grants it, and every service call passes the
// extension's token bucket, which never blocks.

// Defaults of the operator's caps on service calls (Options.ServiceRate,
// ServiceBurst): the broker configuration's (extension_services), whose
// doc says why rate limiting is on by default.
const (
	DefaultServiceRate  = config.DefaultServiceRate
	DefaultServiceBurst = config.DefaultServiceBurst
)

// deniedLogEvery bounds the log lines about refused service calls to one
// per extension per interval; the lines in between are counted in the
// next one.
const deniedLogEvery = 10 * time.Second

// serviceGate is one extension's grants and rate limiter.
type serviceGate struct {
	// granted has bit s set for each abi.Service the manifest grants.
	granted uint32
	limiter *rate.Limiter
	// rate and burst are the limiter's settings, for Status.
	rate  float64
	burst int
	// logLimiter spaces the log lines about refusals; suppressed counts
	// the refusals not logged since the last line.
	logLimiter *rate.Limiter
	suppressed atomic.Int64
}

// newServiceGate builds the gate of an extension from its manifest and the
// operator's caps (0: the defaults). The manifest's wish applies up to the
// operator's cap; the cap wins.
func newServiceGate(m *Manifest, capRate float64, capBurst int) *serviceGate {
	if capRate <= 0 {
		capRate = DefaultServiceRate
	}
	if capBurst <= 0 {
		capBurst = DefaultServiceBurst
	}
	r, b := capRate, capBurst
	if want := float64(m.Limits.ServiceRate); want > 0 && want < r {
		r = want
	}
	if m.Limits.ServiceBurst > 0 && m.Limits.ServiceBurst < b {
		b = m.Limits.ServiceBurst
	}
	g := &serviceGate{limiter: rate.NewLimiter(rate.Limit(r), b), rate: r, burst: b,
		logLimiter: rate.NewLimiter(rate.Every(deniedLogEvery), 1)}
	for _, name := range m.Services {
		if s, ok := abi.ServiceByName(name); ok {
			g.granted |= 1 << s
		}
	}
	return g
}

// grants reports whether the manifest grants s.
func (g *serviceGate) grants(s abi.Service) bool { return g.granted&(1<<s) != 0 }

// grantNames lists the granted services in table order.
func (g *serviceGate) grantNames() []string {
	var out []string
	for s := abi.ServiceNone + 1; s < abi.NumServices; s++ {
		if g.grants(s) {
			out = append(out, s.String())
		}
	}
	return out
}

// admit decides whether in's extension may call host function f now:
// StatusOK, or NOT_PERMITTED (not granted; logged, rate-limited) or
// RATE_LIMITED (over the bucket; counted, not logged per call).
func (g *serviceGate) admit(in *instance, f abi.HostFunc) int32 {
	info := &abi.HostFuncs[f]
	if !g.grants(info.Service) {
		if w := in.ext.host.watch; w != nil { // a conformance probe (probe.go)
			w.notPermitted(f)
		}
		g.refused(in, f, "host service not granted: add it to the manifest's services list", "service", info.Service.String())
		return abi.StatusNotPermitted
	}
	if !g.limiter.Allow() {
		in.out.dirty, in.out.rateLimited = true, true
		g.refused(in, f, "host service call over the extension's rate limit", "rate", g.rate, "burst", g.burst)
		return abi.StatusRateLimited
	}
	return abi.StatusOK
}

// refused logs a refused call, at most once per deniedLogEvery.
func (g *serviceGate) refused(in *instance, f abi.HostFunc, msg string, attrs ...any) {
	if !g.logLimiter.Allow() {
		g.suppressed.Add(1)
		return
	}
	attrs = append(attrs, "function", f.String(), "callback", in.cb.String())
	if n := g.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "refusals_not_logged", n)
	}
	in.ext.log.Warn(msg, attrs...)
}
