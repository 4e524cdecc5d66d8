package report

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/attestload/attestload/attestation/record"
)

// The report names each known verifier defect the records met in one line with its count: evidence-order 422s,
// broken_evidence_chain verdicts of agents that rebooted (not of agents that did not), and accepted cycles whose
// verdict never came while others were judged.
func TestVerifierDefectsNamed(t *testing.T) {
	var b strings.Builder
	add := func(agent string, outcome record.Outcome, errClass record.ErrorClass, eval, reason string, rebooted bool) {
		r := record.Record{Schema: 1, AgentID: agent, Outcome: outcome, StartTime: 1000, EndTime: 1001,
			Verdict: record.Verdict{Evaluation: eval}, Rebooted: rebooted}
		if errClass != "" {
			r.Error = &errClass
		}
		if reason != "" {
			r.Verdict.FailureReason = &reason
		}
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	add("a", record.OutcomeFail, record.ClassEvidenceOrder, record.EvaluationUnknown, "", false)
	add("b", record.OutcomeFail, record.ClassEvidenceOrder, record.EvaluationUnknown, "", false)
	add("c", record.OutcomeSuccess, "", record.EvaluationPass, "", false)
	add("c", record.OutcomeSuccess, "", record.EvaluationFail, "broken_evidence_chain", true)
	add("c", record.OutcomeSuccess, "", record.EvaluationFail, "broken_evidence_chain", false)
	add("d", record.OutcomeSuccess, "", record.EvaluationFail, "broken_evidence_chain", false)
	add("e", record.OutcomeSuccess, "", record.EvaluationUnknown, "", false)

	out, _, _ := runOn(t, b.String(), Options{Format: FormatJSON})
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, d := range s.VerifierDefects {
		got[d.Name] = d.Count
	}
	want := map[string]int64{"evidence_order": 2, "reboot": 2, "verdict_pending": 1}
	if len(got) != len(want) || got["evidence_order"] != 2 || got["reboot"] != 2 || got["verdict_pending"] != 1 {
		t.Errorf("verifier defects %v, want %v", got, want)
	}
	text, _, _ := runOn(t, b.String(), Options{Format: FormatText})
	for _, w := range []string{"Verifier defects met", "Keylime evidence-order defect: 2 cycle(s)",
		"Keylime reboot defect: 2 attestation(s)", "Verdicts that never came: 1 accepted"} {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text report lacks %q:\n%s", w, text.String())
		}
	}
}

// A run that met no defect prints no such section, and the JSON has no verifier_defects key.
func TestNoVerifierDefects(t *testing.T) {
	line, _ := json.Marshal(record.Record{Schema: 1, AgentID: "a", Outcome: record.OutcomeSuccess,
		Verdict: record.Verdict{Evaluation: record.EvaluationPass}, StartTime: 1, EndTime: 2})
	out, _, _ := runOn(t, string(line)+"\n", Options{Format: FormatJSON})
	if strings.Contains(out.String(), "verifier_defects") {
		t.Errorf("JSON names verifier defects for a clean run:\n%s", out.String())
	}
	text, _, _ := runOn(t, string(line)+"\n", Options{Format: FormatText})
	if strings.Contains(text.String(), "Verifier defects") {
		t.Errorf("text names verifier defects for a clean run")
	}
}
