// Package evidence produces the measurement side of an agent's evidence: ima-ng runtime logs with the PCR 10 value
// they imply, the matching runtime policy (allowlists.ima_policy) and PCR policy (verifiermain.tpm_policy), for three
// profiles: "ima" (a synthetic, deterministic log), "quote-only" (no IMA, fixed PCR 0 and 7) and "captured" (a real
// ima-ng log read from a file). It also parses log lines and policies and replays them, for the simulated verifier.
//
// Synthetic logs are a pure function of the entry index over a bounded universe of files, so an agent's log state is
// two values (entry count and PCR 10) no matter how long the log is; the line text is shared by every agent.
//
// The package must not know about TPM structures or keys (the caller copies PCR values into its TPM), HTTP, the
// protocol's JSON bodies, databases, configuration files or metrics.
package evidence
