package daemon

import (
	"testing"
)

// evidence.reboot_every: every other cycle of each agent starts after a simulated reboot, so the verifier asks
// for the IMA log from offset 0 again; cycles between reboots continue incrementally. With simulator.reboot_defect
// off the in-process simulator judges both kinds pass (it restarts the replay on a later boot_time).
func TestRebootSimulation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Simulator.RebootDefect = false
	cfg.Run.Agents = 2
	cfg.Run.Tasks = 5
	cfg.Evidence.RebootEvery = 2
	r, err := newLoad(t.Context(), cfg, loadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := executeAndClose(t, t.Context(), r)
	recs := readRecords(t, sum.ResultsPath)
	if len(recs) != 10 {
		t.Fatalf("%d records, want 10", len(recs))
	}
	for _, rec := range recs {
		wantReboot := rec.TaskIndex > 0 && rec.TaskIndex%2 == 0
		if rec.Rebooted != wantReboot {
			t.Errorf("agent %d task %d: rebooted %v, want %v", rec.AgentIndex, rec.TaskIndex, rec.Rebooted, wantReboot)
		}
		if rec.Outcome != "success" || rec.Verdict.Evaluation != "pass" {
			t.Errorf("agent %d task %d: outcome %s verdict %s", rec.AgentIndex, rec.TaskIndex, rec.Outcome, rec.Verdict.Evaluation)
			continue
		}
		if rec.IMAOffset == nil {
			t.Fatalf("agent %d task %d: no ima_offset", rec.AgentIndex, rec.TaskIndex)
		}
		// The first cycle and every cycle after a reboot send the log from the start; the others continue.
		if fromStart := *rec.IMAOffset == 0; fromStart != (rec.TaskIndex == 0 || wantReboot) {
			t.Errorf("agent %d task %d: ima_offset %d (rebooted %v)", rec.AgentIndex, rec.TaskIndex, *rec.IMAOffset, wantReboot)
		}
	}
}

// With simulator.reboot_defect on (the default) the simulator answers as Keylime does: after the reboot before
// task 2 the new log is replayed from the previous boot's PCR 10, so task 2 fails with broken_evidence_chain; by
// task 3 the synthetic log has regrown to the length it had at task 1's pass, PCR 10 equals that boot's value
// again, and it passes.
func TestRebootDefectReproduced(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Run.Agents = 2
	cfg.Run.Tasks = 4
	cfg.Evidence.RebootEvery = 2
	r, err := newLoad(t.Context(), cfg, loadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := executeAndClose(t, t.Context(), r)
	recs := readRecords(t, sum.ResultsPath)
	if len(recs) != 8 {
		t.Fatalf("%d records, want 8", len(recs))
	}
	for _, rec := range recs {
		reason := ""
		if rec.Verdict.FailureReason != nil {
			reason = *rec.Verdict.FailureReason
		}
		switch {
		case rec.TaskIndex != 2 && rec.Verdict.Evaluation != "pass":
			t.Errorf("agent %d task %d: verdict %s (%s), want pass", rec.AgentIndex, rec.TaskIndex, rec.Verdict.Evaluation, reason)
		case rec.TaskIndex == 2 && (rec.Verdict.Evaluation != "fail" || reason != "broken_evidence_chain"):
			t.Errorf("agent %d task 2, just after a reboot: verdict %s (%s), want fail (broken_evidence_chain)",
				rec.AgentIndex, rec.Verdict.Evaluation, reason)
		}
	}
}
