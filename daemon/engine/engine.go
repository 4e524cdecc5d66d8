package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// Stats counts what an engine did.
type Stats struct {
	Started  uint64 // cycles started
	Finished uint64 // records delivered (success + fail + aborted)
	Success  uint64
	Fail     uint64
	Aborted  uint64
	Dropped  uint64 // rate model ticks that found no idle agent
	Late     uint64 // fleet/rate cycles that started more than record.LateTolerance after their due time
	Blocked  uint64 // records that waited for room in the fan-out (results writer stalled)
	// Outages are the time ranges during which the verifier could not be reached at all: every cycle failed
	// before any HTTP answer (Unix seconds, as in the records; Ongoing marks an outage the run ended in). They go
	// to the run's sidecar as they are.
	Outages []record.OutageInfo
	// SinkDrops is, per WithSink sink in order, how many records it missed.
	SinkDrops []uint64
	// Aborting is true when the drain timeout passed or Abort was called with cycles still running.
	Aborting bool
}

// Engine runs cycles according to a Schedule and delivers their records.
type Engine struct {
	runner Runner
	sched  Schedule
	opts   options
	obs    Observer
	log    *slog.Logger
	fanout *Fanout
	sink   Sink
	bo     *backoffs // nil when backoff is off
	outage *outageTracker

	abortCtx context.Context
	abort    context.CancelFunc

	inflight sync.WaitGroup
	started  atomic.Uint64
	finished atomic.Uint64
	success  atomic.Uint64
	fail     atomic.Uint64
	abortedN atomic.Uint64
	dropped  atomic.Uint64
	late     atomic.Uint64
	running  atomic.Int64
	ran      atomic.Bool
}

