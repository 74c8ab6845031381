//go:build !linux

package main

import (
	"errors"
	"os"
)

func init() {
	// Elsewhere a terminal is recognised as a character device, and the
	// password must come on standard input (not echoing is Linux-only).
	stdinTerminal = func(f *os.File) bool {
		fi, err := f.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	echoOff = func(*os.File) (func(), error) {
		return nil, errors.New("not supported on this system: pipe the password on standard input, e.g. printf '%s\\n' \"$PASSWORD\" | propolis passwd FILE USER")
	}
}
