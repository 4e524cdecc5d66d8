package threshold

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		expr   string
		metric string
		op     Op
		value  float64
	}{
		{"evidence.p99<2s", "evidence.p99", Less, 2},
		{" evidence.p99 < 150ms ", "evidence.p99", Less, 0.15},
		{"cycle.p99.9<=1m30s", "cycle.p99.9", LessEqual, 90},
		{"session.max<1.5s", "session.max", Less, 1.5},
		{"session.max<0", "session.max", Less, 0},
		{"verdict.pass_rate>0.999", "verdict.pass_rate", Greater, 0.999},
		{"verdict.pass_rate>=99.9%", "verdict.pass_rate", GreaterEqual, 0.999},
		{"cycles.dropped==0", "cycles.dropped", Equal, 0},
		{"negotiate.count>=5", "negotiate.count", GreaterEqual, 5},
		{"cycle.rate>10.5", "cycle.rate", Greater, 10.5},
		{"verdict.p50<3µs", "verdict.p50", Less, 3e-6},
	} {
		got, err := Parse(c.expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		if got.Metric != c.metric || got.Op != c.op || got.Value != c.value {
			t.Errorf("Parse(%q) = %+v, want %s %s %v", c.expr, got, c.metric, c.op, c.value)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for expr, want := range map[string]string{
		"evidence.p98<2s":       `unknown metric "evidence.p98"`,
		"foo<2":                 `unknown metric "foo"`,
		"evidence.p99":          "no comparison operator",
		"evidence.p99!=2s":      `unknown operator "!="`,
		"evidence.p99=2s":       `unknown operator "="`,
		"<2s":                   "no metric",
		"evidence.p99<":         "no value",
		"evidence.p99<fast":     `"fast" is not a duration`,
		"evidence.p99<-2s":      "negative",
		"cycles.dropped<5s":     "is a count",
		"verdict.pass_rate>2":   "ratio above 1",
		"verdict.pass_rate>x%":  "not a ratio",
		"cycle.rate>3ms":        "per second",
		"evidence.p99<NaN":      "not a finite number",
		"evidence.p99<2":        `value "2" has no unit: write e.g. 2s or 2ms`,
		"evidnce.p99<2s":        `did you mean "evidence.p99"?`,
		"http.error_rate<=101%": "not a ratio",
	} {
		_, err := Parse(expr)
		if err == nil {
			t.Errorf("Parse(%q): no error, want one containing %q", expr, want)
			continue
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an ErrSyntax containing %q", expr, err, want)
		}
	}
}

func TestEveryNameParses(t *testing.T) {
	for _, n := range Names() {
		if _, err := Parse(n + ">=0"); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

type source map[string]float64

func (s source) Metric(name string) (float64, bool) { v, ok := s[name]; return v, ok }

func TestEvaluate(t *testing.T) {
	ts, err := ParseAll([]string{"evidence.p99<2s", "evidence.max<=1s", "verdict.pass_rate>0.999", "cycles.dropped==0",
		"cycle.count>=3"})
	if err != nil {
		t.Fatal(err)
	}
	rs := Evaluate(ts, source{"evidence.p99": 1.2, "evidence.max": 1.0, "verdict.pass_rate": 0.99, "cycle.count": 3})
	want := []bool{true, true, false, false, true}
	for i, r := range rs {
		if r.Passed != want[i] {
			t.Errorf("%s: passed=%v, want %v", r.Expr, r.Passed, want[i])
		}
	}
	if !AnyCrossed(rs) || AnyCrossed(rs[:2]) {
		t.Error("AnyCrossed disagrees with the results")
	}
	if s := rs[3].String(); s != "crossed  cycles.dropped==0 (no data)" {
		t.Errorf("String() = %q", s)
	}
	if s := rs[0].String(); s != "passed   evidence.p99<2s (actual 1.2s)" {
		t.Errorf("String() = %q", s)
	}
	if s := rs[2].String(); s != "crossed  verdict.pass_rate>0.999 (actual 99%)" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseAllJoinsErrors(t *testing.T) {
	_, err := ParseAll([]string{"a<1", "evidence.p99<2s", "b<1"})
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("ParseAll error %v must name both bad metrics", err)
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		kind Kind
		want string
	}{
		{0.9145507, Duration, "914.6ms"}, {1.2, Duration, "1.2s"}, {3e-9, Duration, "3ns"}, {4.5e-5, Duration, "45µs"},
		{7200, Duration, "7200s"}, {0, Duration, "0s"}, {0.951923, Ratio, "95.1923%"}, {12.5, Rate, "12.5/s"}, {7, Count, "7"},
	} {
		if got := Format(c.v, c.kind); got != c.want {
			t.Errorf("Format(%v, %d) = %q, want %q", c.v, c.kind, got, c.want)
		}
	}
}
