package abi

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// These tests read ABI.md and fail when it and the table in table.go
// disagree on a name, a signature, a bit, a record, a decision, a status
// code, an event kind or where a host function may be called.

func readABI(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("ABI.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mdTable returns the rows (cells trimmed, header and rule excluded) of the
// first Markdown table whose header row starts with header.
func mdTable(t *testing.T, doc, header string) [][]string {
	t.Helper()
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, header) {
			continue
		}
		var rows [][]string
		for _, r := range lines[i+2:] {
			if !strings.HasPrefix(r, "|") {
				break
			}
			cells := strings.Split(strings.Trim(r, "|"), "|")
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			rows = append(rows, cells)
		}
		return rows
	}
	t.Fatalf("ABI.md: no table with header %q", header)
	return nil
}

func unquote(s string) string { return strings.Trim(s, "`") }

// docSignature parses "(size: i32, len: i32) -> i32" or "() -> ()" into a
// Signature and the parameter names.
func docSignature(s string) (Signature, []string, error) {
	m := regexp.MustCompile(`^\((.*)\)\s*->\s*(\(\)|i32|i64)$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Signature{}, nil, fmt.Errorf("signature %q: want (name: type, ...) -> type", s)
	}
	sig := Signature{Params: []ValType{}, Results: []ValType{}}
	var names []string
	if strings.TrimSpace(m[1]) != "" {
		for _, p := range strings.Split(m[1], ",") {
			name, typ, ok := strings.Cut(strings.TrimSpace(p), ":")
			if !ok {
				return Signature{}, nil, fmt.Errorf("signature %q: parameter %q has no type", s, p)
			}
			vt, err := valType(strings.TrimSpace(typ))
			if err != nil {
				return Signature{}, nil, err
			}
			names = append(names, strings.TrimSpace(name))
			sig.Params = append(sig.Params, vt)
		}
	}
	if m[2] != "()" {
		vt, _ := valType(m[2])
		sig.Results = append(sig.Results, vt)
	}
	return sig, names, nil
}

func valType(s string) (ValType, error) {
	switch s {
	case "i32":
		return I32, nil
	case "i64":
		return I64, nil
	}
	return 0, fmt.Errorf("unknown value type %q", s)
}

func TestABIDocExports(t *testing.T) {
	rows := mdTable(t, readABI(t), "| export | signature | bit | record | when |")
	seen := map[Callback]bool{}
	for _, r := range rows {
		if len(r) != 5 {
			t.Errorf("ABI.md exports: row %v: want 5 cells", r)
			continue
		}
		name := unquote(r[0])
		cb, ok := callbackByExport(name)
		if !ok {
			t.Errorf("ABI.md lists export %s, the table has no such callback", name)
			continue
		}
		seen[cb] = true
		info := Callbacks[cb]
		sig, _, err := docSignature(unquote(r[1]))
		if err != nil {
			t.Errorf("ABI.md export %s: %v", name, err)
		} else if !sig.Equal(info.Sig) {
			t.Errorf("export %s: ABI.md says %s, the table %s", name, sig, info.Sig)
		}
		bit := ""
		if info.Bit != 0 {
			for i := 0; i < 32; i++ {
				if info.Bit == 1<<i {
					bit = strconv.Itoa(i)
				}
			}
		}
		if r[2] != bit {
			t.Errorf("export %s: ABI.md gives bit %q, the table %q", name, r[2], bit)
		}
		if rec := r[3]; rec != recordName(info.Record) {
			t.Errorf("export %s: ABI.md gives record %q, the table %q", name, rec, recordName(info.Record))
		}
		var docDecisions DecisionSet
		if _, list, ok := strings.Cut(r[4], "returns a decision:"); ok {
			for _, w := range regexp.MustCompile(`[A-Z]{3,}`).FindAllString(list, -1) {
				found := false
				for d, di := range Decisions {
					if di.Name == w {
						docDecisions |= DecisionsOf(Decision(d))
						found = true
					}
				}
				if !found {
					t.Errorf("export %s: ABI.md names unknown decision %s", name, w)
				}
			}
		}
		if docDecisions != info.Decisions {
			t.Errorf("export %s: ABI.md lists decisions %b, the table %b", name, docDecisions, info.Decisions)
		}
		if info.Required != strings.Contains(r[4], "(required)") {
			t.Errorf("export %s: ABI.md and the table disagree on whether it is required", name)
		}
	}
	for cb := Callback(0); cb < NumCallbacks; cb++ {
		if !seen[cb] {
			t.Errorf("the table has callback %s, ABI.md section 3 does not list it", cb)
		}
	}
}

func recordName(kind uint16) string {
	if kind == 0 {
		return ""
	}
	return NameOf(RecordKinds, kind)
}

func TestABIDocHostFunctions(t *testing.T) {
	doc := readABI(t)
	heading := regexp.MustCompile("(?m)^### `([a-z_]+)(\\(.*\\) -> [^`]+)`$")
	matches := heading.FindAllStringSubmatchIndex(doc, -1)
	seen := map[HostFunc]bool{}
	for i, m := range matches {
		name, sigText := doc[m[2]:m[3]], doc[m[4]:m[5]]
		end := len(doc)
		if i+1 < len(matches) {
			end = matches[i+1][0]
		}
		if next := strings.Index(doc[m[1]:end], "\n## "); next >= 0 {
			end = m[1] + next
		}
		body := doc[m[1]:end]
		f, ok := HostFuncByName(name)
		if !ok {
			t.Errorf("ABI.md documents host function %s, the table has none", name)
			continue
		}
		seen[f] = true
		info := HostFuncs[f]
		sig, names, err := docSignature(sigText)
		if err != nil {
			t.Errorf("host function %s: %v", name, err)
			continue
		}
		if !sig.Equal(info.Sig()) {
			t.Errorf("host function %s: ABI.md says %s, the table %s", name, sig, info.Sig())
		}
		for j, p := range info.Params {
			if j < len(names) && names[j] != p.Name {
				t.Errorf("host function %s: parameter %d is %q in ABI.md, %q in the table", name, j, names[j], p.Name)
			}
		}
		service := ""
		if m := regexp.MustCompile("Service:\\s+`([a-z_]+)`").FindStringSubmatch(body); m != nil {
			service = m[1]
		}
		if want := info.Service; (want == ServiceNone && service != "") || (want != ServiceNone && service != want.String()) {
			t.Errorf("host function %s: ABI.md says Service %q, the table %q", name, service, want)
		}
		in, err := docIn(body)
		if err != nil {
			t.Errorf("host function %s: %v", name, err)
		} else if in != info.In {
			t.Errorf("host function %s: ABI.md says In %v, the table %v", name, setNames(in), setNames(info.In))
		}
	}
	for f := HostFunc(0); f < NumHostFuncs; f++ {
		if !seen[f] {
			t.Errorf("the table has host function %s, ABI.md section 5 does not document it", f)
		}
	}
}

// docIn parses a host function's "In:" sentence.
func docIn(body string) (CallbackSet, error) {
	_, rest, ok := strings.Cut(body, "In:")
	if !ok {
		return 0, fmt.Errorf("no \"In:\" sentence")
	}
	if i := regexp.MustCompile(`\.(\s|$)`).FindStringIndex(rest); i != nil {
		rest = rest[:i[0]]
	}
	if strings.Contains(rest, "any export") {
		return AnyCallback, nil
	}
	var s CallbackSet
	for _, m := range regexp.MustCompile("`([a-z_0-9]+)`").FindAllStringSubmatch(rest, -1) {
		cb, ok := callbackByExport(m[1])
		if !ok {
			return 0, fmt.Errorf("In: names unknown export %s", m[1])
		}
		s |= CallbacksOf(cb)
	}
	return s, nil
}

func setNames(s CallbackSet) []string {
	var out []string
	for cb := Callback(0); cb < NumCallbacks; cb++ {
		if s.Has(cb) {
			out = append(out, cb.String())
		}
	}
	return out
}

func TestABIDocStatusCodes(t *testing.T) {
	rows := mdTable(t, readABI(t), "| code | name | meaning |")
	if len(rows) != len(Statuses) {
		t.Errorf("ABI.md lists %d status codes, the table %d", len(rows), len(Statuses))
	}
	for i, r := range rows {
		code, err := strconv.Atoi(r[0])
		if err != nil || i >= len(Statuses) {
			t.Errorf("ABI.md status row %v", r)
			continue
		}
		if want := Statuses[i]; int32(code) != want.Code || unquote(r[1]) != want.Name {
			t.Errorf("status row %d: ABI.md says %d %s, the table %d %s", i, code, unquote(r[1]), want.Code, want.Name)
		}
	}
}

func TestABIDocNumberedNames(t *testing.T) {
	doc := readABI(t)
	decisions := make([]NamedValue, len(Decisions))
	for i, d := range Decisions {
		decisions[i] = NamedValue{uint16(i), d.Name}
	}
	for _, c := range []struct {
		name   string
		header string
		table  []NamedValue
	}{
		{"decisions", "| value | decision | meaning |", decisions},
		{"record kinds", "| kind | record |", RecordKinds},
		{"event kinds", "| event | name | when |", EventKinds},
		{"disconnect kinds", "| disconnect_kind | name | meaning |", DisconnectKinds},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows := mdTable(t, doc, c.header)
			var got []NamedValue
			for _, r := range rows {
				v, err := strconv.Atoi(r[0])
				if err != nil {
					t.Fatalf("ABI.md %s row %v: %v", c.name, r, err)
				}
				got = append(got, NamedValue{uint16(v), unquote(r[1])})
			}
			if fmt.Sprint(got) != fmt.Sprint(c.table) {
				t.Errorf("ABI.md %s: %v, the table: %v", c.name, got, c.table)
			}
		})
	}
}

// TestHostFunctionsReturnOneStatus: every host function returns one i32
// status (the host writes it to stack[0]), and every chain callback has a
// distinct bit.
func TestHostFunctionsReturnOneStatus(t *testing.T) {
	for _, f := range HostFuncs {
		if len(f.Results) != 1 || f.Results[0] != I32 {
			t.Errorf("host function %s returns %v, want one i32 status", f.Name, f.Results)
		}
	}
	seen := map[uint32]string{}
	for _, c := range Callbacks {
		if c.Bit == 0 {
			continue
		}
		if other, ok := seen[c.Bit]; ok || c.Bit&(c.Bit-1) != 0 {
			t.Errorf("callback %s: bit %#x is not a single bit of its own (also %s)", c.Name, c.Bit, other)
		}
		seen[c.Bit] = c.Name
	}
}

// TestABIDocExampleIsFixture: the minimal extension of ABI.md section 9 is
// testdata/wasm/ok/minimal.wat verbatim (after its opening comment), which
// the host's tests load; so the spec's example is known to work.
func TestABIDocExampleIsFixture(t *testing.T) {
	doc := readABI(t)
	start := strings.Index(doc, "```wat\n")
	if start < 0 {
		t.Fatal("ABI.md: no ```wat example")
	}
	example := doc[start+len("```wat\n"):]
	example = example[:strings.Index(example, "```")]
	b, err := os.ReadFile("../testdata/wasm/ok/minimal.wat")
	if err != nil {
		t.Fatal(err)
	}
	fixture := string(b)
	fixture = fixture[strings.Index(fixture, "\n(module"):]
	if strings.TrimSpace(fixture) != strings.TrimSpace(example) {
		t.Errorf("testdata/wasm/ok/minimal.wat differs from ABI.md's example:\n%s\nABI.md:\n%s", fixture, example)
	}
}

// TestABIDocFields: section 5's field table ("Changing the packet") lists
// every field of the table in order, with its name, type, range and the
// interceptors that may change it.
func TestABIDocFields(t *testing.T) {
	rows := mdTable(t, readABI(t), "| field | name | type | range | in |")
	if len(rows) != int(NumFields)-1 {
		t.Errorf("ABI.md lists %d fields, the table %d", len(rows), NumFields-1)
	}
	types := map[string]FieldType{"int": FieldInt, "text": FieldText, "bytes": FieldBytes, "properties": FieldProperties}
	for i, r := range rows {
		if len(r) != 5 {
			t.Errorf("ABI.md field row %v: want 5 cells", r)
			continue
		}
		n, err := strconv.Atoi(r[0])
		if err != nil || n != i+1 || n >= int(NumFields) {
			t.Errorf("ABI.md field row %d: number %q, want %d", i, r[0], i+1)
			continue
		}
		f := Fields[n]
		if unquote(r[1]) != f.Name {
			t.Errorf("field %d: ABI.md names it %s, the table %s", n, r[1], f.Name)
		}
		if typ, ok := types[r[2]]; !ok || typ != f.Type {
			t.Errorf("field %d %s: ABI.md gives type %q, the table %d", n, f.Name, r[2], f.Type)
		}
		wantRange := ""
		if f.Type == FieldInt {
			wantRange = fmt.Sprintf("%d-%d", f.Min, f.Max)
		}
		if r[3] != wantRange {
			t.Errorf("field %d %s: ABI.md gives range %q, the table %q", n, f.Name, r[3], wantRange)
		}
		var in CallbackSet
		for _, m := range regexp.MustCompile("`([a-z_0-9]+)`").FindAllStringSubmatch(r[4], -1) {
			cb, ok := callbackByExport(m[1])
			if !ok {
				t.Errorf("field %d %s: ABI.md names unknown export %s", n, f.Name, m[1])
			}
			in |= CallbacksOf(cb)
		}
		if in != f.In {
			t.Errorf("field %d %s: ABI.md says in %v, the table %v", n, f.Name, setNames(in), setNames(f.In))
		}
		if in&^Interceptors != 0 {
			t.Errorf("field %d %s: changeable outside the interceptors", n, f.Name)
		}
	}
}

// docLayout returns the field table of record kind's section in ABI.md
// ("### NAME (kind N"), as layout fields: reserved fields are named
// "reserved", list types spelled as vectors_test.go's layouts do.
func docLayout(t *testing.T, doc string, kind uint16) []field {
	t.Helper()
	heading := fmt.Sprintf("### %s (kind %d", NameOf(RecordKinds, kind), kind)
	i := strings.Index(doc, heading)
	if i < 0 {
		t.Fatalf("ABI.md: no section %q", heading)
	}
	section := doc[i:]
	if j := strings.Index(section[len(heading):], "\n#"); j >= 0 {
		section = section[:len(heading)+j]
	}
	types := map[string]string{"u8": "u8", "u16": "u16", "u32": "u32", "u64": "u64", "str": "str",
		`list\<str\>`: "strs", `list\<str, str\>`: "pairs", `list\<filter\>`: "filters"}
	var out []field
	for _, r := range mdTable(t, section, "| type | field |") {
		typ, ok := types[r[0]]
		if !ok {
			t.Errorf("ABI.md %s: unknown field type %q", heading, r[0])
		}
		name := "reserved"
		if !strings.HasPrefix(r[1], "reserved") {
			m := regexp.MustCompile("^`([a-z_]+)`").FindStringSubmatch(r[1])
			if m == nil {
				t.Errorf("ABI.md %s: field %q does not start with its `name`", heading, r[1])
				continue
			}
			name = m[1]
		}
		out = append(out, field{name, typ})
	}
	return out
}

// TestABIDocRecordLayouts: every record section of ABI.md lists the fields
// of vectors_test.go's layouts, which the annotated vectors check against
// the encoder: so ABI.md, the vectors and the codec agree.
func TestABIDocRecordLayouts(t *testing.T) {
	doc := readABI(t)
	for _, k := range RecordKinds {
		t.Run(k.Name, func(t *testing.T) {
			want, ok := layouts[k.Value]
			if !ok {
				t.Fatalf("vectors_test.go has no layout of record kind %d", k.Value)
			}
			if got := docLayout(t, doc, k.Value); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("ABI.md %s fields:\n %v\nlayout:\n %v", k.Name, got, want)
			}
		})
	}
}

