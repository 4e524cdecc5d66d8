package engine

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// fakeRunner runs cycles that take a configurable (fake) time and tracks concurrency.
type fakeRunner struct {
	took      func(agent, task int) time.Duration
	notBefore func(agent int, end time.Time) time.Time

	mu       sync.Mutex
	inflight int
	maxIn    int
	agentIn  map[int]int // cycles of each agent running now
	overlaps int         // cycles that started while another of the same agent ran
	ends     map[int]time.Time
	starts   map[int][]time.Time
}

func newFakeRunner(took time.Duration) *fakeRunner {
	return &fakeRunner{took: func(int, int) time.Duration { return took }, ends: map[int]time.Time{},
		starts: map[int][]time.Time{}, agentIn: map[int]int{}}
}

func (f *fakeRunner) Cycle(ctx context.Context, agent, task, worker int) *record.Record {
	f.mu.Lock()
	f.inflight++
	f.maxIn = max(f.maxIn, f.inflight)
	f.starts[agent] = append(f.starts[agent], time.Now())
	if f.agentIn[agent]++; f.agentIn[agent] > 1 {
		f.overlaps++
	}
	f.mu.Unlock()
	r := &record.Record{AgentIndex: agent, TaskIndex: task, WorkerIndex: worker, Outcome: record.OutcomeSuccess}
	select {
	case <-time.After(f.took(agent, task)):
	case <-ctx.Done():
		r.Outcome = record.OutcomeAborted
	}
	f.mu.Lock()
	f.inflight--
	f.agentIn[agent]--
	f.ends[agent] = time.Now()
	f.mu.Unlock()
	return r
}

func (f *fakeRunner) NotBefore(agent int) time.Time {
	if f.notBefore == nil {
		return time.Time{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notBefore(agent, f.ends[agent])
}

// runBounded runs e inside a synctest bubble and fails the test if Run has not returned after limit of fake time
// (no test here legitimately runs an hour): a run that never stops (a Duration ignored, a schedule that never ends)
// is then a failing test rather than a test binary that hangs until its timeout. It aborts the run, so that the
// bubble can end, before it fails.
func runBounded(t *testing.T, e *Engine, ctx context.Context) (Stats, error) {
	t.Helper()
	const limit = time.Hour
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := e.Run(ctx)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-time.After(limit):
	}
	cancel()
	e.Abort()
	<-done
	t.Fatalf("Run had not returned after %s (fake time)", limit)
	return Stats{}, nil
}

// collect is a Sink that keeps every record.
type collect struct {
	mu     sync.Mutex
	recs   []*record.Record
	closed atomic.Bool
}

func (c *collect) Observe(r *record.Record) { c.mu.Lock(); c.recs = append(c.recs, r); c.mu.Unlock() }
func (c *collect) Close() error             { c.closed.Store(true); return nil }

// countObs counts observer events.
type countObs struct {
	nopObserver
	started, dropped, late atomic.Int64
	maxLate                atomic.Int64
}

func (o *countObs) CycleStarted() { o.started.Add(1) }
func (o *countObs) CycleDropped() { o.dropped.Add(1) }
func (o *countObs) CycleLate(d time.Duration) {
	o.late.Add(1)
	for {
		m := o.maxLate.Load()
		if int64(d) <= m || o.maxLate.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func TestClosedKeepsWorkersInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeRunner(time.Second)
		sink := &collect{}
		e, err := New(fr, Schedule{Model: ModelClosed, Agents: 20, Workers: 5, Tasks: 3}, WithResultsSink(sink))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		st, err := runBounded(t, e, t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Finished != 60 || len(sink.recs) != 60 || !sink.closed.Load() {
			t.Fatalf("finished %d, sink got %d (closed %v); want 60", st.Finished, len(sink.recs), sink.closed.Load())
		}
		if fr.maxIn != 5 {
			t.Fatalf("max in flight = %d, want 5", fr.maxIn)
		}
		// 60 one-second cycles on 5 workers kept busy: exactly 12 s.
		if took := time.Since(start); took != 12*time.Second {
			t.Fatalf("run took %s, want 12s (workers idle at some point)", took)
		}
		perAgent := map[int]map[int]bool{}
		for _, r := range sink.recs {
			if perAgent[r.AgentIndex] == nil {
				perAgent[r.AgentIndex] = map[int]bool{}
			}
			perAgent[r.AgentIndex][r.TaskIndex] = true
			if r.ScheduledTime != nil || r.LateSeconds != nil {
				t.Fatalf("closed model record has scheduling times: %+v", r)
			}
		}
		for a := range 20 {
			if len(perAgent[a]) != 3 || !perAgent[a][0] || !perAgent[a][2] {
				t.Fatalf("agent %d tasks = %v, want 0,1,2", a, perAgent[a])
			}
		}
	})
}

func TestClosedHonoursNotBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeRunner(100 * time.Millisecond)
		// The verifier's quote_interval: 2 s after the last evidence.
		fr.notBefore = func(_ int, end time.Time) time.Time { return end.Add(2 * time.Second) }
		sink := &collect{}
		e, _ := New(fr, Schedule{Model: ModelClosed, Agents: 2, Workers: 4, Tasks: 3}, WithResultsSink(sink))
		start := time.Now()
		if _, err := runBounded(t, e, t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(sink.recs) != 6 {
			t.Fatalf("got %d records, want 6", len(sink.recs))
		}
		for a, ss := range fr.starts {
			for i := 1; i < len(ss); i++ {
				if gap := ss[i].Sub(ss[i-1]); gap != 2100*time.Millisecond {
					t.Fatalf("agent %d cycle %d started %s after the previous, want 2.1s", a, i, gap)
				}
			}
		}
		if fr.maxIn != 2 {
			t.Fatalf("max in flight %d, want 2 (one per agent)", fr.maxIn)
		}
		if took := time.Since(start); took != 4*time.Second+300*time.Millisecond {
			t.Fatalf("took %s, want 4.3s", took)
		}
	})
}

