// Package daemon is the load engine of attestload: it loads and validates the run configuration, schedules
// attestation cycles (closed, fleet and rate models), fans every finished record out to sinks, and owns the run's
// lifecycle (stop on signal or deadline, bounded drain, abort of what is left).
//
// It drives cycles through the small Runner interface and delivers records through Sink and EngineObserver, which
// the exporter packages satisfy structurally without importing daemon. The engine itself knows nothing of HTTP,
// TPMs, PostgreSQL, Prometheus or OpenTelemetry; the assembly of a real run (Setup) is the only place that names
// the attestation packages. Setup also puts the verdict watcher in front of the sinks, with the source that
// verdict.source resolves to (the in-process simulator, the verifier's database, its admin API or none), so that
// every record reaches the results file, the metrics and the traces with its verdict. Metrics, tracing and
// PostgreSQL sampling are built by the command and handed in as options.
package daemon
