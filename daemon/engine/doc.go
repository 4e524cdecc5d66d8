// Package engine is attestload's load engine: it schedules attestation cycles and delivers every finished record
// to sinks. One file per scheduling model: closed.go (every agent back to back, Workers at a time), fleet.go (every
// agent once per interval on a fixed grid) and rate.go (an open model following a Pacer, pacer.go); agentpool.go
// is the agent bookkeeping the closed and rate models share. Around them: fanout.go (bounded, non-blocking
// delivery to sinks), backoff.go (per-agent waits after failures), outage.go (verifier reachability from the
// records), progress.go (live counts and a streaming p99 for the status line) and engine.go (start, stop, drain,
// abort, counts).
//
// The engine sees only records (attestation/record) and the interfaces it defines: a Runner performs cycles, an
// Observer receives scheduler events, Sinks receive records. It must not know HTTP, TPMs, configuration files,
// PostgreSQL, Prometheus or OpenTelemetry: the composition root (package daemon) adapts the attestation client to
// Runner and the exporters satisfy Sink and Observer structurally. TestImportsOnlyRecordAndStd enforces this.
package engine
