// Package yamlconf decodes YAML configuration files into Go structs and
// reports every problem at once, each located as
//
//	FILE:LINE:COLUMN: KEY: problem
//
// where KEY is the dotted path of the offending key, such as
// "listeners[1].tls.cert_file". The broker configuration (broker/config)
// and the extension manifest (host) are both read with it, so an operator
// sees one error format for both.
//
// Decode fills a struct by its `yaml` field tags and records where each key
// path sits in the file; validation run afterwards hands its problems to
// Document.Add, which gives them the same positions. Duration and ByteSize
// are the unit types such files use ("10s", "1MiB").
//
// A YAML syntax error gets the line and column of the character that
// breaks the file, which yaml.v3 does not report (see locate.go).
//
// Nothing here keeps state between calls; every function is safe for
// concurrent use on distinct values.
package yamlconf
