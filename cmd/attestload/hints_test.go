package main

import (
	"net"
	"strings"
	"testing"

	"github.com/attestload/attestload/internal/pgtest"
)

// A run in which every cycle fails (here: nothing listens at verifier.url) does not look like a success: it exits 1
// with a line saying so, after the summary and the first error's warning and hint.
func TestEveryCycleFailedExits1(t *testing.T) {
	dbURL := pgtest.NewKeylimeDatabase(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, out, stderr := runMain(t, "run", "https://"+addr, dbURL, "-a", "2", "-w", "2", "-t", "2",
		"--profile", "quote-only", "--results-dir", t.TempDir(), "--key-pool", keyPoolArg())
	if code != 1 || !strings.Contains(stderr, "attestload: every cycle failed (4 failed, none succeeded)") {
		t.Errorf("exit %d, stderr:\n%s\nwant 1 and the every-cycle-failed line", code, stderr)
	}
	if !strings.Contains(out, "TEST RESULT SUMMARY") {
		t.Errorf("no summary:\n%s", out)
	}
}

// The rate model's dropped ticks and a fleet run shorter than its interval are said after the summary.
func TestRunHints(t *testing.T) {
	fastSim(t)
	_, _, stderr := runMain(t, "run", "--model", "rate", "--rate-start", "200", "--rate-stages", "1s:200", "-a", "1",
		"-w", "1", "--profile", "quote-only", "--results-dir", t.TempDir(), "--key-pool", keyPoolArg())
	if !strings.Contains(stderr, "the rate model dropped") || !strings.Contains(stderr, "raise --agents (now 1)") {
		t.Errorf("rate model with 1 agent at 200/s: no dropped-ticks hint:\n%s", stderr)
	}
	// Agent 0 is due at the start (no jitter), agent 1 half an interval later, after the run.
	t.Setenv("ATTESTLOAD_SCHEDULER_FLEET_JITTER", "0")
	_, _, stderr = runMain(t, "run", "--model", "fleet", "--interval", "1m", "--duration", "1s", "-a", "2",
		"--profile", "quote-only", "--results-dir", t.TempDir(), "--key-pool", keyPoolArg())
	if !strings.Contains(stderr, "each agent attested at most 1 time(s)") {
		t.Errorf("1 s fleet run at 1 m: no hint:\n%s", stderr)
	}
}
