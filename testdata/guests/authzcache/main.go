// Command authzcache is a test guest for the authorization cache
// (cache_result in the authorize callbacks, ABI 1.4; the SDK's
// CacheVerdict). It allows every CONNECT without restriction; each of its
// authorize answers names the call that made it, so that a test can tell
// a kept answer from a new call. Run it with limits.pool_size and
// max_pool_size 1: the count is the instance's.
//
// Its config: cache_seconds (default 60), how long answers are kept; tag,
// appended to every "call N" (to tell two versions apart).
//
// AuthorizePublish, by topic:
//   - keep/...: kept; DENY 0x87 with reason "call N";
//   - next/...: kept; NEXT (the client's permissions then allow);
//   - pass/...: not kept; DENY 0x87 with reason "call N";
//   - flushkeep/...: runs FlushAuthCache("") during the call, then marks
//     its "call N" kept (the host must not keep it: the flush came after
//     the call began);
//   - ratekeep/...: reads the storage key "k" three times (with a service
//     rate of 1 and burst of 1, at least one is refused RATE_LIMITED),
//     then marks its "call N" kept (the host must not keep it);
//   - trap/...: panics (a trap: the instance is discarded, and enough of
//     them stop the extension as a crash loop);
//   - flush: runs FlushAuthCache("") and denies with "flushed";
//   - anything else: ALLOW, not kept.
//
// AuthorizeSubscribe: a filter under keep/ is kept and denied with
// "call N"; any other is allowed, not kept.
package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

var (
	keepFor = time.Minute
	tag     string
	calls   int
)

func init() {
	propolis.Register(propolis.Extension{
		Start: func(info propolis.StartInfo) error {
			var cfg struct {
				CacheSeconds int    `json:"cache_seconds"`
				Tag          string `json:"tag"`
			}
			if len(info.Config) > 0 {
				if err := json.Unmarshal(info.Config, &cfg); err != nil {
					return err
				}
			}
			if cfg.CacheSeconds > 0 {
				keepFor = time.Duration(cfg.CacheSeconds) * time.Second
			}
			tag = cfg.Tag
			return nil
		},
		Authenticate: func(*propolis.Connect) propolis.AuthResult {
			return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
		},
		AuthorizePublish: func(p *propolis.Publish) propolis.Verdict {
			calls++
			named := propolis.Deny(propolis.CodeNotAuthorized, "call "+strconv.Itoa(calls)+tag)
			switch {
			case strings.HasPrefix(p.Topic, "flushkeep/"):
				if _, err := propolis.FlushAuthCache(""); err != nil {
					return propolis.Deny(propolis.CodeUnspecified, err.Error())
				}
				keep()
				return named
			case strings.HasPrefix(p.Topic, "ratekeep/"):
				for i := 0; i < 3; i++ {
					_, _ = propolis.StoredValue("k")
				}
				keep()
				return named
			case strings.HasPrefix(p.Topic, "trap/"):
				panic("trap requested by the test")
			case strings.HasPrefix(p.Topic, "keep/"):
				keep()
				return named
			case strings.HasPrefix(p.Topic, "next/"):
				keep()
				return propolis.Next()
			case strings.HasPrefix(p.Topic, "pass/"):
				return named
			case p.Topic == "flush":
				if _, err := propolis.FlushAuthCache(""); err != nil {
					return propolis.Deny(propolis.CodeUnspecified, err.Error())
				}
				return propolis.Deny(propolis.CodeNotAuthorized, "flushed")
			}
			return propolis.Allow()
		},
		AuthorizeSubscribe: func(s *propolis.Subscribe) propolis.Verdict {
			calls++
			if strings.HasPrefix(s.Filter, "keep/") {
				keep()
				return propolis.Deny(propolis.CodeNotAuthorized, "call "+strconv.Itoa(calls)+tag)
			}
			return propolis.Allow()
		},
	})
}

// keep marks the answer; a refusal is reported in the log, where a test
// reads it.
func keep() {
	if err := propolis.CacheVerdict(keepFor); err != nil {
		propolis.Log(propolis.LevelError, "CacheVerdict: "+err.Error())
	}
}

func main() {}
