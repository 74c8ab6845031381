package yamlconf

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

// Document is what Decode learnt about one file: the problems found so far
// and where each key path sits in the file. Validation run after Decode
// hands its problems to Add, then the caller asks Err for the result. A
// Document is not safe for concurrent use.
type Document struct {
	file   string
	errs   Errors
	nodes  map[string]*yaml.Node // key path -> value node, for positions
	failed map[string]bool       // key paths whose values were rejected
}

// Decode decodes the single YAML document in data, read from a file named
// file, into the struct v points to, matching mapping keys to `yaml` field
// tags. Keys absent from data leave their fields as they were, so callers
// fill v with defaults first; a null value for a struct keeps it too.
//
// Supported field types: Duration, ByteSize, string, int, bool, structs,
// pointers to them and slices of them, and any (which takes any YAML value,
// decoded by yaml.v3: mappings become map[string]any). Unknown keys,
// duplicate keys, merge keys (<<), values of the wrong type and bad units
// are recorded, each with its position, and decoding goes on with the next
// key, so one call finds every problem. An empty data is an empty document.
//
// Decode panics if v is not a non-nil pointer to a struct, or if the file
// reaches a field of an unsupported type: both are programming errors.
func Decode(file string, data []byte, v any) *Document {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("yamlconf: Decode needs a non-nil pointer to a struct, got %T", v))
	}
	d := &Document{file: file, nodes: map[string]*yaml.Node{}, failed: map[string]bool{}}
	d.document(data, rv.Elem())
	return d
}

// Has reports whether key, a dotted path such as "listeners[0].path",
// appears in the file.
func (d *Document) Has(key string) bool {
	return d.nodes[key] != nil
}

// Add records problems found after Decode, typically by validating the
// decoded value; each problem's Key is a dotted path as Decode writes them.
// Add sets each problem's File, and its Line and Column to those of the
// value at Key, or of its nearest ancestor present in the file (the whole
// document for a missing top-level key). It drops a problem whose key, or
// an ancestor, had a value Decode rejected, and every problem when the file
// is not valid YAML: those were reported already.
func (d *Document) Add(errs ...*Error) {
	for _, e := range errs {
		if d.hasFailed(e.Key) {
			continue
		}
		e.File = d.file
		if n := d.node(e.Key); n != nil {
			e.Line, e.Column = n.Line, n.Column
		}
		d.errs = append(d.errs, e)
	}
}

// Err returns every problem recorded by Decode and Add as Errors sorted by
// position, or nil if there is none.
func (d *Document) Err() error {
	if len(d.errs) == 0 {
		return nil
	}
	d.errs.Sort()
	return d.errs
}

// syntaxError matches yaml.v3 parser errors, which carry only a line.
var syntaxError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// composeError matches the yaml.v3 errors found after parsing, about
// aliases; their messages carry a name, so the column search of locate
// cannot find them.
var composeError = regexp.MustCompile(`^yaml: (unknown anchor|anchor .* value contains itself|document contains excessive aliasing)`)

// document decodes the single YAML document in data into v.
func (d *Document) document(data []byte, v reflect.Value) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.yamlError(data, err)
		}
		return // an empty file sets nothing
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.failed[""] = true
		d.errs = append(d.errs, &Error{File: d.file, Line: extra.Line, Column: extra.Column,
			Msg: "yaml: only one document is allowed"})
		return
	case !errors.Is(err, io.EOF):
		d.yamlError(data, err)
		return
	}
	d.value(&doc, v, "")
}

// yamlError records an error returned by the yaml.v3 parser for data,
// at the position locate finds (yaml.v3's own line is often wrong; see
// locate.go), or the line yaml.v3 gave when locate cannot tell.
func (d *Document) yamlError(data []byte, err error) {
	d.failed[""] = true
	e := &Error{File: d.file, Msg: err.Error()}
	m := syntaxError.FindStringSubmatch(e.Msg)
	if m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "yaml: " + m[2]
	}
	if line, col := locate(data, e.Msg, !composeError.MatchString(e.Msg)); line > 0 {
		e.Line, e.Column = line, col
	}
	d.errs = append(d.errs, e)
}

// fail records a problem with node n at key path.
func (d *Document) fail(n *yaml.Node, path, format string, args ...any) {
	d.failed[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Key: path,
		Msg: fmt.Sprintf(format, args...)})
}

// node returns the value node of path, or of its nearest ancestor present
// in the file, or nil.
func (d *Document) node(path string) *yaml.Node {
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

// hasFailed reports whether path or one of its ancestors (the whole
// document included) was rejected while decoding.
func (d *Document) hasFailed(path string) bool {
	for p := range d.failed {
		if p == "" || path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
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
func (d *Document) value(n *yaml.Node, v reflect.Value, path string) {
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
	case v.Kind() == reflect.Interface && v.NumMethod() == 0:
		d.anyValue(n, v, path)
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
		panic("yamlconf: no decoder for " + v.Type().String())
	}
}

// mapping decodes a YAML mapping into the struct v, by yaml field tags.
func (d *Document) mapping(n *yaml.Node, v reflect.Value, path string) {
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
func (d *Document) sequence(n *yaml.Node, v reflect.Value, path string, isNull bool) {
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

// anyValue decodes any YAML value into the empty interface v, the way
// yaml.v3 does; null gives nil.
func (d *Document) anyValue(n *yaml.Node, v reflect.Value, path string) {
	var x any
	if err := n.Decode(&x); err != nil {
		d.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	if x == nil {
		v.SetZero()
		return
	}
	v.Set(reflect.ValueOf(x))
}

// duration decodes an integer number of seconds or a Go duration string.
func (d *Document) duration(n *yaml.Node, v reflect.Value, path string) {
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
func (d *Document) byteSize(n *yaml.Node, v reflect.Value, path string) {
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
