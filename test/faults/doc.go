// Package faults is attestload's fault suite: it runs the real binary against a simulated verifier that misbehaves
// on purpose (killed and restarted, stalling, answering 5xx, truncated, invalid, mistyped, trickled or huge
// bodies), against a PostgreSQL that restarts, with a results directory that fills up or turns read-only, under
// SIGINT, SIGTERM, double signals and kill -9, and with bad configuration and bad files. Every scenario checks what
// a user would check: the exit code, the JSONL, the /metrics counters against the JSONL, file descriptors, and the
// verifier's database left as it was found. docs/faults.md is the table of what is injected and what the tool does.
//
// The package holds tests only (the harness is in test/faults/harness). It must not import the daemon or the
// command: the binary is the thing under test. The one exception is the verdict watcher and the PostgreSQL
// activity sampler, which are also driven in-process across a database restart, so that goleak can check that
// nothing is left running after Close.
//
// The scenarios take minutes, so they run only with ATTESTLOAD_FAULTS=1 (make faults sets it; make test skips
// them). Tests that restart the shared PostgreSQL cluster run only with
// ATTESTLOAD_FAULTS_PG_RESTART=1 (make faults and .ci/run set it).
package faults
