// Command httpauth is a test guest for outbound HTTP and the
// authentication cache: an authenticator asking an identity service.
//
// Its config:
//
//	url: http://127.0.0.1:PORT/check   # the identity service
//	cache_seconds: 60                  # 0: never cache
//	local: {alice: pw}                 # users checked without HTTP
//	start_check: true                  # GET url in Start; refuse to start without an answer
//
// A user in local is checked against its password there, without HTTP
// and without caching. Any other CONNECT is POSTed to url as JSON
// {"client_id", "username", "password"}: 200 allows, any other status
// denies with 0x86 (both cached for cache_seconds); no answer (down, too
// slow, not allowed) denies with 0x88 and the error as reason string,
// never cached.
//
// AuthorizePublish (filters pub/# and admin/#): pub/CLIENTID is allowed,
// other pub/ topics denied; admin/flush runs FlushAuthCache with the
// payload as client id ("" for all) and denies with "flushed N" as reason
// string (an MQTT 5 client reads it from its PUBACK); admin/get runs
// DoHTTP on the URL in the payload, which publish-path callbacks may not
// call, and denies with the error.
package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

var cfg struct {
	URL          string            `json:"url"`
	CacheSeconds int               `json:"cache_seconds"`
	Local        map[string]string `json:"local"`
	StartCheck   bool              `json:"start_check"`
}

func init() {
	propolis.Register(propolis.Extension{
		Start: func(info propolis.StartInfo) error {
			if err := json.Unmarshal(info.Config, &cfg); err != nil {
				return err
			}
			if cfg.StartCheck {
				if _, err := propolis.DoHTTP(&propolis.HTTPRequest{URL: cfg.URL}); err != nil {
					return errors.New("identity service at start: " + err.Error())
				}
			}
			return nil
		},
		Authenticate:     authenticate,
		AuthorizePublish: authorizePublish,
		PublishFilters:   []string{"pub/#", "admin/#"},
	})
}

func authenticate(c *propolis.Connect) propolis.AuthResult {
	if pw, ok := cfg.Local[c.Username]; ok {
		if string(c.Password) == pw {
			return propolis.AuthResult{Verdict: propolis.Allow(), Unrestricted: true}
		}
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "bad local password")}
	}
	body, _ := json.Marshal(map[string]string{"client_id": c.ClientID, "username": c.Username, "password": string(c.Password)})
	resp, err := propolis.DoHTTP(&propolis.HTTPRequest{Method: "POST", URL: cfg.URL,
		Header: []propolis.HTTPHeader{{Name: "Content-Type", Value: "application/json"}}, Body: body})
	if err != nil {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeServerUnavailable, "identity service: "+err.Error())}
	}
	if cfg.CacheSeconds > 0 {
		if err := propolis.CacheAuthResult(time.Duration(cfg.CacheSeconds) * time.Second); err != nil {
			propolis.Log(propolis.LevelError, "cache_result: "+err.Error())
		}
	}
	if resp.Status != 200 {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBadUsernameOrPassword, "identity service said "+strconv.Itoa(resp.Status))}
	}
	return propolis.AuthResult{Verdict: propolis.Allow(),
		ConnackUserProperties: []propolis.UserProperty{{Key: "idp", Value: resp.Get("X-Idp-Tag")}}}
}

func authorizePublish(p *propolis.Publish) propolis.Verdict {
	switch p.Topic {
	case "pub/" + p.ClientID:
		return propolis.Allow()
	case "admin/flush":
		n, err := propolis.FlushAuthCache(string(p.Payload))
		if err != nil {
			return propolis.Deny(0x83, "err:"+err.Error())
		}
		return propolis.Deny(0x83, "flushed "+strconv.Itoa(n))
	case "admin/get":
		_, err := propolis.DoHTTP(&propolis.HTTPRequest{URL: string(p.Payload)})
		return propolis.Deny(0x83, "err:"+errText(err))
	}
	return propolis.Deny(propolis.CodeNotAuthorized, "not your topic")
}

func errText(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

func main() {}