// New checks the schedule and builds an engine; sinks start receiving when Run starts.
func New(r Runner, s Schedule, opts ...Option) (*Engine, error) {
	if r == nil {
		return nil, errors.New("engine: nil runner")
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	e := &Engine{runner: r, sched: s, obs: nopObserver{}, log: slog.New(slog.DiscardHandler)}
	e.opts = options{inBound: 8192, sinkBound: 4096}
	for _, o := range opts {
		o(&e.opts)
	}
	if e.opts.observer != nil {
		e.obs = e.opts.observer
	}
	if e.opts.logger != nil {
		e.log = e.opts.logger
	}
	e.abortCtx, e.abort = context.WithCancel(context.Background())
	e.bo = newBackoffs(s.Agents, s.Backoff, s.Seed)
	e.outage = newOutageTracker(e.log, e.obs, e.opts.errDetail, s.Agents)
	e.obs.SetBackingOff(0)
	return e, nil
}

// Abort cancels every running cycle at once (the second signal); they end as aborted. Run then returns promptly.
func (e *Engine) Abort() { e.abort() }

// Run runs the schedule until it is complete, Duration passes or ctx is cancelled (the first signal), then drains:
// in-flight cycles get DrainTimeout to finish before they are aborted. Every record is delivered and every sink
// closed before Run returns. The error is only about closing sinks; cycle failures are records.
func (e *Engine) Run(ctx context.Context) (Stats, error) {
	if e.ran.Swap(true) {
		return Stats{}, errors.New("engine: Run called twice")
	}
	e.fanout = NewFanout(e.opts.inBound, e.opts.sinkBound, e.opts.lossless, e.opts.lossy)
	e.sink = e.fanout
	stages := []Sink{}
	for _, wrap := range e.opts.stages {
		e.sink = wrap(e.sink)
		stages = append(stages, e.sink)
	}

	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	if e.sched.Duration > 0 {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithTimeout(stopCtx, e.sched.Duration)
		defer cancel()
	}
	// Abort implies stop.
	go func() {
		select {
		case <-e.abortCtx.Done():
			stop()
		case <-stopCtx.Done():
		}
	}()

	switch e.sched.Model {
	case ModelClosed:
		e.runClosed(stopCtx)
	case ModelFleet:
		e.runFleet(stopCtx)
	case ModelRate:
		e.runRate(stopCtx)
	}
	stop()

	aborting := e.drain()
	outages := e.outage.finish(time.Now())
	// Every cycle has returned and delivered its record, so the abort context can go.
	e.abort()

	var errs []error
	for i := len(stages) - 1; i >= 0; i-- {
		errs = append(errs, stages[i].Close())
	}
	errs = append(errs, e.fanout.Close())
	st := Stats{
		Started: e.started.Load(), Finished: e.finished.Load(), Success: e.success.Load(), Fail: e.fail.Load(),
		Aborted: e.abortedN.Load(), Dropped: e.dropped.Load(), Late: e.late.Load(), Blocked: e.fanout.Blocked(),
		SinkDrops: e.fanout.Dropped(), Aborting: aborting, Outages: outages,
	}
	return st, errors.Join(errs...)
}

// drain waits for in-flight cycles, aborting them at the drain deadline or on Abort. It reports whether it had to
// abort anything.
func (e *Engine) drain() bool {
	done := make(chan struct{})
	go func() { e.inflight.Wait(); close(done) }()
	if e.running.Load() == 0 {
		<-done
		return false
	}
	e.log.Info("draining in-flight cycles", "in_flight", e.running.Load(), "drain_timeout", e.sched.DrainTimeout)
	t := time.NewTimer(e.sched.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		e.log.Warn("drain timeout passed, aborting in-flight cycles", "in_flight", e.running.Load())
	case <-e.abortCtx.Done():
	}
	e.abort()
	<-done
	return true
}

// launch starts one cycle on its own goroutine; release runs after its record has been delivered.
func (e *Engine) launch(agent, task, worker int, due *time.Time, release func()) {
	e.started.Add(1)
	e.running.Add(1)
	e.inflight.Add(1)
	e.obs.CycleStarted()
	var sched, late *float64
	if due != nil {
		l := time.Since(*due)
		if l < 0 {
			l = 0
		}
		s := float64(due.UnixNano()) / 1e9
		ls := l.Seconds()
		if record.IsLate(ls) {
			e.late.Add(1)
			e.obs.CycleLate(l)
		}
		sched, late = &s, &ls
	}
	go func() {
		defer e.inflight.Done()
		r := e.runner.Cycle(e.abortCtx, agent, task, worker)
		if r == nil {
			// A runner must always return a record; make the failure visible instead of losing the cycle.
			msg := record.ClassLocal
			r = &record.Record{AgentIndex: agent, TaskIndex: task, WorkerIndex: worker, Outcome: record.OutcomeFail,
				Error: &msg, Schema: record.SchemaVersion}
		}
		r.ScheduledTime, r.LateSeconds = sched, late
		if e.bo != nil {
			if n, changed := e.bo.note(agent, r.Outcome, time.Now()); changed {
				e.obs.SetBackingOff(n)
			}
		}
		e.outage.observe(r)
		e.deliver(r)
		e.running.Add(-1)
		e.obs.CycleFinished()
		release()
	}()
}

// notBefore is the earliest start of the agent's next cycle: the verifier's word (Retry-After, quote_interval)
// or the agent's backoff after a failure, whichever is later.
func (e *Engine) notBefore(agent int) time.Time {
	return maxTime(e.runner.NotBefore(agent), e.bo.notBefore(agent))
}

func (e *Engine) deliver(r *record.Record) {
	switch r.Outcome {
	case record.OutcomeSuccess:
		e.success.Add(1)
	case record.OutcomeAborted:
		e.abortedN.Add(1)
	default:
		e.fail.Add(1)
	}
	e.finished.Add(1)
	if e.opts.onRecord != nil {
		e.opts.onRecord(r)
	}
	e.sink.Observe(r)
}

// sleep waits d or until one of the channels is ready; it reports false when ctx ended.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// InFlight returns the number of cycles running now.
func (e *Engine) InFlight() int64 { return e.running.Load() }
