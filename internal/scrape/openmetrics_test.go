package scrape

import (
	"testing"
)

func TestOpenMetrics(t *testing.T) {
	const good = `# HELP a_seconds A histogram.
# TYPE a_seconds histogram
a_seconds_bucket{le="0.1"} 1
a_seconds_bucket{le="+Inf"} 2
a_seconds_sum 0.3
a_seconds_count 2
# HELP b Calls "so far".
# TYPE b counter
b_total{k="x\"y\\z\n",l="2"} 5
# TYPE c gauge
c NaN
# TYPE d summary
d{quantile="0.5"} 1e-05
d_sum 1
d_count 3
# EOF
`
	fams, err := OpenMetrics([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if b := fams["b"]; b == nil || b.Type != "counter" || b.Help != `Calls "so far".` || len(b.Samples) != 1 ||
		b.Samples[0].Labels["k"] != "x\"y\\z\n" || b.Samples[0].Value != 5 {
		t.Errorf("family b = %+v", b)
	}
	if len(fams) != 4 || len(fams["a_seconds"].Samples) != 4 || len(fams["d"].Samples) != 3 {
		t.Errorf("families %v", fams)
	}

	for _, tt := range []struct{ name, in, want string }{
		{"no EOF", "# TYPE c gauge\nc 1\n", `openmetrics: does not end with "# EOF" and a newline`},
		{"no type", "c 1\n# EOF\n", `openmetrics line 1 "c 1": sample c outside a family with a # TYPE that allows it`},
		{"counter without _total", "# TYPE b counter\nb 1\n# EOF\n", `openmetrics line 2 "b 1": sample b outside a family with a # TYPE that allows it`},
		{"bucket without le", "# TYPE h histogram\nh_bucket 1\n# EOF\n", `openmetrics line 2 "h_bucket 1": bucket without an le label`},
		{"family twice", "# TYPE c gauge\nc 1\n# TYPE e gauge\ne 1\n# TYPE c gauge\n# EOF\n", `openmetrics line 5 "# TYPE c gauge": family c declared again, apart from its first lines`},
		{"bad value", "# TYPE c gauge\nc one\n# EOF\n", `openmetrics line 2 "c one": value "one": strconv.ParseFloat: parsing "one": invalid syntax`},
		{"bad escape", "# TYPE c gauge\nc{a=\"\\t\"} 1\n# EOF\n", `openmetrics line 2 "c{a=\"\\t\"} 1": bad escape \t`},
		{"negative counter", "# TYPE b counter\nb_total -1\n# EOF\n", `openmetrics line 2 "b_total -1": counter value -1`},
		{"unknown type", "# TYPE c gauges\n# EOF\n", `openmetrics line 1 "# TYPE c gauges": unknown type "gauges"`},
		{"after EOF", "# TYPE c gauge\n# EOF\nc 1\n", `openmetrics: does not end with "# EOF" and a newline`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenMetrics([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v\nwant    %s", err, tt.want)
			}
		})
	}
}
