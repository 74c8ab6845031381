package propolis

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// DecodeConfig unmarshals the extension configuration (the manifest's
// config section) into v, as json.Unmarshal does, but strictly: a key that
// no field of v's struct types takes is an error (the key of a field with
// a json tag must match it with its case), as is a value of the wrong
// type. Each error names the place under config, for example
//
//	config.rules[1]: unknown key "tpoic" (known: topic, qos)
//	config.limit: a string, want uint32
//
// so that a typo in a manifest stops the extension's start with the key
// named, instead of being ignored. An empty Config leaves v unchanged, so
// fields set before the call act as defaults. Maps, json.RawMessage and
// types with their own UnmarshalJSON take any key.
func (s StartInfo) DecodeConfig(v any) error {
	if len(s.Config) == 0 {
		return nil
	}
	var tree any
	d := json.NewDecoder(bytes.NewReader(s.Config))
	d.UseNumber()
	if err := d.Decode(&tree); err != nil {
		return errors.New("config: " + err.Error())
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("config: more than one JSON value")
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		if err := unknownKeys("config", tree, rv.Type().Elem()); err != nil {
			return err
		}
	}
	if err := json.Unmarshal(s.Config, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			at := "config"
			if te.Field != "" {
				at += "." + te.Field
			}
			return errors.New(at + ": " + article(te.Value) + ", want " + typeWords(te.Type))
		}
		return errors.New("config: " + err.Error())
	}
	return nil
}

// unknownKeys walks the JSON tree beside the Go type t that will receive it
// and returns an error naming the first object key (in key order) that t
// has no field for, or the first value of the wrong type, at path. A null
// is accepted anywhere, as encoding/json accepts it.
func unknownKeys(path string, tree any, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if takesAnything(t) {
		return decodesItself(path, tree, t)
	}
	switch tv := tree.(type) {
	case map[string]any:
		switch t.Kind() {
		case reflect.Map:
			for _, k := range sortedKeys(tv) {
				if err := unknownKeys(path+"."+k, tv[k], t.Elem()); err != nil {
					return err
				}
			}
		case reflect.Struct:
			fields := jsonFields(t)
			for _, k := range sortedKeys(tv) {
				ft, ok := fields.find(k)
				if !ok {
					return fields.unknown(path, k)
				}
				if err := unknownKeys(path+"."+k, tv[k], ft); err != nil {
					return err
				}
			}
		default:
			return mistyped(path, "an object", t)
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return mistyped(path, "a list", t)
		}
		for i, e := range tv {
			if err := unknownKeys(path+"["+strconv.Itoa(i)+"]", e, t.Elem()); err != nil {
				return err
			}
		}
	case string:
		if t.Kind() != reflect.String {
			return mistyped(path, "a string", t)
		}
	case bool:
		if t.Kind() != reflect.Bool {
			return mistyped(path, "a boolean", t)
		}
	case json.Number:
		return checkNumber(path, tv, t)
	}
	return nil
}

// checkNumber checks that the JSON number n fits the numeric type t.
func checkNumber(path string, n json.Number, t reflect.Type) error {
	what := "the number " + n.String()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || reflect.Zero(t).OverflowInt(i) {
			return mistyped(path, what, t)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil || reflect.Zero(t).OverflowUint(u) {
			return mistyped(path, what, t)
		}
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(n.String(), 64)
		if err != nil || reflect.Zero(t).OverflowFloat(f) {
			return mistyped(path, what, t)
		}
	default:
		return mistyped(path, what, t)
	}
	return nil
}

// mistyped is the error for a JSON value of the wrong shape for t.
func mistyped(path, got string, t reflect.Type) error {
	return errors.New(path + ": " + got + ", want " + typeWords(t))
}

// typeWords names a Go type for a configuration author.
func typeWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct:
		return "an object"
	case reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer that fits " + t.Kind().String()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a whole number that fits " + t.Kind().String()
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

var (
	rawMessageType  = reflect.TypeOf(json.RawMessage(nil))
	unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()
	textType        = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// decodesItself tries the JSON value tree on a fresh value of t, a type
// with its own UnmarshalJSON (or UnmarshalText), so that its error is
// reported at path: encoding/json would report it without the key.
func decodesItself(path string, tree any, t reflect.Type) error {
	if t.Kind() == reflect.Interface || t == rawMessageType || tree == nil {
		return nil
	}
	b, err := json.Marshal(tree)
	if err != nil {
		return nil // json.Unmarshal will say
	}
	if err := json.Unmarshal(b, reflect.New(t).Interface()); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errors.New(path + ": " + article(te.Value) + ", want " + typeWords(te.Type))
		}
		return errors.New(path + ": " + err.Error())
	}
	return nil
}

// takesAnything reports whether a value of type t accepts any JSON shape
// as far as keys go: an interface, a json.RawMessage, or a type decoding
// itself.
func takesAnything(t reflect.Type) bool {
	if t.Kind() == reflect.Interface || t == rawMessageType {
		return true
	}
	pt := reflect.PointerTo(t)
	return t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(textType) || pt.Implements(textType)
}

// fieldSet is the JSON keys a struct type takes: the tag name, or the
// field name; embedded structs' fields are promoted. A field with a json
// tag takes its key exactly ("Audience" is not "audience"); one without
// takes its name in any case, as encoding/json does ("prefix" for Prefix).
type fieldSet struct {
	names  []string
	types  []reflect.Type
	tagged []bool
}

func (f fieldSet) find(key string) (reflect.Type, bool) {
	for i, n := range f.names {
		if n == key {
			return f.types[i], true
		}
	}
	for i, n := range f.names {
		if !f.tagged[i] && strings.EqualFold(n, key) {
			return f.types[i], true
		}
	}
	return nil, false
}

// unknown is the error for key, which no field takes, at path: it names
// the key meant when only the case differs, else the keys known.
func (f fieldSet) unknown(path, key string) error {
	for _, n := range f.names {
		if strings.EqualFold(n, key) {
			return errors.New(path + ": unknown key " + strconv.Quote(key) + " (did you mean " + strconv.Quote(n) + "? keys are case-sensitive)")
		}
	}
	return errors.New(path + ": unknown key " + strconv.Quote(key) + " (known: " + strings.Join(f.names, ", ") + ")")
}

func jsonFields(t reflect.Type) fieldSet {
	var f fieldSet
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := sf.Type
		if sf.Anonymous && name == "" {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				inner := jsonFields(et)
				f.names = append(f.names, inner.names...)
				f.types = append(f.types, inner.types...)
				f.tagged = append(f.tagged, inner.tagged...)
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		tagged := name != ""
		if !tagged {
			name = sf.Name
		}
		f.names = append(f.names, name)
		f.types = append(f.types, ft)
		f.tagged = append(f.tagged, tagged)
	}
	return f
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// article turns encoding/json's name of a JSON value ("string", "number",
// "object", "array", "bool", "number -1") into words for an error.
func article(v string) string {
	switch {
	case v == "object" || v == "array":
		return "an " + v
	case v == "bool":
		return "a boolean"
	case strings.HasPrefix(v, "number "):
		return "the number " + strings.TrimPrefix(v, "number ")
	}
	return "a " + v
}
