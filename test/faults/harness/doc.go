// Package harness runs the real attestload binary as a subprocess for the fault and soak suites: it builds the
// binary once per test process, starts a simulated verifier in the test process (in PostgreSQL mode, so the
// subprocess enrolls its agents for real and the verifier finds them), sends signals, and reads back everything a
// run leaves behind: the JSONL results, the /metrics exposition, the process's memory and file descriptors, and
// the rows in the verifier's database.
//
// It is test support only. It knows the command line, the log lines and the file layouts attestload promises to
// users, and nothing of the daemon's internals: a fault test that needed an internal hook would not be testing
// what a user sees.
package harness
