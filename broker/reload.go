package broker

import (
	"time"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// Reloading the configuration of a running broker.
//
// The broker keeps the configuration in effect in Server.cfg. The keys
// config.CheckReload lets change at runtime are the live lines of
// reloadRules (broker/config/reload.go), each naming what reads it: that
// code reads Server.cfg each time it needs the value, through the small
// accessors at the end of this file or Server.wrapConn. The log.* keys are
// applied by Reload itself, through Options.ApplyLog. Everything else was
// read once by New and stays as it was.

// Reload makes cfg, a validated configuration, the one in effect, if it
// differs from it only in settings a running broker can change; it returns
// those changes (config.Diff), all applied. A change of log.* is applied
// by calling Options.ApplyLog with cfg.Log; without ApplyLog the log.*
// keys cannot change. Otherwise Reload returns a *config.ReloadError
// naming cfg's file and every key that cannot change, and nothing changes.
// Reload may be called from any goroutine; concurrent calls are
// serialized.
func (s *Server) Reload(cfg *config.Config) ([]config.Change, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	changes, err := config.CheckReload(s.cfg.Load(), cfg, s.applyLog != nil)
	if err != nil {
		return nil, err
	}
	s.cfg.Store(cfg)
	for _, c := range changes {
		if c.Logger {
			s.applyLog(cfg.Log)
			break
		}
	}
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
