package verdict

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/exporter/metrics"
)

var (
	descRecords = prometheus.NewDesc(metrics.NameVerdictRecords,
		"Records forwarded by the verdict watcher, by how: resolved, timeout, overflow (held bound reached), passthrough (nothing to wait for).",
		[]string{"result"}, nil)
	descPending = prometheus.NewDesc(metrics.NameVerdictPending,
		"Records the verdict watcher holds, waiting for their verdict.", nil, nil)
	descLookupErrors = prometheus.NewDesc(metrics.NameVerdictLookupErrors,
		"Verdict source lookups that failed.", nil, nil)
)

// Collector exposes the watcher's counts; register it on the metrics registry.
func (w *Watcher) Collector() prometheus.Collector { return collector{w} }

type collector struct{ w *Watcher }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descPending
	ch <- descLookupErrors
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	for _, v := range []struct {
		n     uint64
		label string
	}{{s.Resolved, "resolved"}, {s.TimedOut, "timeout"}, {s.Overflowed, "overflow"}, {s.Passthrough, "passthrough"}} {
		ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(v.n), v.label)
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(descLookupErrors, prometheus.CounterValue, float64(s.PollErrors))
}
