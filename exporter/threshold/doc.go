// Package threshold parses pass/fail expressions over a run's summary, such as `evidence.p99<2s` or
// `verdict.pass_rate>0.999`, and evaluates them against anything that can look a metric up by name.
//
// The same syntax serves `attestload report --threshold` and the end of `attestload run`. The package knows the
// metric names and their kinds (duration, count, rate, ratio) but not how they are computed: it must not import
// the report, the daemon or any telemetry library.
package threshold
