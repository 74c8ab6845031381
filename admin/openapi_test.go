package admin_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/propolis-mqtt/propolis/admin"
)

// The OpenAPI document (openapi.yaml) against the API: TestOpenAPI checks
// that it lists exactly the routes of the route table, with their
// permissions; and every answer any test of this package gets passes
// through checkAnswer (rig.req), which fails the test on a status code the
// document does not list for the route or a JSON key its schema lacks.

// spec is openapi.yaml, decoded once.
var spec = sync.OnceValues(func() (map[string]any, error) {
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return v, nil
})

// loadSpec returns the spec or fails the test.
func loadSpec(t *testing.T) map[string]any {
	t.Helper()
	s, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seen holds every place of an answer's schema some test got a key at
// ("GET /clients/{id} 200.subscriptions[].filter"), for TestMain.
var seen sync.Map

// TestMain runs the tests and then, when every test ran and passed,
// fails on a property of a 2xx answer in openapi.yaml that no answer
// held: a field the spec promises and the API never sends.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && flag.Lookup("test.skip").Value.String() == "" {
		if missing := unsent(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "openapi.yaml documents answer fields no test received (the API never sends them, or no test covers them):\n  %s\n",
				strings.Join(missing, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

// unsent lists the properties of 2xx answers in openapi.yaml not in seen.
func unsent() []string {
	s, err := spec()
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	var walk func(schema map[string]any, where string)
	walk = func(schema map[string]any, where string) {
		schema = resolve(s, schema)
		if items, ok := schema["items"].(map[string]any); ok {
			walk(items, where+"[]")
		}
		if schema["additionalProperties"] == true {
			return
		}
		props, _ := schema["properties"].(map[string]any)
		for k, sub := range props {
			if _, ok := seen.Load(where + "." + k); !ok {
				out = append(out, where+"."+k)
				continue
			}
			walk(sub.(map[string]any), where+"."+k)
		}
	}
	for path, item := range s["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			resps, _ := op.(map[string]any)["responses"].(map[string]any)
			for code, r := range resps {
				if !strings.HasPrefix(code, "2") {
					continue
				}
				content, _ := resolve(s, r.(map[string]any))["content"].(map[string]any)
				media, _ := content["application/json"].(map[string]any)
				if media == nil {
					continue
				}
				walk(media["schema"].(map[string]any), strings.ToUpper(method)+" "+path+" "+code)
			}
		}
	}
	sort.Strings(out)
	return out
}

// mountRecorder is the mux TestOpenAPI mounts the API on: it records
// every pattern Mount registers and serves them from a real ServeMux.
type mountRecorder struct {
	*http.ServeMux
	patterns []string
}

// Handle records pattern and registers it.
func (m *mountRecorder) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// noPermission pins the routes that need no permission: login (public,
// no authentication), and logout and me (any authenticated caller). A
// route added without a permission fails TestOpenAPI until it is named
// here.
var noPermission = map[string]bool{"POST /api/v1/login": true, "POST /api/v1/logout": true, "GET /api/v1/me": true}

// TestOpenAPI: every pattern Mount registers is an operation of
// openapi.yaml, or answers a JSON 405 (other methods of a path) or 404
// (the catch-all); every operation of openapi.yaml is mounted; each route
// has its permission as x-permission, login alone is x-public, and the
// routes without a permission are exactly noPermission.
func TestOpenAPI(t *testing.T) {
	s := loadSpec(t)
	ops := map[string]map[string]any{}
	for path, item := range s["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			ops[strings.ToUpper(method)+" "+admin.Prefix+path] = op.(map[string]any)
		}
	}
	m := &mountRecorder{ServeMux: http.NewServeMux()}
	admin.New(admin.Options{}).Mount(m)
	mounted := map[string]bool{}
	for _, p := range m.patterns {
		mounted[p] = true
		if ops[p] != nil {
			continue
		}
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "GET", p+"no/such/route"
		}
		path = strings.ReplaceAll(path, "{id}", "x")
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(method, "http://127.0.0.1"+path, nil))
		if want := map[bool]int{true: 405, false: 404}[ok]; rec.Code != want {
			t.Errorf("Mount registers %q, which openapi.yaml lacks, and it answers %d (want %d): %s", p, rec.Code, want, rec.Body)
		}
	}
	for key := range ops {
		if !mounted[key] {
			t.Errorf("openapi.yaml documents %s, which Mount does not register", key)
		}
	}
	for _, rt := range routesOf() {
		key := rt.Method + " " + rt.Path
		op := ops[key]
		if op == nil {
			t.Errorf("route %s is missing from openapi.yaml", key)
			continue
		}
		perm, _ := op["x-permission"].(string)
		if string(rt.Permission) != perm {
			t.Errorf("%s: openapi.yaml says x-permission %q, the route needs %q", key, perm, rt.Permission)
		}
		if public, _ := op["x-public"].(bool); public != rt.Public {
			t.Errorf("%s: openapi.yaml says x-public %v, the route %v", key, public, rt.Public)
		}
		if (rt.Permission == "") != noPermission[key] {
			t.Errorf("%s: permission %q; the routes without one are pinned in noPermission", key, rt.Permission)
		}
	}
	t.Logf("%d operations, %d patterns mounted", len(ops), len(m.patterns))
}

