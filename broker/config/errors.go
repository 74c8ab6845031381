package config

import "github.com/propolis-mqtt/propolis/internal/yamlconf"

// Error is one problem in a configuration file, formatted as
// "FILE:LINE:COL: KEY: MSG". File is the configuration file's name, or
// Config.Source for problems found by Config.Validate.
type Error = yamlconf.Error

// Errors is every problem found in a configuration, in file order; Load,
// Parse and Config.Validate return it.
type Errors = yamlconf.Errors
