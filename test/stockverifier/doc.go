// Package stockverifier runs attestload against the stock Keylime verifier, unmodified, started by
// scripts/keylime-verifier.sh from ../shared/keylime (or $ATTESTLOAD_KEYLIME_SRC) with PostgreSQL: the real binary,
// real sessions, real verification. Each case asserts from the JSONL and from the verifier's own database.
//
// The tests run under `make verifier-test` (ATTESTLOAD_KEYLIME_SUITE=1) and in CI; `go test ./...` skips them
// with a message saying how to run them. The conformance table (test/conformance) is run against the same
// verifier here.
package stockverifier
