package config

import (
	"testing"

	"github.com/propolis-mqtt/propolis/internal/golden"
)

// TestGolden runs every testdata/*.txt case (internal/golden), parsed as
// if it came from "propolis.yaml"; keys are looked up in the Config.
func TestGolden(t *testing.T) {
	golden.Run(t, "testdata/*.txt", func(t *testing.T, input []byte) (func(string) (string, error), error) {
		c, err := Parse("propolis.yaml", input)
		return func(key string) (string, error) { return golden.Lookup(c, key) }, err
	})
}
