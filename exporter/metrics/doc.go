// Package metrics exports attestload's live view as Prometheus metrics on a dedicated registry.
//
// Record-derived series (cycles, phases, requests, retries, sessions, verdicts) are updated only in
// Observe, once per record as it is emitted, so that every counter agrees with the JSONL results file line for
// line. Scheduler series (in-flight cycles, late and dropped cycles, agents by state, target rate, schedule lag)
// come from the engine through the engine's Observer methods. Labels are closed sets; agent ids, URLs and error text
// never become label values.
//
// This package must not know the daemon, the HTTP client, OpenTelemetry or configuration files: it sees
// record.Record values and a prometheus.Registerer, nothing else. It never uses the global registry.
package metrics
