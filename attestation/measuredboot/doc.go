// Package measuredboot reads TCG2 (crypto-agile) UEFI event logs and replays them to PCR values the way
// tpm2_eventlog, the parser the Keylime verifier runs, computes them; and it carries a captured log with its
// measured-boot reference state, compiled into the binary, for the measured-boot profile.
//
// The replay is written here rather than taken from an event-log library: the libraries at hand verify a log
// against given PCR values and add their own workarounds for firmware bugs, while attestload must compute the
// values the verifier will expect from a log, exactly as tpm2_eventlog does.
//
// The package knows nothing of HTTP, databases, TPM keys or configuration.
package measuredboot
