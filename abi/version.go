// Package abi is the contract between the Propolis extension host and
// WebAssembly extensions: its version, names and record layouts. ABI.md in
// this folder is the language-neutral specification; this package mirrors it
// for Go and depends on nothing but the standard library.
package abi

// Major is the ABI major version this build implements. A module declares it
// by exporting the marker function and importing from the module named
// ImportModule.
const Major = 1

// Minor is the highest ABI minor version this build implements. Modules
// built for 1.x with x <= Minor load unchanged.
const Minor = 4

// Version is "Major.Minor".
const Version = "1.4"
