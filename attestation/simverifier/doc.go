// Package simverifier is an in-process Keylime verifier that speaks the push-attestation protocol (API v3.0) the way
// the real one does: PoP sessions and bearer tokens, the attestation create/update state machine with its status
// codes, error codes and quirks, and verification of the submitted evidence (quote signature, nonce, PCR digest,
// TPM clock, PCR policy, incremental IMA replay, and measured boot: the UEFI event log replayed to PCRs 0-15 and
// compared with the quote, as the verifier's default accept-all policy does; measuredboot.go says exactly what). It exists for attestload's demo mode, for testing the client over
// real HTTP, and for fault testing: latency distributions, error rates, stalls, broken bodies and verification CPU
// cost can be injected and changed at run time.
//
// State is kept in memory per agent and stays small: enrolment data (policies are shared between agents that use
// the same JSON), the latest attestation, what the next attestation needs from the last passed one, and a short ring
// of verdicts. Optionally (Config.DatabaseURL) agents and policies are read from, and attestations, evidence items
// and sessions written to, a Keylime verifier database.
//
// Deliberate differences from the real verifier are documented where they are implemented; the main ones are:
// the measured-boot reference state is not evaluated beyond being JSON (the verifier's default policy, accept-all,
// does not evaluate it either); once an attestation is verified its submitted data,
// capabilities and certification-key echo are dropped, so the admin GET then shows stage, evaluation and data.meta
// only; attestations older than the latest are known only by their verdict (a bounded ring per agent); the IMA
// template hash (column 2) is not recomputed; and an admin bearer token (Config.AdminToken) exists for plain HTTP.
//
// This package must not know about the load engine, Prometheus, OpenTelemetry, configuration files or the client;
// it depends only on the TPM and evidence primitives of its sibling packages.
package simverifier
