// Command ticker is a test guest for propolis_tick and the storage
// service. Each tick counts itself in storage ("ticks"), records which
// version ticked last ("by"), notes an overlap ("overlap") if another tick
// of the extension was still running ("busy"), and then sleeps for the
// manifest's config "sleep" (a Go duration, default none), so that a slow
// tick can be made to span the next one.
package main

import (
	"strconv"
	"time"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

var (
	version string
	sleep   time.Duration
)

func init() {
	propolis.Register(propolis.Extension{
		Start: func(info propolis.StartInfo) error {
			version = info.Version
			var cfg struct{ Sleep string }
			if err := info.DecodeConfig(&cfg); err != nil {
				return err
			}
			if cfg.Sleep != "" {
				d, err := time.ParseDuration(cfg.Sleep)
				if err != nil {
					return err
				}
				sleep = d
			}
			return nil
		},
		Tick: tick,
	})
}

func tick() {
	if v, err := propolis.StoredValue("busy"); err == nil && string(v) == "1" {
		must(propolis.PutStoredValue("overlap", []byte("1")))
	}
	must(propolis.PutStoredValue("busy", []byte("1")))
	n := 0
	if v, err := propolis.StoredValue("ticks"); err == nil {
		n, _ = strconv.Atoi(string(v))
	}
	must(propolis.PutStoredValue("ticks", []byte(strconv.Itoa(n+1))))
	must(propolis.PutStoredValue("by", []byte(version)))
	time.Sleep(sleep)
	must(propolis.PutStoredValue("busy", []byte("0")))
}

// must logs a failed storage call; the test reads the log.
func must(err error) {
	if err != nil {
		propolis.Errorf("storage: %v", err)
	}
}

func main() {}
