package threshold

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/attestload/attestload/internal/suggest"
)

// Op is a comparison operator.
type Op string

// The operators a threshold may use.
const (
	Less         Op = "<"
	LessEqual    Op = "<="
	Greater      Op = ">"
	GreaterEqual Op = ">="
	Equal        Op = "=="
)

// Kind says what a metric measures, which decides the units its threshold value may carry.
type Kind int

// Metric kinds.
const (
	Duration Kind = iota // seconds; the value carries a unit (2s, 150ms, 1m30s); a bare number other than 0 is refused
	Count                // a plain non-negative number
	Rate                 // events per second, a plain number
	Ratio                // a fraction in [0, 1], or a percentage such as 99.9%
)

// Phases whose latency statistics can be thresholded; "verdict" is the time from evidence accepted to verdict.
var Phases = []string{"session", "negotiate", "evidence", "cycle", "verdict"}

// Stats available for every phase, with their kinds.
var Stats = []struct {
	Name string
	Kind Kind
}{
	{"p50", Duration}, {"p90", Duration}, {"p99", Duration}, {"p99.9", Duration}, {"max", Duration},
	{"avg", Duration}, {"count", Count}, {"rate", Rate},
}

// Extra lists the metrics that are not "<phase>.<stat>".
var Extra = []struct {
	Name string
	Kind Kind
}{
	{"verdict.pass_rate", Ratio}, {"cycles.fail_rate", Ratio}, {"http.error_rate", Ratio},
	{"cycles.dropped", Count}, {"cycles.late_rate", Ratio},
}

// Names returns every metric name a threshold may use, in a stable order.
func Names() []string {
	var out []string
	for _, p := range Phases {
		for _, s := range Stats {
			out = append(out, p+"."+s.Name)
		}
	}
	for _, e := range Extra {
		out = append(out, e.Name)
	}
	return out
}