// operation returns the spec's operation for method and a request path
// (escaped, without query), or nil.
func operation(s map[string]any, method, reqPath string) (string, map[string]any) {
	rel, ok := strings.CutPrefix(reqPath, admin.Prefix)
	if !ok {
		return "", nil
	}
	got := strings.Split(rel, "/")
	var best string
	var bestOp map[string]any
	bestLiteral := -1
	for path, item := range s["paths"].(map[string]any) {
		want := strings.Split(path, "/")
		if len(want) != len(got) {
			continue
		}
		literal, match := 0, true
		for i := range want {
			switch {
			case strings.HasPrefix(want[i], "{"):
			case want[i] == got[i]:
				literal++
			default:
				match = false
			}
		}
		op, ok := item.(map[string]any)[strings.ToLower(method)].(map[string]any)
		if match && ok && literal > bestLiteral {
			best, bestOp, bestLiteral = path, op, literal
		}
	}
	return best, bestOp
}

// resolve follows a $ref of the spec.
func resolve(s map[string]any, v map[string]any) map[string]any {
	for {
		ref, ok := v["$ref"].(string)
		if !ok {
			return v
		}
		var cur any = s
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		v = cur.(map[string]any)
	}
}

// checkAnswer fails t when the spec does not list code for the route of
// method reqPath, or when body (JSON) holds a key the schema lacks.
func checkAnswer(t *testing.T, method, reqPath string, code int, contentType string, body []byte) {
	t.Helper()
	s := loadSpec(t)
	path, op := operation(s, method, reqPath)
	if op == nil {
		if code != 404 && code != 405 {
			t.Errorf("%s %s answered %d but is not in openapi.yaml", method, reqPath, code)
		}
		return
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(code)].(map[string]any)
	if !ok {
		t.Errorf("%s %s answered %d, which openapi.yaml does not list for %s: %s", method, reqPath, code, path, body)
		return
	}
	resp = resolve(s, resp)
	content, _ := resp["content"].(map[string]any)
	if len(body) == 0 {
		if content != nil {
			t.Errorf("%s %s %d: empty body, openapi.yaml says %v", method, reqPath, code, content)
		}
		return
	}
	if !strings.HasPrefix(contentType, "application/json") {
		if content[contentType] == nil {
			t.Errorf("%s %s %d: content type %q not in openapi.yaml", method, reqPath, code, contentType)
		}
		return
	}
	media, _ := content["application/json"].(map[string]any)
	if media == nil {
		t.Errorf("%s %s %d: JSON body, openapi.yaml documents none: %s", method, reqPath, code, body)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %s %d: %v", method, reqPath, code, err)
		return
	}
	checkValue(t, s, resolve(s, media["schema"].(map[string]any)), v, method+" "+path+" "+strconv.Itoa(code))
}

// checkRequest fails t when a request the API accepted (code below 400)
// is not what openapi.yaml documents: a query parameter it does not
// declare for the operation, or a JSON body key or type its requestBody
// schema lacks.
func checkRequest(t *testing.T, method string, u *url.URL, contentType string, body []byte, code int) {
	t.Helper()
	if code >= 400 {
		return
	}
	s := loadSpec(t)
	path, op := operation(s, method, u.EscapedPath())
	if op == nil {
		return
	}
	declared := map[string]bool{}
	params, _ := op["parameters"].([]any)
	for _, p := range params {
		p := resolve(s, p.(map[string]any))
		if p["in"] == "query" {
			declared[p["name"].(string)] = true
		}
	}
	for k := range u.Query() {
		if !declared[k] {
			t.Errorf("%s %s: query parameter %q is not in openapi.yaml", method, path, k)
		}
	}
	if len(body) == 0 {
		return
	}
	rb, _ := op["requestBody"].(map[string]any)
	if rb == nil {
		t.Errorf("%s %s: a request body, openapi.yaml documents none", method, path)
		return
	}
	media, _ := resolve(s, rb)["content"].(map[string]any)["application/json"].(map[string]any)
	var v any
	if media == nil || !strings.HasPrefix(contentType, "application/json") || json.Unmarshal(body, &v) != nil {
		t.Errorf("%s %s: accepted a body openapi.yaml does not describe (%s): %s", method, path, contentType, body)
		return
	}
	checkValue(t, s, resolve(s, media["schema"].(map[string]any)), v, method+" "+path+" request")
}

// checkValue checks v against schema: its type (nullable allowing null),
// and every key of an object is a declared property (unless
// additionalProperties), recursively.
func checkValue(t *testing.T, s, schema map[string]any, v any, where string) {
	t.Helper()
	if typ, ok := schema["type"].(string); ok {
		good := false
		switch v := v.(type) {
		case nil:
			good = schema["nullable"] == true
		case string:
			good = typ == "string"
		case bool:
			good = typ == "boolean"
		case float64:
			good = typ == "number" || (typ == "integer" && v == float64(int64(v)))
		case []any:
			good = typ == "array"
		case map[string]any:
			good = typ == "object"
		}
		if !good {
			t.Errorf("%s: %v (%T) is not of openapi.yaml's type %s", where, v, v, typ)
			return
		}
	}
	switch v := v.(type) {
	case map[string]any:
		if schema["additionalProperties"] == true {
			return
		}
		props, _ := schema["properties"].(map[string]any)
		for k, sub := range v {
			seen.Store(where+"."+k, true)
			p, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("%s: key %q is not in openapi.yaml's schema", where, k)
				continue
			}
			checkValue(t, s, resolve(s, p), sub, where+"."+k)
		}
	case []any:
		items, ok := schema["items"].(map[string]any)
		if !ok {
			t.Errorf("%s: a list, openapi.yaml says %v", where, schema["type"])
			return
		}
		for _, e := range v {
			checkValue(t, s, resolve(s, items), e, where+"[]")
		}
	}
}
