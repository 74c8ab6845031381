// Command banlist is a Propolis extension that refuses listed user names and
// client identifiers and passes every other CONNECT to the next extension in
// the chain (NEXT). It shows configuration from the manifest, a start-up
// refusal on bad configuration, and chaining: on its own it admits nobody,
// since a chain in which every extension says NEXT refuses the client.
//
// Configuration (manifest "config" section):
//
//	config:
//	  users: [mallory, eve]        # user names to refuse
//	  clients: [bad-device-17]     # client identifiers to refuse
package main

import (
	"errors"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

func init() {
	propolis.Register(propolis.Extension{Start: start, Authenticate: authenticate})
}

func main() {}

// config is the manifest's config section.
type config struct {
	Users   []string `json:"users"`
	Clients []string `json:"clients"`
}

// banned holds the lists after Start; every instance loads its own copy.
var banned struct{ users, clients map[string]bool }

// start loads the lists; an empty list set refuses to start, since the
// extension would then do nothing.
func start(info propolis.StartInfo) error {
	var c config
	if err := info.DecodeConfig(&c); err != nil {
		return err
	}
	return load(c)
}

// load builds the lookup sets.
func load(c config) error {
	if len(c.Users)+len(c.Clients) == 0 {
		return errors.New("config: users and clients are both empty")
	}
	banned.users, banned.clients = set(c.Users), set(c.Clients)
	return nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// authenticate refuses listed clients with 0x8A (banned) and passes the
// rest on.
func authenticate(c *propolis.Connect) propolis.AuthResult {
	if banned.users[c.Username] || banned.clients[c.ClientID] {
		return propolis.AuthResult{Verdict: propolis.Deny(propolis.CodeBanned, "banned")}
	}
	return propolis.AuthResult{Verdict: propolis.Next()}
}
