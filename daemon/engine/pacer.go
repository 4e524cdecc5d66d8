package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Pacer decides when the rate model sends its next cycle, in the manner of vegeta's pacer: given the time elapsed
// since the start and the number of cycles already dispatched (hits), it returns how long to wait before the next
// one, or stop when the schedule is over.
type Pacer interface {
	Pace(elapsed time.Duration, hits uint64) (wait time.Duration, stop bool)
	// Rate is the target arrival rate (cycles per second) at elapsed, for metrics.
	Rate(elapsed time.Duration) float64
}

// Stage is one segment of a rate schedule: the rate moves linearly from the previous stage's target (or the start
// rate) to Target over Duration. A stage whose target equals the previous one holds that rate.
type Stage struct {
	Duration time.Duration `key:"duration"`
	Target   float64       `key:"target"` // cycles per second at the end of the stage
}

// Stages are the rate model's ramp (scheduler.rate.stages).
type Stages []Stage

// UnmarshalText reads the compact form of the environment and the command line, "DURATION:TARGET,...", e.g.
// "1m:10,5m:200,30m:200".
func (s *Stages) UnmarshalText(text []byte) error {
	var out Stages
	for i, part := range strings.Split(string(text), ",") {
		part = strings.TrimSpace(part)
		ds, ts, ok := strings.Cut(part, ":")
		if !ok {
			return fmt.Errorf("stage %d %q: want DURATION:TARGET, e.g. 5m:200", i, part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(ds))
		if err != nil {
			return fmt.Errorf("stage %d %q: bad duration: %v", i, part, err)
		}
		t, err := strconv.ParseFloat(strings.TrimSpace(ts), 64)
		if err != nil {
			return fmt.Errorf("stage %d %q: bad target: %v", i, part, err)
		}
		out = append(out, Stage{Duration: d, Target: t})
	}
	*s = out
	return nil
}

// StagedPacer is a piecewise-linear arrival rate: Start, then each stage ramps to its target. Hit h (0-based) is due
// at the time T where the integral of the rate from 0 to T equals h, so the number of cycles dispatched over a
// stage is exactly the area under its rate line; this is what keeps the achieved rate within rounding of the target
// however long the run.
type StagedPacer struct {
	Start  float64
	Stages []Stage
}

// NewStagedPacer checks the schedule and returns its pacer.
func NewStagedPacer(start float64, stages []Stage) (*StagedPacer, error) {
	if start < 0 || math.IsNaN(start) || math.IsInf(start, 0) {
		return nil, fmt.Errorf("rate pacer: start rate must be >= 0, got %v", start)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("rate pacer: at least one stage is needed")
	}
	for i, s := range stages {
		if s.Duration <= 0 {
			return nil, fmt.Errorf("rate pacer: stage %d: duration must be > 0, got %s", i, s.Duration)
		}
		if s.Target < 0 || math.IsNaN(s.Target) || math.IsInf(s.Target, 0) {
			return nil, fmt.Errorf("rate pacer: stage %d: target must be >= 0, got %v", i, s.Target)
		}
	}
	return &StagedPacer{Start: start, Stages: append([]Stage(nil), stages...)}, nil
}

// Total is the length of the whole schedule.
func (p *StagedPacer) Total() time.Duration {
	var d time.Duration
	for _, s := range p.Stages {
		d += s.Duration
	}
	return d
}

// Rate implements Pacer.
func (p *StagedPacer) Rate(elapsed time.Duration) float64 {
	r0 := p.Start
	var t0 time.Duration
	for _, s := range p.Stages {
		if elapsed < t0+s.Duration {
			f := float64(elapsed-t0) / float64(s.Duration)
			return r0 + (s.Target-r0)*f
		}
		t0 += s.Duration
		r0 = s.Target
	}
	return 0
}

// due returns the offset from the start at which hit h is due, and false when the schedule ends first.
func (p *StagedPacer) due(h float64) (time.Duration, bool) {
	r0 := p.Start
	var t0 float64 // seconds
	cum := 0.0
	for _, s := range p.Stages {
		d := s.Duration.Seconds()
		r1 := s.Target
		area := (r0 + r1) / 2 * d
		if area > 0 && h-cum < area {
			x := h - cum
			a := (r1 - r0) / d
			// Solve r0 t + a t²/2 = x in the form that stays exact when a is 0 or tiny.
			disc := r0*r0 + 2*a*x
			if disc < 0 {
				disc = 0
			}
			den := r0 + math.Sqrt(disc)
			t := 0.0
			if den > 0 {
				t = 2 * x / den
			}
			return time.Duration((t0 + t) * float64(time.Second)), true
		}
		cum += area
		t0 += d
		r0 = r1
	}
	return 0, false
}

// Pace implements Pacer.
func (p *StagedPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	at, ok := p.due(float64(hits))
	if !ok {
		return 0, true
	}
	if at <= elapsed {
		return 0, false
	}
	return at - elapsed, false
}
