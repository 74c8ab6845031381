package broker

import (
	"context"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// This file logs the security events an operator watches for, at warn:
// refused CONNECTs ("connect refused") and clients the broker disconnects
// for a refusal or a broken limit ("client disconnected": a publish or
// subscribe refused with a Disconnect verdict, a refused QoS 1/2 publish
// of an MQTT 3.1.1 client, the Receive Maximum exceeded), and clients held
// to a per-client limit ("client limit reached": a subscription refused
// for client_limits.max_subscriptions). A client can cause any of these at
// will, so each kind is bounded by a logLimit:
// securityLines lines per securityInterval with client, remote address,
// listener, user name, code and reason, then one summary line per interval
// with the count of the others ("more refused CONNECTs", "more clients
// disconnected", "more client limits reached"). Protocol violations have their own log (violations.go).

const (
	// securityLines is how many lines of one kind are written one by one
	// per securityInterval.
	securityLines = 10
	// securityInterval is the window securityLines counts in, and what a
	// summary line covers.
	securityInterval = 10 * time.Second
)

// securityLog writes refused CONNECTs and disconnects for a refusal, each
// kind rate-limited. Safe for concurrent use.
type securityLog struct {
	log         *slog.Logger
	connects    *logLimit
	disconnects *logLimit
	limits      *logLimit
}

// newSecurityLog returns a securityLog writing to log.
func newSecurityLog(log *slog.Logger) *securityLog {
	summary := func(msg string) func(int) {
		return func(n int) {
			log.LogAttrs(context.Background(), slog.LevelWarn, msg,
				slog.Int("count", n), slog.Duration("within", securityInterval))
		}
	}
	return &securityLog{
		log:         log,
		connects:    newLogLimit(securityLines, securityInterval, summary("more refused CONNECTs")),
		disconnects: newLogLimit(securityLines, securityInterval, summary("more clients disconnected")),
		limits:      newLogLimit(securityLines, securityInterval, summary("more client limits reached")),
	}
}

// connectRefused logs a refusing CONNACK about to be written to cl, with
// the code the client gets and the reason (the CONNACK's reason string,
// which OnPacketEncode sees for every protocol version).
func (s *securityLog) connectRefused(cl *mqtt.Client, code byte, reason string) {
	if ok, _ := s.connects.take(); !ok {
		return
	}
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "connect refused",
		slog.String("client", cl.ID), slog.String("remote", cl.Net.Remote), slog.String("listener", cl.Net.Listener),
		slog.String("username", string(cl.Properties.Username)), slog.Int("protocol", int(cl.Properties.ProtocolVersion)),
		slog.String("code", codeText(code)), slog.String("reason", reason))
}

// disconnected logs that the broker disconnects cl with code and reason;
// what says why ("publish refused"), attrs add the topic or filter.
func (s *securityLog) disconnected(cl *mqtt.Client, code byte, reason, what string, attrs ...slog.Attr) {
	if ok, _ := s.disconnects.take(); !ok {
		return
	}
	all := append([]slog.Attr{
		slog.String("client", cl.ID), slog.String("remote", cl.Net.Remote), slog.String("listener", cl.Net.Listener),
		slog.String("username", string(cl.Properties.Username)), slog.String("cause", what),
		slog.String("code", codeText(code)), slog.String("reason", reason),
	}, attrs...)
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "client disconnected", all...)
}

// limitReached logs that cl reached the per-client limit named limit
// (client_limits: "subscriptions"), whose value is max; attrs add what was
// refused (the filter).
func (s *securityLog) limitReached(cl *mqtt.Client, limit string, max int, attrs ...slog.Attr) {
	if ok, _ := s.limits.take(); !ok {
		return
	}
	all := append([]slog.Attr{
		slog.String("client", cl.ID), slog.String("remote", cl.Net.Remote), slog.String("listener", cl.Net.Listener),
		slog.String("username", string(cl.Properties.Username)), slog.String("limit", limit), slog.Int("max", max),
	}, attrs...)
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "client limit reached", all...)
}

// stop writes the pending summaries now (Server.Close).
func (s *securityLog) stop() {
	s.connects.stop()
	s.disconnects.stop()
	s.limits.stop()
}

// codeText is a reason code as it is written in the logs: "0x87".
func codeText(code byte) string {
	const hex = "0123456789abcdef"
	return string([]byte{'0', 'x', hex[code>>4], hex[code&0xf]})
}

// disconnectLogged logs (securityLog.disconnected) and disconnects cl,
// telling an MQTT 5 client code and reason (see disconnect).
func (h *hook) disconnectLogged(cl *mqtt.Client, code byte, reason, what string, attrs ...slog.Attr) {
	if code < 0x80 {
		code = CodeNotAuthorized
	}
	if reason == "" {
		reason = "not authorized"
	}
	h.sec.disconnected(cl, code, reason, what, attrs...)
	h.disconnect(cl, code, reason)
}

// isViolationCode reports whether a refusing CONNACK's code is one of a
// protocol violation (0x81, 0x82, 0x95), which the violation log reports.
func isViolationCode(code byte) bool {
	return isViolation(packets.Code{Code: code})
}

// logCode is a reason code for a log attribute, written as codeText
// writes it only when the line is written: a debug line of the PUBLISH
// path costs no string while debug is off.
type logCode byte

// LogValue is codeText of c.
func (c logCode) LogValue() slog.Value { return slog.StringValue(codeText(byte(c))) }