// KindOf returns the kind of a metric, or an error naming the metric when it is unknown.
func KindOf(metric string) (Kind, error) {
	for _, e := range Extra {
		if e.Name == metric {
			return e.Kind, nil
		}
	}
	if phase, stat, ok := strings.Cut(metric, "."); ok {
		for _, p := range Phases {
			if p != phase {
				continue
			}
			for _, s := range Stats {
				if s.Name == stat {
					return s.Kind, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("unknown metric %q%s (known: %s)", metric, didYouMean(metric), MetricsHelp)
}

// MetricsHelp lists the metric names, for --help and errors.
var MetricsHelp = func() string {
	stats := make([]string, len(Stats))
	for i, s := range Stats {
		stats[i] = s.Name
	}
	extra := make([]string, len(Extra))
	for i, e := range Extra {
		extra[i] = e.Name
	}
	return fmt.Sprintf("<phase>.<stat> with phase in %s and stat in %s; and %s", strings.Join(Phases, "|"),
		strings.Join(stats, ", "), strings.Join(extra, ", "))
}()

// didYouMean suggests the metric name nearest to a mistyped one (one or two characters off).
func didYouMean(metric string) string {
	best, d := suggest.Nearest(metric, Names())
	if d < 0 || d > 2 {
		return ""
	}
	return fmt.Sprintf(", did you mean %q?", best)
}

// Threshold is one parsed expression.
type Threshold struct {
	Expr   string  `json:"expr"`   // as written, trimmed
	Metric string  `json:"metric"` // e.g. evidence.p99
	Op     Op      `json:"op"`
	Value  float64 `json:"value"` // in the metric's base unit: seconds, a count, per second, or a fraction
	Kind   Kind    `json:"-"`
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("invalid threshold")

// Parse parses an expression such as `evidence.p99<2s`.
func Parse(expr string) (Threshold, error) {
	t := Threshold{Expr: strings.TrimSpace(expr)}
	fail := func(format string, args ...any) (Threshold, error) {
		return Threshold{}, fmt.Errorf("%w %q: %s", ErrSyntax, t.Expr, fmt.Sprintf(format, args...))
	}
	i := strings.IndexAny(t.Expr, "<>=!")
	if i < 0 {
		return fail("no comparison operator (use one of < <= > >= ==)")
	}
	opEnd := i + 1
	for opEnd < len(t.Expr) && strings.IndexByte("<>=!", t.Expr[opEnd]) >= 0 {
		opEnd++
	}
	switch op := Op(t.Expr[i:opEnd]); op {
	case Less, LessEqual, Greater, GreaterEqual, Equal:
		t.Op = op
	default:
		return fail("unknown operator %q (use one of < <= > >= ==)", string(op))
	}
	t.Metric = strings.TrimSpace(t.Expr[:i])
	if t.Metric == "" {
		return fail("no metric before the operator")
	}
	kind, err := KindOf(t.Metric)
	if err != nil {
		return fail("%v", err)
	}
	t.Kind = kind
	raw := strings.TrimSpace(t.Expr[opEnd:])
	if raw == "" {
		return fail("no value after the operator")
	}
	v, err := parseValue(raw, kind)
	if err != nil {
		return fail("%s: %v", t.Metric, err)
	}
	t.Value = v
	return t, nil
}

func parseValue(raw string, kind Kind) (float64, error) {
	if v, err := strconv.ParseFloat(raw, 64); err == nil && kind == Duration && v != 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
		// "evidence.p99<2": seconds or milliseconds? A unit says which.
		return 0, fmt.Errorf("value %q has no unit: write e.g. %ss or %sms", raw, raw, raw)
	}
	if v, err := strconv.ParseFloat(raw, 64); err == nil {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("value %q is not a finite number", raw)
		}
		if v < 0 {
			return 0, fmt.Errorf("value %q is negative", raw)
		}
		if kind == Ratio && v > 1 {
			return 0, fmt.Errorf("value %q is a ratio above 1 (write 0.999 or 99.9%%)", raw)
		}
		return v, nil
	}
	switch kind {
	case Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return 0, fmt.Errorf("value %q is not a duration (e.g. 2s, 150ms, 1m30s)", raw)
		}
		if d < 0 {
			return 0, fmt.Errorf("value %q is negative", raw)
		}
		return d.Seconds(), nil
	case Ratio:
		if p, ok := strings.CutSuffix(raw, "%"); ok {
			// Shifting the exponent keeps 99.9% exactly as close to 0.999 as a division by 100 would not.
			v, err := strconv.ParseFloat(strings.TrimSpace(p)+"e-2", 64)
			if err == nil && v >= 0 && v <= 1 {
				return v, nil
			}
		}
		return 0, fmt.Errorf("value %q is not a ratio (e.g. 0.999 or 99.9%%)", raw)
	case Count:
		return 0, fmt.Errorf("value %q is not a plain number (this metric is a count)", raw)
	default:
		return 0, fmt.Errorf("value %q is not a plain number (this metric is per second)", raw)
	}
}

// ParseAll parses several expressions, reporting every bad one.
func ParseAll(exprs []string) ([]Threshold, error) {
	var out []Threshold
	var errs []error
	for _, e := range exprs {
		t, err := Parse(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

// Source looks a metric up by name. ok is false when the run has no data for it (no evidence phase at all, no
// verdicts observed, dropped cycles not recorded).
type Source interface {
	Metric(name string) (value float64, ok bool)
}

// Result is a threshold with the value it was judged on.
type Result struct {
	Threshold
	Actual    float64 `json:"actual"`
	Available bool    `json:"available"` // false: no data, which counts as crossed
	Passed    bool    `json:"passed"`
}

// Evaluate judges every threshold against src. A metric without data crosses its threshold: a check that could
// not be made must not read as a pass.
func Evaluate(ts []Threshold, src Source) []Result {
	out := make([]Result, 0, len(ts))
	for _, t := range ts {
		r := Result{Threshold: t}
		r.Actual, r.Available = src.Metric(t.Metric)
		r.Passed = r.Available && compare(r.Actual, t.Op, t.Value)
		out = append(out, r)
	}
	return out
}

func compare(a float64, op Op, b float64) bool {
	switch op {
	case Less:
		return a < b
	case LessEqual:
		return a <= b
	case Greater:
		return a > b
	case GreaterEqual:
		return a >= b
	case Equal:
		return a == b
	}
	return false
}

// AnyCrossed reports whether any result did not pass.
func AnyCrossed(rs []Result) bool {
	for _, r := range rs {
		if !r.Passed {
			return true
		}
	}
	return false
}

// Format renders a value of the given kind for people: durations with a unit, ratios as percentages.
func Format(v float64, kind Kind) string {
	switch kind {
	case Duration:
		unit, scale := "s", 1.0
		switch a := math.Abs(v); {
		case a == 0:
		case a < 1e-6:
			unit, scale = "ns", 1e9
		case a < 1e-3:
			unit, scale = "µs", 1e6
		case a < 1:
			unit, scale = "ms", 1e3
		}
		return strconv.FormatFloat(v*scale, 'g', 4, 64) + unit
	case Ratio:
		return strconv.FormatFloat(v*100, 'g', 6, 64) + "%"
	case Rate:
		return strconv.FormatFloat(v, 'g', 6, 64) + "/s"
	default:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
}

// String renders a result as one line, e.g. `passed   evidence.p99<2s (actual 1.2s)`.
func (r Result) String() string {
	status := "passed "
	if !r.Passed {
		status = "crossed"
	}
	actual := "no data"
	if r.Available {
		actual = "actual " + Format(r.Actual, r.Kind)
	}
	return fmt.Sprintf("%s  %s (%s)", status, r.Expr, actual)
}
