// Package tracing turns attestation cycles into OpenTelemetry traces and exports them over OTLP.
//
// One trace per cycle: a root span ("attestation.cycle"), a child per phase ("attestation.session",
// "attestation.negotiate", "attestation.evidence"), and an HTTP client span per request from otelhttp, which also
// sends the W3C traceparent to the verifier. The X-Request-ID of each request is recorded on its HTTP span so a span
// can be matched with the verifier's log lines.
//
// Sampling is decided when a cycle ends, by a tail-sampling span processor: every failed cycle, every cycle slower
// than the threshold, and a ratio of the ordinary ones are exported; all other spans are dropped. The buffer of
// unfinished traces is bounded (traces and spans per trace) and overflow is counted. A record carries a trace_id
// only when its trace was exported, so every exemplar leads to a trace that exists.
//
// This package must not know the daemon, Prometheus label sets or configuration files. It satisfies the
// attestation client's Hooks interface structurally; the client itself knows nothing of OpenTelemetry.
package tracing
