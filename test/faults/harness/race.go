//go:build race

package harness

// raceEnabled builds the binary with -race when the tests themselves run under the race detector, so that a data
// race in the daemon under faults fails the run (exit code 66) instead of passing unnoticed.
const raceEnabled = true
