// Package daemon assembles and runs a load run: it loads and validates the run configuration, enrolls the agents,
// builds the attestation client (or the in-process simulated verifier), opens the results file, puts the verdict
// watcher in front of the sinks, hands all of it to the engine (daemon/engine) and undoes it in order on Close.
//
// The scheduling itself (closed, fleet and rate models, fan-out, drain) lives in daemon/engine, which knows
// nothing of HTTP, TPMs, PostgreSQL, Prometheus or OpenTelemetry; Setup adapts the attestation client to the
// engine's Runner. Setup also puts the verdict watcher in front of the sinks, with the source that verdict.source
// resolves to (the in-process simulator, the verifier's database, its admin API or none), so that every record
// reaches the results file, the metrics and the traces with its verdict. Metrics, tracing and PostgreSQL sampling
// are built by the command and handed in as engine options and SetupOptions.
package daemon
