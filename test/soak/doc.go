// Package soak runs attestload for a long time against a simulated verifier and PostgreSQL and watches its
// resident memory, threads, file descriptors and (when exposed) goroutines, failing when memory keeps growing
// after warm-up. `make soak DURATION=1h AGENTS=500` runs it; without ATTESTLOAD_SOAK_DURATION the test is skipped,
// so that `go test ./...` stays fast.
//
// It drives the real binary through test/faults/harness and must not reach into the daemon's internals.
package soak
