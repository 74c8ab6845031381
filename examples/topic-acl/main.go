// Command topic-acl is a Propolis extension that confines every client to
// its own topic tree: a client may publish and subscribe only under
// "<prefix>/<client id>/" (prefix "devices" unless configured).
//
// It is an authorization example. It does NOT check credentials: as a
// security extension in the chain it lets every client that reaches it
// connect, then confines it. Put an extension that authenticates clients
// before it (higher priority), or use it only where any client may connect.
//
// It works with default permissions only: at CONNECT, Authenticate allows
// the client with one permission, allow publish and subscribe on
// "<prefix>/{clientid}/#". Once a client has a permission, the broker
// denies whatever no permission matches, and it checks permissions itself
// on every PUBLISH (and will) and SUBSCRIBE, without calling the extension.
//
// Configuration (the manifest's config section, optional):
//
//	config:
//	  prefix: devices   # topic level(s) before the client id
package main

import (
	"errors"
	"strings"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// defaultPrefix is the prefix without configuration.
const defaultPrefix = "devices"

// config is the extension's configuration.
type config struct {
	// Prefix is the topic level(s) under which each client gets its tree.
	Prefix string `json:"prefix"`
}

// filter is the permission filter granted to every client, set by start.
var filter = permissionFilter(defaultPrefix)

func init() {
	propolis.Register(propolis.Extension{
		Start:        start,
		Authenticate: authenticate,
	})
}

func main() {}

// start reads the configuration; an invalid prefix refuses the start.
func start(info propolis.StartInfo) error {
	cfg := config{Prefix: defaultPrefix}
	if err := info.DecodeConfig(&cfg); err != nil {
		return errors.New("topic-acl: invalid config: " + err.Error())
	}
	prefix := strings.TrimSuffix(cfg.Prefix, "/")
	if prefix == "" || strings.ContainsAny(prefix, "+#\x00") {
		return errors.New(`topic-acl: config "prefix" must be a non-empty topic without wildcards, got "` + cfg.Prefix + `"`)
	}
	filter = permissionFilter(prefix)
	if info.Instance == 0 { // once per load, not once per instance
		propolis.Infof("topic-acl %s: clients confined to %s", info.Version, filter)
	}
	return nil
}

// permissionFilter returns the filter of the permission granted under
// prefix.
func permissionFilter(prefix string) string { return prefix + "/{clientid}/#" }

// authenticate allows every client, confined to its own topic tree.
func authenticate(*propolis.Connect) propolis.AuthResult {
	return propolis.AuthResult{
		Verdict:     propolis.Allow(),
		Permissions: []propolis.Permission{propolis.AllowTopic(filter)},
	}
}
