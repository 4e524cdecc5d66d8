// Package report is the offline report: it reads results files (JSONL, one record.Record per line, in the v0 and
// the schema-1 layout) and prints the old summary tables figure for figure, followed by what they lacked
// (percentiles per phase and per request kind, the PoP session phase, verdicts, HTTP status and error classes,
// late and dropped cycles, throughput over time), as text, Markdown, JSON or a self-contained HTML page.
//
// It streams: memory does not grow with the number of records. Legacy figures are exact counters; percentiles
// come from log-linear histograms with a stated relative error; throughput buckets widen as the track grows.
//
// It reads the record layout and the run sidecar (record.RunInfo), and knows nothing of HTTP clients, Prometheus,
// OpenTelemetry, the daemon or configuration files. Threshold syntax lives in exporter/threshold.
package report