func TestFleetHoldsIntervalAndCountsLateness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const agents = 10
		stall := atomic.Bool{}
		fr := newFakeRunner(0)
		fr.took = func(agent, task int) time.Duration {
			if stall.Load() {
				return 25 * time.Second // the verifier stalls: longer than the 10 s interval
			}
			return 200 * time.Millisecond
		}
		sink := &collect{}
		obs := &countObs{}
		e, _ := New(fr, Schedule{Model: ModelFleet, Agents: agents, Workers: 100, Tasks: 6, Interval: 10 * time.Second},
			WithResultsSink(sink), WithObserver(obs))
		start := time.Now()
		go func() {
			time.Sleep(29500 * time.Millisecond)
			stall.Store(true)
		}()
		st, err := runBounded(t, e, t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(sink.recs) != agents*6 {
			t.Fatalf("got %d records, want %d", len(sink.recs), agents*6)
		}
		late := 0
		for _, r := range sink.recs {
			if r.ScheduledTime == nil || r.LateSeconds == nil {
				t.Fatalf("fleet record without scheduled_time/late_seconds: %+v", r)
			}
			due := *r.ScheduledTime - float64(start.UnixNano())/1e9
			want := float64(r.AgentIndex)*1.0 + float64(r.TaskIndex)*10
			if math.Abs(due-want) > 1e-6 {
				t.Fatalf("agent %d task %d due at +%.3fs, want +%.3fs (interval not held)", r.AgentIndex, r.TaskIndex, due, want)
			}
			if *r.LateSeconds > 0.001 {
				late++
			}
			if due < 30 && *r.LateSeconds != 0 {
				t.Fatalf("cycle due before the stall (+%.1fs) started late: %+v", due, r)
			}
		}
		// Tasks 0-3 start on time; task 3 (due at 30+i s) lasts 25 s, so task 4 (due 40+i) starts 15 s late and
		// lasts 25 s too, so task 5 (due 50+i) starts at 80+i: 30 s late.
		if late != agents*2 || obs.late.Load() != int64(late) || st.Late != uint64(late) {
			t.Fatalf("late cycles: records %d, observer %d, Stats.Late %d; want %d", late, obs.late.Load(), st.Late,
				agents*2)
		}
		if got := time.Duration(obs.maxLate.Load()); got != 30*time.Second {
			t.Fatalf("max lateness %s, want 30s", got)
		}
	})
}

func TestRateHoldsTargetAndCountsDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := NewStagedPacer(50, []Stage{{Duration: 20 * time.Second, Target: 50}, {Duration: 20 * time.Second, Target: 150}})
		fr := newFakeRunner(50 * time.Millisecond)
		sink := &collect{}
		obs := &countObs{}
		e, _ := New(fr, Schedule{Model: ModelRate, Agents: 100, Workers: 100, Pacer: p},
			WithResultsSink(sink), WithObserver(obs))
		st, err := runBounded(t, e, t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := 50.0*20 + 100*20 // hold 50/s, ramp 50→150/s
		if got := float64(len(sink.recs)); math.Abs(got-want)/want > 0.01 {
			t.Fatalf("%v cycles, want %v within 1%%", got, want)
		}
		if st.Dropped != 0 {
			t.Fatalf("dropped %d with plenty of agents", st.Dropped)
		}
		for _, r := range sink.recs {
			if r.LateSeconds == nil || *r.LateSeconds != 0 {
				t.Fatalf("rate cycle started late: %+v", r)
			}
		}
	})
	synctest.Test(t, func(t *testing.T) {
		// 100/s with 10 agents whose cycles take 1 s: at most 10/s can start, 90/s are dropped.
		p, _ := NewStagedPacer(100, []Stage{{Duration: 10 * time.Second, Target: 100}})
		fr := newFakeRunner(time.Second)
		sink := &collect{}
		obs := &countObs{}
		e, _ := New(fr, Schedule{Model: ModelRate, Agents: 10, Workers: 1000, Pacer: p},
			WithResultsSink(sink), WithObserver(obs))
		st, _ := runBounded(t, e, t.Context())
		if st.Started != 100 || st.Dropped != 900 || obs.dropped.Load() != 900 {
			t.Fatalf("started %d dropped %d (observer %d); want 100 and 900", st.Started, st.Dropped, obs.dropped.Load())
		}
		if fr.maxIn != 10 {
			t.Fatalf("max in flight %d, want 10", fr.maxIn)
		}
	})
}

// TestRateDropsForWantOfAWorker: fewer workers than agents, so ticks are dropped because every worker is busy,
// not only because every agent is. Every tick of the pacer is either started or counted as dropped.
func TestRateDropsForWantOfAWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 10/s for 10 s = 100 ticks, 0.1 s apart. 2 workers, 10 agents, cycles of 1.05 s: the two workers start
		// at 0 and 0.1 s, are busy until 1.05 and 1.15 s, start again at the ticks of 1.1 and 1.2 s, and so on:
		// starts at k*1.1 s (k = 0..9) and k*1.1+0.1 s (k = 0..8), 19 in all; the other 81 ticks find no worker.
		p, _ := NewStagedPacer(10, []Stage{{Duration: 10 * time.Second, Target: 10}})
		fr := newFakeRunner(1050 * time.Millisecond)
		sink := &collect{}
		obs := &countObs{}
		e, _ := New(fr, Schedule{Model: ModelRate, Agents: 10, Workers: 2, Pacer: p},
			WithResultsSink(sink), WithObserver(obs))
		st, err := runBounded(t, e, t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Started != 19 || st.Dropped != 81 || obs.dropped.Load() != 81 || len(sink.recs) != 19 {
			t.Fatalf("started %d, dropped %d (observer %d), %d records; want 19 started and 81 dropped",
				st.Started, st.Dropped, obs.dropped.Load(), len(sink.recs))
		}
		if fr.maxIn != 2 {
			t.Fatalf("max in flight %d, want 2 (the workers)", fr.maxIn)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		// Both kinds of drop in one run: 4 agents, 2 workers, cycles of 0.25 s, and the verifier holds each agent
		// back for 1 s after its cycle. At 0.2 s both workers are busy (no worker); at 0.6 s a worker is free but
		// agents 0-2 are held back and agent 3 is running (no agent). Either way the tick is counted.
		p, _ := NewStagedPacer(10, []Stage{{Duration: 10 * time.Second, Target: 10}})
		fr := newFakeRunner(250 * time.Millisecond)
		fr.notBefore = func(_ int, end time.Time) time.Time { return end.Add(time.Second) }
		sink := &collect{}
		obs := &countObs{}
		e, _ := New(fr, Schedule{Model: ModelRate, Agents: 4, Workers: 2, Pacer: p},
			WithResultsSink(sink), WithObserver(obs))
		start := time.Now()
		st, err := runBounded(t, e, t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Started+st.Dropped != 100 || st.Dropped != uint64(obs.dropped.Load()) {
			t.Fatalf("started %d + dropped %d (observer %d) != the pacer's 100 ticks", st.Started, st.Dropped,
				obs.dropped.Load())
		}
		// The first second, traced by hand: started at 0, 0.1, 0.3, 0.4 s; 0.2 and 0.5 s dropped for want of a
		// worker; 0.6-0.9 s dropped for want of an agent (agent 0 is held back until 1.25 s).
		var first []float64
		for _, r := range sink.recs {
			if at := *r.ScheduledTime - float64(start.UnixNano())/1e9; at < 1 {
				first = append(first, math.Round(at*10)/10)
			}
		}
		slices.Sort(first)
		if !slices.Equal(first, []float64{0, 0.1, 0.3, 0.4}) {
			t.Fatalf("cycles started in the first second at %v, want [0 0.1 0.3 0.4]", first)
		}
		if fr.maxIn != 2 {
			t.Fatalf("max in flight %d, want 2 (the workers)", fr.maxIn)
		}
	})
}

