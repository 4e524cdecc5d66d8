package dashboards

import (
	"strconv"
	"strings"
)

// Every query is restricted to the instances and runs chosen in the dashboard's variables. run_id is a label of
// attestload_run_info only (a per-series run label would multiply the series of a long soak), so the run filter
// is a set intersection on the scrape target; "and" keeps the left-hand samples as they are, native histograms
// included.
const (
	instanceMatcher = `instance=~"$instance"`
	runFilter       = `and on (job, instance) attestload_run_info{run_id=~"$run"}`
	rateWindow      = `[$__rate_interval]`
)

// sel is a selector of metric on the chosen instances plus extra matchers such as `phase="evidence"`.
func sel(metric string, matchers ...string) string {
	return metric + "{" + strings.Join(append([]string{instanceMatcher}, matchers...), ", ") + "}"
}

// inRun keeps the series of an instant vector whose target ran one of the chosen runs at that time.
func inRun(v string) string {
	return v + " " + runFilter
}

// rate is the per-second rate of a counter (or a histogram series) on the chosen instances and runs.
func rate(metric string, matchers ...string) string {
	return inRun("rate(" + sel(metric, matchers...) + rateWindow + ")")
}

// gauge is the current value of a gauge on the chosen instances and runs.
func gauge(metric string, matchers ...string) string {
	return inRun(sel(metric, matchers...))
}

// agg wraps v in an aggregation, by the given labels when there are any.
func agg(op, by, v string) string {
	if by == "" {
		return op + "(" + v + ")"
	}
	return op + " by (" + by + ") (" + v + ")"
}

func sum(by, v string) string { return agg("sum", by, v) }

// quantile is the q-quantile of a histogram family by the given labels. The daemon exposes classic buckets and
// native buckets; a Prometheus with native histograms enabled keeps only the native ones unless told to keep
// both, one without keeps only the classic ones. Asking for both with "or" works with either (native first,
// since it is the finer of the two).
func quantile(q float64, family, by string, matchers ...string) string {
	qs := strconv.FormatFloat(q, 'f', -1, 64)
	classicBy := "le"
	if by != "" {
		classicBy = "le, " + by
	}
	native := "histogram_quantile(" + qs + ", " + sum(by, rate(family, matchers...)) + ")"
	classic := "histogram_quantile(" + qs + ", " + sum(classicBy, rate(family+"_bucket", matchers...)) + ")"
	return native + " or " + classic
}

// heatmapBuckets is the bucket distribution of a histogram family for a heatmap panel, native or classic (see
// quantile for why both).
func heatmapBuckets(family string, matchers ...string) string {
	return sum("", rate(family, matchers...)) + " or " + sum("le", rate(family+"_bucket", matchers...))
}

// ratio is numerator/denominator, both sums of counter rates; an idle denominator gives no point, not NaN.
func ratio(num, den string) string {
	return "(" + num + ") / (" + den + " > 0)"
}
