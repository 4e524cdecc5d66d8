// Package client speaks the Keylime push-attestation protocol (API v3.0) on behalf of simulated agents and turns
// each attestation cycle into one record.Record.
//
// A cycle is: an optional proof-of-possession session (POST /sessions, PATCH /sessions/{id} with a TPM2_Certify of
// the AK over the raw nonce), negotiation (POST /agents/{id}/attestations with the agent's capabilities) and evidence
// (PATCH /agents/{id}/attestations/latest with a freshly signed quote and the new IMA entries). Failures are data:
// Cycle never returns an error, it returns a Record whose attempts, outcome and error class say what happened.
//
// Retries follow what the verifier asks for and are bounded per phase (see Cycle). Time spent sleeping between
// attempts is never part of a phase's duration, so measured latency is the verifier's, not the tool's own waiting.
//
// This package must not know about Prometheus, OpenTelemetry, configuration files or schedulers: tracing and
// metrics attach through Hooks and a caller-supplied http.RoundTripper, scheduling reads Agent.NotBefore. It must
// never put a bearer token into a Record, an error string or a log line.
package client
