package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks a yaml.Node tree into a Config, recording every problem
// and the node each key path came from.
type decoder struct {
	file   string
	errs   Errors
	nodes  map[string]*yaml.Node // key path -> value node, for positions
	failed map[string]bool       // key paths whose values were rejected
}

// syntaxError matches yaml.v3 parser errors, which carry only a line.
var syntaxError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document decodes the single YAML document in data into c.
func (d *decoder) document(data []byte, c *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.yamlError(err)
		}
		return // an empty file means all defaults
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.errs = append(d.errs, &Error{File: d.file, Line: extra.Line, Column: extra.Column,
			Msg: "yaml: only one document is allowed"})
		return
	case !errors.Is(err, io.EOF):
		d.yamlError(err)
		return
	}
	d.value(&doc, reflect.ValueOf(c).Elem(), "")
}

// yamlError records an error returned by the yaml.v3 parser.
func (d *decoder) yamlError(err error) {
	e := &Error{File: d.file, Msg: err.Error()}
	if m := syntaxError.FindStringSubmatch(e.Msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "yaml: " + m[2]
	}
	d.errs = append(d.errs, e)
}

// fail records a problem with node n at key path.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.failed[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Key: path,
		Msg: fmt.Sprintf(format, args...)})
}

// node returns the value node of path, or of its nearest ancestor present
// in the file, or nil.
func (d *decoder) node(path string) *yaml.Node {
	for {
		if n := d.nodes[path]; n != nil {
			return n
		}
		if path == "" {
			return nil
		}
		path = path[:max(strings.LastIndexAny(path, ".["), 0)]
	}
}

// hasFailed reports whether path or one of its ancestors was rejected while
// decoding.
func (d *decoder) hasFailed(path string) bool {
	for p := range d.failed {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// value decodes n into v, which the file's key path reaches as path. Values
// absent from the file keep what v already holds.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.nodes[path] = n
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"

	switch {
	case v.Type() == durationType:
		d.duration(n, v, path)
	case v.Type() == byteSizeType:
		d.byteSize(n, v, path)
	case v.Kind() == reflect.Struct:
		if isNull {
			return // "mqtt:" with every key commented out keeps the defaults
		}
		d.mapping(n, v, path)
	case v.Kind() == reflect.Pointer:
		if isNull {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path, isNull)
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode || isNull {
			d.fail(n, path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.Int:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
			d.fail(n, path, "want an integer, got %s", describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.fail(n, path, "integer %s is too large", n.Value)
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		panic("config: no decoder for " + v.Type().String())
	}
}

// mapping decodes a YAML mapping into the struct v, by yaml field tags.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	fields := map[string]int{}
	var names []string
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
			names = append(names, name)
		}
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a plain key, got %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.fail(k, path, "merge keys (<<) are not supported")
			continue
		}
		keyPath := k.Value
		if path != "" {
			keyPath = path + "." + k.Value
		}
		if first := seen[k.Value]; first != nil {
			d.fail(k, keyPath, "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		f, ok := fields[k.Value]
		if !ok {
			d.fail(k, keyPath, "unknown key (allowed: %s)", strings.Join(names, ", "))
			continue
		}
		d.value(val, v.Field(f), keyPath)
	}
}

// sequence decodes a YAML sequence into the slice v, replacing its
// contents; each element starts from its zero value. A null value gives an
// empty slice.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string, isNull bool) {
	if isNull {
		v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a sequence, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), path+"["+strconv.Itoa(i)+"]")
	}
	v.Set(s)
}

// duration decodes an integer number of seconds or a Go duration string.
func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	var (
		x   Duration
		err error
	)
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!int":
		var secs int64
		if err = n.Decode(&secs); err == nil {
			x, err = secondsToDuration(secs)
		} else {
			err = fmt.Errorf("%s seconds is too large", n.Value)
		}
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
		x, err = parseDuration(n.Value)
	default:
		err = fmt.Errorf("%s, got %s", errDurationSyntax, describe(n))
	}
	if err != nil {
		d.fail(n, path, "%s", err)
		return
	}
	v.SetInt(int64(x))
}

// byteSize decodes an integer number of bytes or a number with a unit.
func (d *decoder) byteSize(n *yaml.Node, v reflect.Value, path string) {
	var (
		x   ByteSize
		err error
	)
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!int":
		var b int64
		if err = n.Decode(&b); err == nil {
			x = ByteSize(b)
		} else {
			err = fmt.Errorf("byte size %s is too large", n.Value)
		}
	case n.Kind == yaml.ScalarNode && n.Tag == "!!str":
		x, err = parseByteSize(n.Value)
	default:
		err = fmt.Errorf("%s, got %s", errByteSizeSyntax, describe(n))
	}
	if err != nil {
		d.fail(n, path, "%s", err)
		return
	}
	v.SetInt(int64(x))
}

// describe names what node n holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a sequence"
	case n.Tag == "!!null":
		return "null"
	}
	return strconv.Quote(n.Value)
}
