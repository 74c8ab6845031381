package admin_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
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

// TestOpenAPI: every route of the table is in openapi.yaml with its
// permission, and every operation of openapi.yaml is a route.
func TestOpenAPI(t *testing.T) {
	s := loadSpec(t)
	var inSpec []string
	for path, item := range s["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			key := strings.ToUpper(method) + " " + admin.Prefix + path
			inSpec = append(inSpec, key)
			perm, _ := op.(map[string]any)["x-permission"].(string)
			found := false
			for _, rt := range routesOf() {
				if rt.Method+" "+rt.Path == key {
					found = true
					if string(rt.Permission) != perm {
						t.Errorf("%s: openapi.yaml says x-permission %q, the route needs %q", key, perm, rt.Permission)
					}
				}
			}
			if !found {
				t.Errorf("openapi.yaml documents %s, which the API does not serve", key)
			}
		}
	}
	for _, rt := range routesOf() {
		if !slices.Contains(inSpec, rt.Method+" "+rt.Path) {
			t.Errorf("route %s %s is missing from openapi.yaml", rt.Method, rt.Path)
		}
	}
	sort.Strings(inSpec)
	t.Logf("%d operations", len(inSpec))
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

// checkValue checks v against schema: every key of an object is a
// declared property (unless additionalProperties), recursively.
func checkValue(t *testing.T, s, schema map[string]any, v any, where string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if schema["additionalProperties"] == true {
			return
		}
		props, _ := schema["properties"].(map[string]any)
		for k, sub := range v {
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
