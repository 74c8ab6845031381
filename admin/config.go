package admin

import (
	"net/http"
	"reflect"
	"strings"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// brokerConfig: GET /api/v1/broker/config: the configuration in effect as
// JSON, keyed as the file is, secrets as "REDACTED".
func (a *API) brokerConfig(_ http.ResponseWriter, _ *request) (int, any, error) {
	return http.StatusOK, configJSON(reflect.ValueOf(a.o.Broker.Config()).Elem()), nil
}

// configJSON returns v as JSON values keyed by the yaml tags of its
// fields; a field tagged secret:"true" becomes config.Redacted when set.
// Durations and byte sizes are written as the file writes them ("10s",
// "1MiB").
func configJSON(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return configJSON(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			if f.Tag.Get("secret") == "true" {
				if v.Field(i).String() != "" {
					out[name] = config.Redacted
				} else {
					out[name] = ""
				}
				continue
			}
			out[name] = configJSON(v.Field(i))
		}
		return out
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range v.Len() {
			out[i] = configJSON(v.Index(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[k.String()] = configJSON(v.MapIndex(k))
		}
		return out
	}
	if s, ok := v.Interface().(interface{ String() string }); ok && v.Kind() != reflect.String {
		return s.String()
	}
	return v.Interface()
}
