package engine

import (
	"context"
	"testing"
	"time"
)

// With Jitter j, each first due time lies within ±j/2 of the interval around the agent's grid point, spread both
// ways (never before the start).
func TestFleetJitterBounds(t *testing.T) {
	const agents, interval, jitter = 1000, 10 * time.Second, 0.5
	f := newFleet(Schedule{Model: ModelFleet, Agents: agents, Workers: 1, Interval: interval, Jitter: jitter, Seed: 7},
		time.Unix(0, 0))
	bound := time.Duration(jitter / 2 * float64(interval))
	var lo, hi time.Duration
	for _, it := range f.due {
		if it.due < 0 {
			t.Fatalf("agent %d due %s before the start", it.agent, time.Duration(it.due))
		}
		if time.Duration(it.grid) < bound {
			continue // may have been moved up to the start
		}
		off := time.Duration(it.due - it.grid)
		if off < -bound || off > bound {
			t.Fatalf("agent %d moved %s from its grid point; want within ±%s", it.agent, off, bound)
		}
		lo, hi = min(lo, off), max(hi, off)
	}
	if lo > -bound/2 || hi < bound/2 {
		t.Fatalf("offsets span %s..%s over %d agents; want jitter both ways, near ±%s", lo, hi, agents, bound)
	}
}

// sleep with nothing to wait reports at once whether the run goes on (no caller passes d <= 0 today; the helper
// must still say false for an ended context rather than start one more cycle).
func TestSleepWithoutWait(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	if !sleep(ctx, 0, nil) || !sleep(ctx, -time.Second, nil) {
		t.Fatal("sleep(0) on a live context said stop")
	}
	cancel()
	if sleep(ctx, 0, nil) {
		t.Fatal("sleep(0) on an ended context said go on")
	}
}