func TestStopDrainsThenAborts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeRunner(0)
		fr.took = func(agent, _ int) time.Duration {
			if agent%2 == 0 {
				return 3 * time.Second // finishes within the drain timeout
			}
			return time.Hour // still running at the deadline
		}
		sink := &collect{}
		e, _ := New(fr, Schedule{Model: ModelClosed, Agents: 4, Workers: 4, DrainTimeout: 5 * time.Second},
			WithResultsSink(sink))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		st, _ := runBounded(t, e, ctx)
		if took := time.Since(start); took != 6*time.Second {
			t.Fatalf("Run returned after %s, want 6s (1s run + 5s drain)", took)
		}
		if st.Success != 2 || st.Aborted != 2 || len(sink.recs) != 4 || !st.Aborting {
			t.Fatalf("stats %+v, %d records; want 2 success, 2 aborted, all recorded", st, len(sink.recs))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		// A second signal (Abort) during the drain ends it at once.
		fr := newFakeRunner(time.Hour)
		sink := &collect{}
		e, _ := New(fr, Schedule{Model: ModelClosed, Agents: 3, Workers: 3, DrainTimeout: time.Minute},
			WithResultsSink(sink))
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		time.AfterFunc(2*time.Second, e.Abort)
		start := time.Now()
		st, _ := runBounded(t, e, ctx)
		if took := time.Since(start); took != 2*time.Second {
			t.Fatalf("Run returned after %s, want 2s", took)
		}
		if st.Aborted != 3 || len(sink.recs) != 3 {
			t.Fatalf("stats %+v; want 3 aborted records", st)
		}
	})
}

func TestDurationStopsTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fr := newFakeRunner(time.Second)
		sink := &collect{}
		e, _ := New(fr, Schedule{Model: ModelClosed, Agents: 2, Workers: 2, Duration: 9500 * time.Millisecond,
			DrainTimeout: time.Minute}, WithResultsSink(sink))
		st, _ := runBounded(t, e, t.Context())
		// Cycles start at 0..9 s on each worker; the one started at 9 s finishes within the drain.
		if st.Success != 20 || st.Aborted != 0 {
			t.Fatalf("stats %+v; want 20 successes", st)
		}
	})
}

func TestNewEngineRejectsBadSchedules(t *testing.T) {
	fr := newFakeRunner(0)
	for _, s := range []Schedule{
		{Model: "open", Agents: 1, Workers: 1},
		{Model: ModelClosed, Agents: 0, Workers: 1},
		{Model: ModelClosed, Agents: 1, Workers: 0},
		{Model: ModelFleet, Agents: 1, Workers: 1},
		{Model: ModelRate, Agents: 1, Workers: 1},
	} {
		if _, err := New(fr, s); err == nil {
			t.Errorf("NewEngine accepted %+v", s)
		}
	}
}

// In the fleet model an agent never has two cycles at once, also when cycles finishing while the scheduler waits
// for a worker push items due earlier than the one it is about to start (agents running late, few workers).
func TestFleetNeverRunsAnAgentTwiceAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Agent 0's cycles take far longer than the interval, so its next due time lies well before the others':
		// when one of its cycles ends while the scheduler waits for a worker, it pushes the earliest item.
		const agents, tasks = 4, 6
		fr := newFakeRunner(0)
		fr.took = func(agent, task int) time.Duration {
			if agent == 0 {
				return 5 * time.Second
			}
			return time.Duration(300+100*agent) * time.Millisecond
		}
		sink := &collect{}
		e, err := New(fr, Schedule{Model: ModelFleet, Agents: agents, Workers: 2, Tasks: tasks,
			Interval: time.Second}, WithResultsSink(sink))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := runBounded(t, e, context.Background()); err != nil {
			t.Fatal(err)
		}
		if fr.overlaps != 0 {
			t.Errorf("%d cycles started while another cycle of the same agent ran", fr.overlaps)
		}
		perAgent := map[int]int{}
		for _, r := range sink.recs {
			perAgent[r.AgentIndex]++
		}
		for a := range agents {
			if perAgent[a] != tasks {
				t.Errorf("agent %d ran %d cycles, want %d", a, perAgent[a], tasks)
			}
		}
	})
}
