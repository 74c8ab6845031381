package broker

import (
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// Reloading the configuration of a running broker.
//
// The broker keeps the configuration in effect in Server.cfg. The settings
// config.CheckReload lets change at runtime (the live keys of its
// reloadRules under mqtt.*) are read from it each time they are needed:
//
//   - mqtt.connect_timeout: when a listener accepts a connection
//     (guardedListener.Serve) and when the authenticator is called for its
//     CONNECT (hook.authenticate);
//   - mqtt.write_timeout, mqtt.max_outbound_buffer: when a connection is
//     accepted (Server.wrapConn); a connection keeps the values it was
//     accepted with;
//   - mqtt.max_message_expiry: for every PUBLISH (hook.stampPublish) and
//     every message an extension publishes (Server.messagePacket).
//
// Everything else was read once by New and stays as it was.

// Reload makes cfg, a validated configuration, the one in effect, if it
// differs from it only in settings a running broker can change; it returns
// those changes (config.Diff). Otherwise it returns a *config.ReloadError
// naming every key that cannot change, and nothing changes. The log.*
// settings are the caller's, which built the logger. Reload may be called
// from any goroutine; concurrent calls are serialized.
func (s *Server) Reload(cfg *config.Config) ([]config.Change, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	changes, err := config.CheckReload(s.cfg.Load(), cfg)
	if err != nil {
		return nil, err
	}
	s.cfg.Store(cfg)
	return changes, nil
}

// Config returns the configuration in effect: the one given to New, or
// the last one Reload took. The caller must not modify it.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// connectTimeout returns mqtt.connect_timeout in effect.
func (s *Server) connectTimeout() time.Duration {
	return time.Duration(s.cfg.Load().MQTT.ConnectTimeout)
}

// connectTimeout returns mqtt.connect_timeout in effect.
func (h *hook) connectTimeout() time.Duration {
	return time.Duration(h.cfg.Load().MQTT.ConnectTimeout)
}

// maxKeepalive returns mqtt.max_keepalive in effect, in seconds.
func (h *hook) maxKeepalive() uint16 {
	return uint16(time.Duration(h.cfg.Load().MQTT.MaxKeepalive) / time.Second)
}

// maxMsgExpiry returns mqtt.max_message_expiry in effect, in seconds; 0 is
// no limit.
func (h *hook) maxMsgExpiry() int64 {
	return int64(time.Duration(h.cfg.Load().MQTT.MaxMessageExpiry) / time.Second)
}
