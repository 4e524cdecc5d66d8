package main

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/report"
	"github.com/attestload/attestload/exporter/results"
)

// One definition of late: in a rate-model run (every cycle a few microseconds behind its tick), the late cycles
// counted from the records, the sidecar's late_cycles and the run's own count agree. Before, the report counted
// every record with late_seconds > 0 (18 of 18) while the run reported 9.
func TestLateFiguresAgree(t *testing.T) {
	fastSim(t)
	dir := t.TempDir()
	code, _, stderr := runMain(t, "run", "--model", "rate", "--rate-start", "20", "--rate-stages", "2s:20",
		"-a", "4", "-w", "4", "--profile", "quote-only", "--results-dir", dir, "--key-pool", keyPoolArg())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	path := onlyResults(t, dir)
	recs, _ := readJSONL(t, path)
	fromRecords := 0
	for _, r := range recs {
		if r.LateSeconds != nil && record.IsLate(*r.LateSeconds) {
			fromRecords++
		}
	}
	b, err := os.ReadFile(results.SidecarPath(path))
	if err != nil {
		t.Fatal(err)
	}
	var info record.RunInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	var s report.Summary
	code, out, stderr := runMain(t, "report", "--format", "json", path)
	if code != 0 {
		t.Fatalf("report: exit %d\n%s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, late: records %d, sidecar %d, report %d of %d", len(recs), fromRecords, info.LateCycles,
		s.Scheduling.Late, s.Scheduling.Scheduled)
	if s.Scheduling.Scheduled != int64(len(recs)) {
		t.Errorf("report: %d scheduled cycles, want %d (every rate-model record)", s.Scheduling.Scheduled, len(recs))
	}
	if int64(fromRecords) != info.LateCycles || s.Scheduling.Late != info.LateCycles ||
		s.Scheduling.LateFromRuns == nil || *s.Scheduling.LateFromRuns != info.LateCycles {
		t.Errorf("late cycles disagree: records %d, sidecar %d, report %d, report from runs %v", fromRecords,
			info.LateCycles, s.Scheduling.Late, s.Scheduling.LateFromRuns)
	}
}
