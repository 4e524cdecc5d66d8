package daemon

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// Scheduling models.
const (
	ModelClosed = "closed" // every agent back to back, at most Workers cycles in flight (the old tool's model)
	ModelFleet  = "fleet"  // every agent once per Interval, like a real fleet
	ModelRate   = "rate"   // a global arrival rate following the pacer; no idle agent → dropped
)

// LateTolerance is how late a fleet or rate cycle may start before it counts as late (record.LateTolerance, the
// definition every count of late cycles shares).
const LateTolerance = record.LateTolerance

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

// Option configures an Engine or a whole run (Setup). Options that only concern the attestation client (hooks,
// transport wrapper) are ignored by NewEngine.
type Option func(*options)

type options struct {
	lossless  []Sink
	lossy     []Sink
	stages    []func(downstream Sink) Sink
	observer  EngineObserver
	hooks     any // client.Hooks; typed at the assembly
	transport func(http.RoundTripper) http.RoundTripper
	logger    *slog.Logger
	inBound   int
	sinkBound int
	onRecord  func(*record.Record)
	errDetail func() string
}

// WithSink adds a sink that receives every record through its own bounded queue; when it falls behind, records
// are dropped for it and counted (Fanout.Dropped). Metrics sinks go here.
func WithSink(s Sink) Option { return func(o *options) { o.lossy = append(o.lossy, s) } }

// WithResultsSink adds a sink that must see every record (the JSONL writer). It may apply back-pressure; see
// Fanout.
func WithResultsSink(s Sink) Option { return func(o *options) { o.lossless = append(o.lossless, s) } }

// WithStage puts a stage between the cycles and the fan-out: wrap receives the fan-out and returns the Sink the
// engine feeds. The verdict watcher plugs in here (it holds a record until its verdict is known, then forwards).
// Stages added later are closer to the cycles. The engine closes the outermost stage first, then the fan-out.
func WithStage(wrap func(downstream Sink) Sink) Option {
	return func(o *options) { o.stages = append(o.stages, wrap) }
}

// WithObserver sets the receiver of scheduler events (live metrics).
func WithObserver(obs EngineObserver) Option { return func(o *options) { o.observer = obs } }

// WithHooks passes client hooks (a client.Hooks value) to the attestation client that Setup builds.
func WithHooks(h any) Option { return func(o *options) { o.hooks = h } }

