package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeResults(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	line := `{"agent_index": 0, "task_index": 0, "worker_index": 0, "create_successful": true, ` +
		`"update_successful": true, "create_duration": 0.1, "update_duration": 0.2, "create_attempts": [{"action": "create", "start_time": 10, ` +
		`"end_time": 10.1, "duration": 0.1, "ok": true, "retry_after": 0}], "update_attempts": [{"action": "update", ` +
		`"start_time": 10.1, "end_time": 10.3, "duration": 0.2, "ok": true, "retry_after": 0}]}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "20250606134858.jsonl"), []byte(line+"garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runReport(t *testing.T, args ...string) (string, string, error) {
	cmd := newReportCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func TestReportCommand(t *testing.T) {
	dir := writeResults(t)
	out, stderr, err := runReport(t, "--results-dir", dir, "--legacy", "20250606134858")
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if !strings.Contains(out, "Performed 1 attestations in 0:00:00 ") || strings.Contains(out, "\x1b[") {
		t.Errorf("unexpected legacy output (colour must be off when not a terminal):\n%s", out)
	}
	if !strings.Contains(stderr, "20250606134858.jsonl:2: skipped") {
		t.Errorf("stderr must name the skipped line: %q", stderr)
	}

	_, _, err = runReport(t, "--results-dir", dir, "--strict", "20250606134858.jsonl")
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 3 {
		t.Errorf("--strict with a skipped line: err %v, want exit status 3", err)
	}

	_, _, err = runReport(t, "--results-dir", dir, "--threshold", "evidence.p99<100ms", "20250606134858")
	if !errors.As(err, &ec) || ec.ExitCode() != 99 {
		t.Errorf("crossed threshold: err %v, want exit status 99", err)
	}

	out, _, err = runReport(t, "--results-dir", dir, "--color", "always", "--legacy", "20250606134858")
	if err != nil || !strings.Contains(out, "\x1b[40;1m") {
		t.Errorf("--color always must colour the banner (err %v)", err)
	}

	for _, bad := range [][]string{{"--color", "sometimes", "x"}, {"--format", "pdf", "x"}, {"--threshold", "nope<1", "x"}} {
		_, _, err := runReport(t, append([]string{"--results-dir", dir}, bad...)...)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: got %v, want a usage error (exit status 2) naming %s", bad, err, bad[0])
		}
	}
	if got := Main([]string{"report"}, &bytes.Buffer{}, &bytes.Buffer{}); got != exitUsage {
		t.Errorf("report with no input: exit status %d, want %d", got, exitUsage)
	}
}

// Thresholds: --help lists the metric names, a crossed one gets its own line on stderr, a duration without a unit
// is refused.
func TestThresholdUsability(t *testing.T) {
	_, out, _ := runMain(t, "run", "--help")
	for _, name := range []string{"verdict.pass_rate", "cycles.late_rate", "session|negotiate|evidence|cycle|verdict", "p99.9"} {
		if !strings.Contains(out, name) {
			t.Errorf("run --help does not list %s", name)
		}
	}
	path := filepath.Join(writeResults(t), "20250606134858.jsonl")
	code, _, stderr := runMain(t, "report", path, "--threshold", "cycle.max<1ns", "--threshold", "cycle.count>=1")
	if code != 99 || strings.Count(stderr, "threshold crossed") != 1 || !strings.Contains(stderr, "cycle.max<1ns") {
		t.Errorf("exit %d, stderr:\n%s\nwant 99 and one line for the crossed threshold", code, stderr)
	}
	code, _, stderr = runMain(t, "report", path, "--threshold", "evidence.p99<2")
	if code != 2 || !strings.Contains(stderr, `value "2" has no unit`) {
		t.Errorf("evidence.p99<2: exit %d, %s", code, stderr)
	}
}
