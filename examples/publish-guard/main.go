// Command publish-guard is a Propolis extension that checks every PUBLISH
// in Wasm: it refuses topics deeper than a configured number of levels and
// payloads larger than a configured size, and passes everything else on
// (NEXT). It does not authenticate, so it is combined with a security
// extension (e.g. allow-all in development). It is the example of an
// AuthorizePublish handler, and the benchmark harness's "Wasm call on every
// publish" case.
//
// Configuration:
//
//	config:
//	  max_levels: 8          # topic levels, default 8
//	  max_payload: 65536     # bytes, default 64 KiB
package main

import (
	"errors"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, AuthorizePublish: authorizePublish})
}

func main() {}

// limits is the manifest's config section.
type limits struct {
	MaxLevels  int `json:"max_levels"`
	MaxPayload int `json:"max_payload"`
}

var cfg = limits{MaxLevels: 8, MaxPayload: 64 << 10}

func start(info propolis.StartInfo) error {
	if err := info.DecodeConfig(&cfg); err != nil {
		return err
	}
	if cfg.MaxLevels < 1 || cfg.MaxPayload < 0 {
		return errors.New("config: max_levels must be >= 1 and max_payload >= 0")
	}
	return nil
}

// authorizePublish refuses over-deep topics and oversized payloads. It
// counts separators with a plain loop; the topic is a view valid only
// during the call.
func authorizePublish(p *propolis.Publish) propolis.Verdict {
	if len(p.Payload) > cfg.MaxPayload {
		return propolis.Deny(propolis.CodeQuotaExceeded, "payload too large")
	}
	levels := 1
	for i := 0; i < len(p.Topic); i++ {
		if p.Topic[i] == '/' {
			levels++
		}
	}
	if levels > cfg.MaxLevels {
		return propolis.Deny(propolis.CodeTopicNameInvalid, "topic too deep")
	}
	return propolis.Next()
}
