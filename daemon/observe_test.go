package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/daemon/engine"
	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/exporter/verdict"
)

// gatherByLabel sums a counter family of reg by one label's value.
func gatherByLabel(t *testing.T, reg prometheus.Gatherer, family, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && m.GetCounter().GetValue() != 0 {
					out[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// A real run against the in-process simulator with metrics on: the cycle counters equal the results file by
// outcome, and every accepted evidence carries the simulator's verdict (pass) and its time to verdict.
func TestMetricsAgreeWithResultsAndVerdicts(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	// A time-bound run whose last cycles are cut by a zero drain timeout, so that two outcomes are counted.
	cfg.Run.Tasks = 0
	cfg.Run.Duration = 1500 * time.Millisecond
	cfg.Run.DrainTimeout = 0
	cfg.Simulator.Latency = 20 * time.Millisecond
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{RunID: "r", Instance: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r, err := newLoad(t.Context(), cfg, loadOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg},
		engine.WithResultsSink(m), engine.WithObserver(m))
	if err != nil {
		t.Fatal(err)
	}
	if r.verdictSourceName() != verdict.SourceSimulator {
		t.Fatalf("verdict.source auto resolved to %q with the in-process simulator, want simulator", r.verdictSourceName())
	}
	sum := executeAndClose(t, t.Context(), r)

	recs := readRecords(t, sum.ResultsPath)
	byOutcome := map[record.Outcome]float64{}
	byVerdict := map[string]float64{}
	for _, rec := range recs {
		byOutcome[rec.Outcome]++
		if rec.UpdateSuccessful {
			byVerdict[rec.Verdict.Evaluation]++
			if rec.Verdict.Evaluation != record.EvaluationPass || rec.Verdict.Seconds == nil || *rec.Verdict.Seconds < 0 {
				t.Fatalf("accepted evidence of %s/%v: verdict %+v (seconds %v), want pass with a time to verdict",
					rec.AgentID, rec.AttestationIndex, rec.Verdict, rec.Verdict.Seconds)
			}
		} else if rec.Verdict.Evaluation != record.EvaluationUnknown {
			t.Fatalf("record without accepted evidence has verdict %+v, want unknown", rec.Verdict)
		}
	}
	if byOutcome[record.OutcomeSuccess] == 0 || byOutcome[record.OutcomeAborted] == 0 {
		t.Fatalf("outcomes %v: the run should have both successful and aborted cycles", byOutcome)
	}
	got := gatherByLabel(t, reg, metrics.NameCycles, "outcome")
	if len(got) != len(byOutcome) {
		t.Fatalf("%s by outcome %v, results file %v", metrics.NameCycles, got, byOutcome)
	}
	for o, n := range byOutcome {
		if got[string(o)] != n {
			t.Fatalf("%s by outcome %v, results file %v", metrics.NameCycles, got, byOutcome)
		}
	}
	gotV := gatherByLabel(t, reg, metrics.NameVerdicts, "evaluation")
	if gotV[record.EvaluationPass] != byVerdict[record.EvaluationPass] || gotV[record.EvaluationPass] == 0 {
		t.Fatalf("%s by evaluation %v, results file %v", metrics.NameVerdicts, gotV, byVerdict)
	}
	// The watcher's own series are on the same registry: every accepted evidence resolved, the rest passed through.
	wr := gatherByLabel(t, reg, metrics.NameVerdictRecords, "result")
	if wr["resolved"] != byVerdict[record.EvaluationPass] || wr["passthrough"] != float64(len(recs))-wr["resolved"] ||
		wr["timeout"] != 0 {
		t.Fatalf("%s %v; results file verdicts %v of %d records", metrics.NameVerdictRecords, wr, byVerdict, len(recs))
	}
	if strings.Contains(logs.String(), "every verdict is recorded as unknown") {
		t.Fatalf("the simulator is a verdict source, yet the log says verdicts are unknown:\n%s", logs.String())
	}
}

// With verdict.source none every record says unknown, and the log says so once, not per record.
func TestNoVerdictSourceSaidOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Verdict.Source = verdict.SourceNone
	var logs bytes.Buffer
	r, err := newLoad(t.Context(), cfg, loadOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sum := executeAndClose(t, t.Context(), r)
	recs := readRecords(t, sum.ResultsPath)
	if len(recs) != 8 {
		t.Fatalf("%d records, want 8", len(recs))
	}
	for _, rec := range recs {
		if rec.Verdict.Evaluation != record.EvaluationUnknown || rec.Verdict.Seconds != nil {
			t.Fatalf("verdict %+v with no source, want unknown", rec.Verdict)
		}
	}
	if n := strings.Count(logs.String(), "every verdict is recorded as unknown"); n != 1 {
		t.Fatalf("%d log lines say verdicts are unknown, want exactly 1:\n%s", n, logs.String())
	}
}
