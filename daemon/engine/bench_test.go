package engine

import (
	"context"
	"testing"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// instantRunner returns at once: what is left is the engine's own cost per cycle.
type instantRunner struct{}

func (instantRunner) Cycle(_ context.Context, agent, task, worker int) *record.Record {
	return &record.Record{AgentIndex: agent, TaskIndex: task, WorkerIndex: worker, Outcome: record.OutcomeSuccess}
}
func (instantRunner) NotBefore(int) time.Time { return time.Time{} }

type discard struct{}

func (discard) Observe(*record.Record) {}
func (discard) Close() error           { return nil }

// BenchmarkEngineClosed is the scheduling, fan-out and bookkeeping overhead of one cycle in the closed model.
func BenchmarkEngineClosed(b *testing.B) {
	const agents = 256
	e, err := New(instantRunner{}, Schedule{Model: ModelClosed, Agents: agents, Workers: 32,
		Tasks: b.N/agents + 1}, WithResultsSink(discard{}), WithSink(discard{}))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	st, err := e.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Finished)/b.Elapsed().Seconds(), "cycles/s")
}

// BenchmarkPacer is the cost of one rate-model pacing decision.
func BenchmarkPacer(b *testing.B) {
	p, _ := NewStagedPacer(10, []Stage{{time.Hour, 10}, {time.Hour, 1000}, {time.Hour, 1000}})
	var hits uint64
	for b.Loop() {
		p.Pace(90*time.Minute, hits%3_000_000)
		hits++
	}
}