// WithTransportWrapper wraps the HTTP transport Setup builds (tracing, request metrics).
func WithTransportWrapper(w func(http.RoundTripper) http.RoundTripper) Option {
	return func(o *options) { o.transport = w }
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithQueueBounds sets the fan-out's input bound and per-sink bound, in records.
func WithQueueBounds(in, perSink int) Option {
	return func(o *options) { o.inBound, o.sinkBound = in, perSink }
}

// withTransportErrorDetail gives the engine the text of the last transport error (the x509 detail of a TLS
// failure, say), for the warning it logs when the verifier becomes unreachable.
func withTransportErrorDetail(f func() string) Option { return func(o *options) { o.errDetail = f } }

// withRecordHook is for the run's own bookkeeping (progress, verbose log): called on the cycle's goroutine.
func withRecordHook(f func(*record.Record)) Option { return func(o *options) { o.onRecord = f } }

// Stats counts what an engine did.
type Stats struct {
	Started  uint64 // cycles started
	Finished uint64 // records delivered (success + fail + aborted)
	Success  uint64
	Fail     uint64
	Aborted  uint64
	Dropped  uint64 // rate model ticks that found no idle agent
	Late     uint64 // fleet/rate cycles that started more than LateTolerance after their due time
	Blocked  uint64 // records that waited for room in the fan-out (results writer stalled)
	// Outages are the time ranges during which the verifier could not be reached.
	Outages []Outage
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
	obs    EngineObserver
	log    *slog.Logger
	fanout *Fanout
	sink   Sink
	bo     *backoffs
	bobs   BackoffObserver // nil when the observer has no backoff series
	outage *outageTracker

	abortCtx context.Context
	abort    context.CancelFunc
	aborted  atomic.Bool

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

// NewEngine checks the schedule and builds an engine; sinks start receiving when Run starts.
func NewEngine(r Runner, s Schedule, opts ...Option) (*Engine, error) {
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
	e.bobs, _ = e.obs.(BackoffObserver)
	e.bo = newBackoffs(s.Agents, s.Backoff, s.Seed)
	e.outage = newOutageTracker(e.log, e.bobs, e.opts.errDetail, s.Agents)
	if e.bobs != nil {
		e.bobs.SetBackingOff(0)
	}
	return e, nil
}

// Abort cancels every running cycle at once (the second signal); they end as aborted. Run then returns promptly.
func (e *Engine) Abort() {
	e.aborted.Store(true)
	e.abort()
}

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
		e.obs.SetTargetRate(float64(e.sched.Agents) / e.sched.Interval.Seconds())
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
			msg := record.ErrLocal
			r = &record.Record{AgentIndex: agent, TaskIndex: task, WorkerIndex: worker, Outcome: record.OutcomeFail,
				Error: &msg, Schema: record.SchemaVersion}
		}
		r.ScheduledTime, r.LateSeconds = sched, late
		if e.bo != nil {
			if n, changed := e.bo.note(agent, r.Outcome, time.Now()); changed && e.bobs != nil {
				e.bobs.SetBackingOff(n)
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

// agentPool tracks which agents may start a cycle. Ready agents are served first in, first out, so that every
// agent gets its turn; agents the verifier asked to wait sit in a heap ordered by NotBefore.
type agentPool struct {
	mu       sync.Mutex
	ready    []int // FIFO; head at readyHead
	head     int
	waiting  waitHeap
	tasks    []int // cycles started per agent
	maxTasks int
	busy     int
	retired  int // agents that reached maxTasks
	changed  chan struct{}
	obs      EngineObserver
}

func newAgentPool(n, maxTasks int, obs EngineObserver) *agentPool {
	p := &agentPool{tasks: make([]int, n), maxTasks: maxTasks, changed: make(chan struct{}), obs: obs}
	p.ready = make([]int, 0, n)
	for i := range n {
		p.ready = append(p.ready, i)
	}
	obs.SetAgents(n, 0, 0)
	return p
}

type poolState int

const (
	poolGot   poolState = iota // an agent was acquired
	poolWait                   // nothing ready yet; wait the returned duration or for a change
	poolEmpty                  // every agent retired and none running: the schedule is complete
)

// acquire takes a ready agent, promoting waiting agents whose time has come. On poolWait, wait is how long until
// the earliest waiting agent may go (0 = until a change), and changed is closed on the next release.
func (p *agentPool) acquire(now time.Time) (agent, task int, st poolState, wait time.Duration, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.waiting) > 0 && !p.waiting[0].at.After(now) {
		p.ready = append(p.ready, heap.Pop(&p.waiting).(waitItem).agent)
	}
	if p.head < len(p.ready) {
		agent = p.ready[p.head]
		p.head++
		if p.head > 1024 && p.head*2 > len(p.ready) {
			// Reclaim the consumed prefix so the queue stays O(agents) over a long run.
			p.ready = append(p.ready[:0], p.ready[p.head:]...)
			p.head = 0
		}
		task = p.tasks[agent]
		p.tasks[agent]++
		p.busy++
		p.report()
		return agent, task, poolGot, 0, nil
	}
	if p.busy == 0 && len(p.waiting) == 0 {
		return 0, 0, poolEmpty, 0, nil
	}
	if len(p.waiting) > 0 {
		wait = p.waiting[0].at.Sub(now)
	}
	return 0, 0, poolWait, wait, p.changed
}

// release returns an agent after its cycle; notBefore is the verifier's earliest next start for it.
func (p *agentPool) release(agent int, now, notBefore time.Time) {
	p.mu.Lock()
	p.busy--
	switch {
	case p.maxTasks > 0 && p.tasks[agent] >= p.maxTasks:
		p.retired++
	case notBefore.After(now):
		heap.Push(&p.waiting, waitItem{at: notBefore, agent: agent})
	default:
		p.ready = append(p.ready, agent)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.report()
	p.mu.Unlock()
}

func (p *agentPool) report() {
	p.obs.SetAgents(len(p.ready)-p.head, p.busy, len(p.waiting))
}

type waitItem struct {
	at    time.Time
	agent int
}

type waitHeap []waitItem

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(waitItem)) }
func (h *waitHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// runClosed: Workers loops, each taking the next ready agent and running it to completion. When every idle agent
// is held back by the verifier (NotBefore), a worker sleeps until the earliest; that time is waiting, not latency.
func (e *Engine) runClosed(ctx context.Context) {
	pool := newAgentPool(e.sched.Agents, e.sched.Tasks, e.obs)
	var wg sync.WaitGroup
	for w := range e.sched.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				agent, task, st, wait, changed := pool.acquire(time.Now())
				switch st {
				case poolEmpty:
					return
				case poolWait:
					if wait == 0 {
						select {
						case <-ctx.Done():
							return
						case <-changed:
						}
					} else if !sleep(ctx, wait, changed) {
						return
					}
					continue
				}
				done := make(chan struct{})
				e.launch(agent, task, w, nil, func() {
					pool.release(agent, time.Now(), e.notBefore(agent))
					close(done)
				})
				select {
				case <-done:
				case <-ctx.Done():
					// Stopping: the cycle is left to the drain, which may abort it.
					return
				}
			}
		})
	}
	wg.Wait()
}

