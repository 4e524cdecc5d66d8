package engine

import (
	"math"
	"testing"
	"time"
)

func TestStagedPacerCountsMatchArea(t *testing.T) {
	p, err := NewStagedPacer(10, []Stage{
		{Duration: time.Minute, Target: 10},      // hold 10/s: 600
		{Duration: 5 * time.Minute, Target: 200}, // ramp 10→200 over 300 s: 31500
		{Duration: 30 * time.Second, Target: 0},  // ramp down 200→0: 3000
	})
	if err != nil {
		t.Fatal(err)
	}
	var hits uint64
	elapsed := time.Duration(0)
	for {
		wait, stop := p.Pace(elapsed, hits)
		if stop {
			break
		}
		elapsed += wait
		hits++
	}
	want := uint64(600 + 31500 + 3000)
	if diff := math.Abs(float64(hits) - float64(want)); diff > 1 {
		t.Fatalf("hits = %d, want %d ±1", hits, want)
	}
	if elapsed > p.Total() {
		t.Fatalf("last hit at %s, after the schedule's end %s", elapsed, p.Total())
	}
}

func TestStagedPacerRate(t *testing.T) {
	p, _ := NewStagedPacer(0, []Stage{{Duration: 10 * time.Second, Target: 100}, {Duration: 10 * time.Second, Target: 100}})
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{0, 0}, {5 * time.Second, 50}, {15 * time.Second, 100}, {25 * time.Second, 0}} {
		if got := p.Rate(c.at); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Rate(%s) = %v, want %v", c.at, got, c.want)
		}
	}
	// Behind schedule: no wait, catch up.
	if wait, stop := p.Pace(15*time.Second, 10); wait != 0 || stop {
		t.Errorf("Pace behind schedule = %s, %v; want 0, false", wait, stop)
	}
}

func TestStagedPacerRejectsBadStages(t *testing.T) {
	for _, c := range []struct {
		start  float64
		stages []Stage
	}{
		{-1, []Stage{{time.Second, 1}}},
		{1, nil},
		{1, []Stage{{0, 1}}},
		{1, []Stage{{time.Second, -3}}},
		{math.NaN(), []Stage{{time.Second, 1}}},
	} {
		if _, err := NewStagedPacer(c.start, c.stages); err == nil {
			t.Errorf("NewStagedPacer(%v, %v) accepted a bad schedule", c.start, c.stages)
		}
	}
}
