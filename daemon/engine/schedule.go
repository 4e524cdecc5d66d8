package engine

import (
	"errors"
	"fmt"
	"time"
)

// Scheduling models.
const (
	ModelClosed = "closed" // every agent back to back, at most Workers cycles in flight (the old tool's model)
	ModelFleet  = "fleet"  // every agent once per Interval, like a real fleet
	ModelRate   = "rate"   // a global arrival rate following the pacer; no idle agent → dropped
)

// Schedule says which cycles the engine runs and when.
type Schedule struct {
	Model        string
	Agents       int           // number of agents, indexes 0..Agents-1 in the Runner
	Workers      int           // most cycles in flight at once (all models)
	Tasks        int           // cycles per agent; 0 = unlimited
	Duration     time.Duration // stop starting cycles after this long; 0 = until stopped
	DrainTimeout time.Duration // after stopping, how long in-flight cycles may take before they are aborted
	Interval     time.Duration // fleet: each agent's attestation interval
	Jitter       float64       // fleet: each due time moves by up to ±Jitter/2 of Interval, at random
	Pacer        Pacer         // rate: the arrival schedule; the run ends when it stops
	Seed         uint64        // jitter seed; runs are reproducible for a given seed
	Backoff      Backoff       // every model: how long an agent waits after a failed cycle
}

func (s Schedule) check() error {
	switch s.Model {
	case ModelClosed, ModelFleet, ModelRate:
	default:
		return fmt.Errorf("schedule: unknown model %q (want closed, fleet or rate)", s.Model)
	}
	if s.Agents < 1 {
		return fmt.Errorf("schedule: agents must be >= 1, got %d", s.Agents)
	}
	if s.Workers < 1 {
		return fmt.Errorf("schedule: workers must be >= 1, got %d", s.Workers)
	}
	if s.Tasks < 0 || s.Duration < 0 || s.DrainTimeout < 0 {
		return errors.New("schedule: tasks, duration and drain timeout must not be negative")
	}
	if s.Model == ModelFleet && s.Interval <= 0 {
		return fmt.Errorf("schedule: fleet interval must be > 0, got %s", s.Interval)
	}
	if s.Model == ModelFleet && (s.Jitter < 0 || s.Jitter > 1) {
		return fmt.Errorf("schedule: fleet jitter must be within [0, 1], got %v", s.Jitter)
	}
	if s.Backoff.Initial < 0 || s.Backoff.Max < 0 {
		return errors.New("schedule: backoff durations must not be negative")
	}
	if s.Model == ModelRate && s.Pacer == nil {
		return errors.New("schedule: the rate model needs a pacer")
	}
	return nil
}