// TestABIDocInterceptors: section 3 has a subsection per interceptor whose
// "Record:" and "Decision:" sentences agree with the table, and which
// names every field the field table lets it change.
func TestABIDocInterceptors(t *testing.T) {
	doc := readABI(t)
	for cb := Callback(0); cb < NumCallbacks; cb++ {
		if !Interceptors.Has(cb) {
			continue
		}
		info := Callbacks[cb]
		heading := "#### `" + info.Export + "`\n"
		i := strings.Index(doc, heading)
		if i < 0 {
			t.Errorf("ABI.md has no subsection %q", strings.TrimSpace(heading))
			continue
		}
		body := doc[i+len(heading):]
		if j := regexp.MustCompile(`\n##`).FindStringIndex(body); j != nil {
			body = body[:j[0]]
		}
		if m := regexp.MustCompile(`Record: ([A-Z]+)`).FindStringSubmatch(body); m == nil || m[1] != recordName(info.Record) {
			t.Errorf("%s: ABI.md's Record: sentence %v, the table %s", info.Export, m, recordName(info.Record))
		}
		loc := regexp.MustCompile(`Decision:\s+`).FindStringIndex(body)
		if loc == nil {
			t.Errorf("%s: no Decision: sentence", info.Export)
			continue
		}
		rest := body[loc[1]:]
		if k := strings.IndexAny(rest, ".:"); k >= 0 {
			rest = rest[:k]
		}
		var ds DecisionSet
		for _, w := range regexp.MustCompile(`[A-Z]{3,}`).FindAllString(rest, -1) {
			for d, di := range Decisions {
				if di.Name == w {
					ds |= DecisionsOf(Decision(d))
				}
			}
		}
		if ds != info.Decisions {
			t.Errorf("%s: ABI.md's Decision: sentence %q, the table %b", info.Export, rest, info.Decisions)
		}
		// Every field it may change is named in its subsection.
		for f := Field(1); f < NumFields; f++ {
			if Fields[f].In.Has(cb) && !strings.Contains(body, "`"+Fields[f].Name+"`") {
				t.Errorf("%s: ABI.md's subsection does not name field %s, which it may change", info.Export, Fields[f].Name)
			}
		}
	}
}
