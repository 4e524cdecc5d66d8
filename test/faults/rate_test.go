package faults

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/exporter/results"
	"github.com/attestload/attestload/test/faults/harness"
)

// scheduleTicks are the due times (seconds from the first) of a rate schedule: tick h is due when the area under
// the rate line reaches h. Within a stage the rate is r0 + aτ, whose area r0τ + aτ²/2 is solved for τ.
func scheduleTicks(r0 float64, stages [][2]float64) []float64 {
	var out []float64
	t0, h0 := 0.0, 0.0
	for _, st := range stages {
		d, target := st[0], st[1]
		a := (target - r0) / d
		area := r0*d + a*d*d/2
		for h := math.Ceil(h0); h < h0+area-1e-9; h++ {
			tau := (h - h0) / r0
			if a != 0 {
				tau = (-r0 + math.Sqrt(r0*r0+2*a*(h-h0))) / a
			}
			out = append(out, t0+tau)
		}
		t0, h0, r0 = t0+d, h0+area, target
	}
	return out
}

// The rate model through the binary: --rate-start 10 --rate-stages 2s:10,3s:30 (10/s held for 2 s, then a ramp
// to 30/s over 3 s: 20 + 60 = 80 ticks) against a verifier that takes 150 ms per request and holds each agent back
// for 2 s after its attestation (quote_interval), with 4 agents and 2 workers. Every tick of the configured
// schedule must be either a record whose scheduled_time is exactly that tick, or a dropped cycle in the sidecar,
// and both kinds of drop must occur: ticks when both workers were busy (the third tick, at 0.2 s, comes while the
// first two cycles, at least 300 ms each, still run) and ticks when a worker was free but every agent was held
// back (after the first four cycles no agent may attest for 2 s). Nothing here depends on the machine's speed: a
// slower machine makes cycles longer, which only adds drops of both kinds.
func TestRateRampThroughTheBinary(t *testing.T) {
	w := newWorld(t, harness.SimOptions{QuoteInterval: 2, Faults: simverifier.Faults{
		Rules: map[simverifier.Endpoint]simverifier.FaultRule{
			simverifier.EndpointAll: {Latency: simverifier.Latency{Fixed: 150 * time.Millisecond}}}}})
	args := []string{"run", w.sim.URL(), w.dbURL, "--key-pool", w.keys, "-a", "4", "-w", "2",
		"--model", "rate", "--rate-start", "10", "--rate-stages", "2s:10,3s:30",
		"--results-dir", w.dir, "--prefix", w.prefix, "--metrics-listen", "", "--instance", "faults"}
	if ca := w.sim.CAFile(); ca != "" {
		args = append(args, "--verifier-ca", ca)
	}
	p := harness.Start(t, w.dir, w.baseEnv(), args...)
	path := p.ResultsPath(t, time.Minute)
	if code := p.Wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.Stderr.String())
	}
	harness.NoCrash(t, "stderr", p.Stderr.String())
	recs, partial := harness.ReadRecords(t, path)
	if partial {
		t.Error("results file ends in a partial line")
	}
	harness.CheckRecords(t, recs)
	b, err := os.ReadFile(results.SidecarPath(path))
	if err != nil {
		t.Fatal(err)
	}
	var info record.RunInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("sidecar: %v\n%s", err, b)
	}

	// Every record sits on its own tick of the configured schedule; the first tick always starts (all idle).
	ticks := scheduleTicks(10, [][2]float64{{2, 10}, {3, 30}})
	if len(ticks) != 80 || ticks[20] != 2 {
		t.Fatalf("the schedule's ticks: %d, the 21st at %v; want 80, the 21st at 2 s", len(ticks), ticks[20])
	}
	first := math.Inf(1)
	for _, r := range recs {
		if r.ScheduledTime == nil || r.LateSeconds == nil {
			t.Fatalf("rate record without scheduled_time/late_seconds: %+v", r)
		}
		first = min(first, *r.ScheduledTime)
	}
	started := make([]bool, len(ticks))
	late := 0
	type span struct{ start, end float64 } // seconds from the first tick
	var spans []span
	for _, r := range recs {
		at := *r.ScheduledTime - first
		// The nearest tick, which must be within a millisecond (float Unix seconds carry about 0.2 µs).
		i, _ := slices.BinarySearch(ticks, at)
		if i == len(ticks) || (i > 0 && at-ticks[i-1] < ticks[i]-at) {
			i--
		}
		if math.Abs(ticks[i]-at) > 0.001 || started[i] {
			t.Fatalf("agent %d task %d scheduled at +%.4f s: not a free tick of the configured schedule %v",
				r.AgentIndex, r.TaskIndex, at, ticks)
		}
		started[i] = true
		if record.IsLate(*r.LateSeconds) {
			late++
		}
		if r.Outcome != record.OutcomeSuccess {
			t.Errorf("cycle failed: %+v", r)
		}
		spans = append(spans, span{r.StartTime - first, r.EndTime - first})
	}
	if !started[0] {
		t.Fatal("the first tick did not start a cycle")
	}

	// The counts: every tick is a record or a dropped cycle, and the sidecar agrees.
	if int64(len(recs))+info.DroppedCycles != 80 || info.Model != "rate" || info.Workers != 2 || info.Agents != 4 {
		t.Fatalf("%d records + %d dropped (sidecar %s); want the schedule's 80 ticks", len(recs),
			info.DroppedCycles, b)
	}
	if info.LateCycles != int64(late) {
		t.Errorf("sidecar late_cycles %d, records late %d", info.LateCycles, late)
	}
	// Achieved rate per stage, from the records: at most the stage's ticks, and at most what the agents allow:
	// each agent once, then not again for 2 s after its cycle ended, so no more than 4 in the first 2 s and no
	// more than 4 per 2 s after.
	perStage := [2]int{}
	for i, s := range started {
		if s {
			perStage[min(i/20, 1)]++
		}
	}
	if perStage[0] < 1 || perStage[0] > 4 || perStage[1] < 1 || perStage[1] > 8 {
		t.Errorf("started per stage %v (of 20 and 60 ticks), want 1-4 in the hold and 1-8 in the ramp", perStage)
	}

	// Classify each dropped tick by what the records say about that instant (50 ms of margin either side for
	// the engine's bookkeeping): both workers busy, or a worker free while no agent could go.
	busyAt := func(at, margin float64) (surely, maybe int) {
		for _, s := range spans {
			if s.start < at-margin && s.end > at+margin {
				surely++
			}
			if s.start < at+margin && s.end > at-margin {
				maybe++
			}
		}
		return surely, maybe
	}
	var noWorker, noAgent int
	for i, s := range started {
		if s {
			continue
		}
		surely, maybe := busyAt(ticks[i], 0.05)
		switch {
		case surely >= 2:
			noWorker++
		case maybe <= 1:
			noAgent++
		}
	}
	t.Logf("%d records, %d dropped: %d surely for want of a worker, %d surely for want of an agent; per stage %v, late %d",
		len(recs), info.DroppedCycles, noWorker, noAgent, perStage, late)
	if noWorker == 0 || noAgent == 0 {
		t.Errorf("dropped ticks: %d with both workers busy, %d with a worker free; want both kinds", noWorker, noAgent)
	}
}
