package tracing

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/exporter/metrics"
)

var (
	descTraces = prometheus.NewDesc(metrics.NameTraces,
		"Cycle traces by tail-sampling decision: kept (exported), dropped, overflow (buffer full, never exported).",
		[]string{"decision"}, nil)
	descSpansDropped = prometheus.NewDesc(metrics.NameTraceSpansDropped,
		"Spans not exported: overflow (trace over its span bound), orphaned (ended after their trace), verdict_lost.",
		[]string{"reason"}, nil)
)

// Collector exposes the tail sampler's counts as attestload_traces_total and attestload_trace_spans_dropped_total.
// Register it on the metrics registry when tracing is enabled.
func (p *Provider) Collector() prometheus.Collector { return collector{p} }

type collector struct{ p *Provider }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- descTraces; ch <- descSpansDropped }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	for _, v := range []struct {
		d     *prometheus.Desc
		n     uint64
		label string
	}{
		{descTraces, s.TracesKept, "kept"}, {descTraces, s.TracesDropped, "dropped"},
		{descTraces, s.TracesOverflowed, "overflow"},
		{descSpansDropped, s.SpansOverflowed, "overflow"}, {descSpansDropped, s.SpansOrphaned, "orphaned"},
		{descSpansDropped, s.VerdictSpansLost, "verdict_lost"},
	} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), v.label)
	}
}