// slots hands out worker indexes to fleet and rate cycles and bounds how many run at once.
type slots chan int

func newSlots(n int) slots {
	s := make(slots, n)
	for i := range n {
		s <- i
	}
	return s
}

// runFleet: every agent is due once per Interval on a fixed grid (agent i's phase is i/Agents of the interval,
// plus jitter). A cycle that cannot start at its due time, because the agent's previous cycle is still running,
// because the verifier said not yet, or because every worker slot is busy, starts as soon as it can and its
// lateness is recorded. Slots are not skipped: a verifier that falls behind shows up as growing lateness.
func (e *Engine) runFleet(ctx context.Context) {
	n := e.sched.Agents
	iv := e.sched.Interval
	rng := rand.New(rand.NewPCG(e.sched.Seed, 0x5eed))
	jitter := func() time.Duration {
		if e.sched.Jitter == 0 {
			return 0
		}
		return time.Duration((rng.Float64() - 0.5) * e.sched.Jitter * float64(iv))
	}
	start := time.Now()
	var mu sync.Mutex
	changed := make(chan struct{})
	h := make(dueHeap, 0, n)
	tasks := make([]int, n)
	busy := 0
	for i := range n {
		grid := start.Add(time.Duration(int64(iv) * int64(i) / int64(n)))
		h = append(h, dueItem{grid: grid, due: maxTime(start, grid.Add(jitter())), agent: i})
	}
	heap.Init(&h)
	free := newSlots(e.sched.Workers)
	for ctx.Err() == nil {
		mu.Lock()
		if len(h) == 0 {
			if busy == 0 {
				mu.Unlock()
				return
			}
			ch := changed
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			continue
		}
		it := h[0]
		ch := changed
		mu.Unlock()
		at := maxTime(it.due, e.notBefore(it.agent))
		now := time.Now()
		if at.After(now) {
			e.obs.SetScheduleLag(0)
			if !sleep(ctx, at.Sub(now), ch) {
				return
			}
			continue
		}
		e.obs.SetScheduleLag(now.Sub(it.due))
		var w int
		select {
		case <-ctx.Done():
			return
		case w = <-free:
		}
		mu.Lock()
		// A cycle that finished while this loop waited for a worker may have pushed an item due earlier than it:
		// popping would then take that item off the heap and leave it there, so that its agent ran twice at once.
		if len(h) == 0 || h[0] != it {
			mu.Unlock()
			free <- w
			continue
		}
		heap.Pop(&h)
		task := tasks[it.agent]
		tasks[it.agent]++
		busy++
		mu.Unlock()
		due := it.due
		e.launch(it.agent, task, w, &due, func() {
			mu.Lock()
			busy--
			if e.sched.Tasks == 0 || tasks[it.agent] < e.sched.Tasks {
				grid := it.grid.Add(iv)
				heap.Push(&h, dueItem{grid: grid, due: grid.Add(jitter()), agent: it.agent})
			}
			close(changed)
			changed = make(chan struct{})
			mu.Unlock()
			free <- w
		})
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

type dueItem struct {
	grid, due time.Time
	agent     int
}

type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// runRate: an open model. Each tick of the pacer takes an idle agent (one the verifier lets go now) and a free
// slot; when there is none the tick is dropped and counted, never queued, so a slow verifier cannot make the tool
// send a burst later (k6's constant-arrival-rate behaves the same way).
func (e *Engine) runRate(ctx context.Context) {
	pool := newAgentPool(e.sched.Agents, e.sched.Tasks, e.obs)
	free := newSlots(e.sched.Workers)
	start := time.Now()
	var hits uint64
	lastRate := -1.0
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		wait, stop := e.sched.Pacer.Pace(elapsed, hits)
		if stop {
			return
		}
		if r := e.sched.Pacer.Rate(elapsed + wait); r != lastRate {
			e.obs.SetTargetRate(r)
			lastRate = r
		}
		due := start.Add(elapsed + wait)
		if wait > 0 {
			e.obs.SetScheduleLag(0)
			if !sleep(ctx, wait, nil) {
				return
			}
		} else {
			e.obs.SetScheduleLag(time.Since(due))
		}
		hits++
		var w int
		select {
		case w = <-free:
		default:
			e.dropped.Add(1)
			e.obs.CycleDropped()
			continue
		}
		agent, task, st, _, _ := pool.acquire(time.Now())
		if st != poolGot {
			free <- w
			if st == poolEmpty {
				return
			}
			e.dropped.Add(1)
			e.obs.CycleDropped()
			continue
		}
		e.launch(agent, task, w, &due, func() {
			pool.release(agent, time.Now(), e.notBefore(agent))
			free <- w
		})
	}
}
