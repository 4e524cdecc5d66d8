package engine

import (
	"fmt"
	"time"
)

// Settings are the scheduler section of the configuration (the keys under "scheduler."; internal/conf
// describes the tags): the model and its parameters.
type Settings struct {
	Model   string  `key:"model" flag:"model" usage:"scheduler: closed, fleet or rate (default closed)"`
	Fleet   Fleet   `key:"fleet"`
	Rate    Rate    `key:"rate"`
	Backoff Backoff `key:"backoff"`
}

// Fleet is the fleet model: every agent once per interval.
type Fleet struct {
	Interval time.Duration `key:"interval" check:">0" flag:"interval" usage:"fleet model: each agent's attestation interval (default 60s)"`
	Jitter   float64       `key:"jitter" check:"0..1"`
}

// Rate is the rate model: a global arrival rate with ramp stages.
type Rate struct {
	Start  float64 `key:"start" check:">=0" flag:"rate-start" usage:"rate model: cycles per second at the start (default 10)"`
	Stages Stages  `key:"stages" flag:"rate-stages" usage:"rate model: ramp stages DURATION:TARGET,... e.g. 1m:10,5m:200,30m:200"`
}

// Sizing is the part of the run section that sizes the schedule (the keys under "run."; the run section inlines
// it).
type Sizing struct {
	Workers      int           `key:"workers" check:">=0" flag:"workers,w" usage:"most cycles in flight (default: one per CPU thread)"`
	Agents       int           `key:"agents" check:">=0" flag:"agents,a" usage:"number of mock agents (default: as many as workers)"`
	Tasks        int           `key:"tasks" check:">=0" flag:"tasks,t" usage:"attestations per agent (default: until stopped)"`
	Duration     time.Duration `key:"duration" check:">=0" flag:"duration" usage:"stop starting cycles after this long, e.g. 30s or 1h (default: no limit)"`
	DrainTimeout time.Duration `key:"drain_timeout" check:">=0" flag:"drain-timeout" usage:"after stopping, how long running cycles may finish (default 30s)"`
}

// DefaultSettings are the scheduler section's defaults: the closed model; a fleet attests every minute with 10 %
// jitter; the rate model holds 10 cycles/s; a failed agent backs off from 2 s up to a minute.
func DefaultSettings() Settings {
	return Settings{Model: ModelClosed, Fleet: Fleet{Interval: 60 * time.Second, Jitter: 0.1},
		Rate:    Rate{Start: 10, Stages: []Stage{{Duration: time.Minute, Target: 10}}},
		Backoff: Backoff{Initial: 2 * time.Second, Max: time.Minute}}
}

// SettingError is a scheduler key with a value the engine cannot run with, worded as the configuration's errors
// are; the configuration layer reports it as one of its own (the engine imports nothing of the module but record).
type SettingError struct{ Key, Msg string }

func (e *SettingError) Error() string { return fmt.Sprintf("config key %q: %s", e.Key, e.Msg) }

func settingErr(key, format string, args ...any) error {
	return &SettingError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks what the range tags cannot say.
func (c Settings) Validate() error {
	switch c.Model {
	case ModelClosed, ModelFleet, ModelRate:
	default:
		return settingErr("scheduler.model", "must be closed, fleet or rate, got %q", c.Model)
	}
	if len(c.Rate.Stages) == 0 {
		return settingErr("scheduler.rate.stages", "must have at least one stage")
	}
	for i, s := range c.Rate.Stages {
		if s.Duration <= 0 {
			return settingErr(fmt.Sprintf("scheduler.rate.stages[%d].duration", i), "must be > 0, got %s", s.Duration)
		}
		if s.Target < 0 {
			return settingErr(fmt.Sprintf("scheduler.rate.stages[%d].target", i), "must be >= 0, got %v", s.Target)
		}
	}
	if b := c.Backoff; b.Max < 0 {
		return settingErr("scheduler.backoff.max", "must be >= 0 (0 turns backoff off), got %s", b.Max)
	} else if b.Max > 0 && (b.Initial <= 0 || b.Initial > b.Max) {
		return settingErr("scheduler.backoff.initial", "must be > 0 and at most scheduler.backoff.max (%s), got %s", b.Max, b.Initial)
	}
	return nil
}

// Schedule is the schedule the settings describe for a run of the given size, its pacer built for the rate
// model. Seed seeds the fleet's jitter.
func (c Settings) Schedule(z Sizing, seed uint64) (Schedule, error) {
	s := Schedule{Model: c.Model, Agents: z.Agents, Workers: z.Workers, Tasks: z.Tasks, Duration: z.Duration,
		DrainTimeout: z.DrainTimeout, Interval: c.Fleet.Interval, Jitter: c.Fleet.Jitter, Seed: seed,
		Backoff: c.Backoff}
	if c.Model == ModelRate {
		p, err := NewStagedPacer(c.Rate.Start, c.Rate.Stages)
		if err != nil {
			return Schedule{}, settingErr("scheduler.rate", "%v", err)
		}
		s.Pacer = p
	}
	return s, nil
}
