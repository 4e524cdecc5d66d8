package engine

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// runFleet: every agent is due once per Interval on a fixed grid (agent i's phase is i/Agents of the interval,
// plus jitter). A cycle that cannot start at its due time, because the agent's previous cycle is still running,
// because the verifier said not yet, or because every worker slot is busy, starts as soon as it can and its
// lateness is recorded. Slots are not skipped: a verifier that falls behind shows up as growing lateness.
func (e *Engine) runFleet(ctx context.Context) {
	e.obs.SetTargetRate(float64(e.sched.Agents) / e.sched.Interval.Seconds())
	f := newFleet(e.sched, time.Now())
	free := newSlots(e.sched.Workers)
	for ctx.Err() == nil {
		it, changed, st := f.head()
		switch st {
		case poolEmpty:
			return
		case poolWait:
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		itDue := f.time(it.due)
		at := maxTime(itDue, e.notBefore(int(it.agent)))
		now := time.Now()
		if at.After(now) {
			e.obs.SetScheduleLag(0)
			if !sleep(ctx, at.Sub(now), changed) {
				return
			}
			continue
		}
		e.obs.SetScheduleLag(now.Sub(itDue))
		var w int
		select {
		case <-ctx.Done():
			return
		case w = <-free:
		}
		task, ok := f.take(it)
		if !ok {
			free <- w
			continue
		}
		due := itDue
		e.launch(int(it.agent), task, w, &due, func() {
			f.done(it)
			free <- w
		})
	}
}

// fleet holds every agent's next due time. The scheduler reads and takes items; cycles put their agent's next
// item back from their own goroutines, hence the mutex.
type fleet struct {
	interval time.Duration
	jitterOf float64 // Schedule.Jitter
	maxTasks int     // Schedule.Tasks; 0 = unlimited

	base time.Time // due times are nanoseconds from base, so that an item takes 24 bytes, not 56

	mu      sync.Mutex
	rng     *rand.Rand    // guarded by mu once cycles run
	changed chan struct{} // closed and replaced whenever a cycle ends
	due     dueHeap
	tasks   []int32 // cycles started per agent
	busy    int     // agents with a cycle running
}

// newFleet puts every agent on the grid: agent i is first due at start + i/Agents of the interval, plus jitter,
// but never before start.
func newFleet(s Schedule, start time.Time) *fleet {
	f := &fleet{interval: s.Interval, jitterOf: s.Jitter, maxTasks: s.Tasks, rng: rand.New(rand.NewPCG(s.Seed, 0x5eed)),
		base: start, changed: make(chan struct{}), due: make(dueHeap, 0, s.Agents), tasks: make([]int32, s.Agents)}
	for i := range s.Agents {
		grid := int64(s.Interval) * int64(i) / int64(s.Agents)
		f.due = append(f.due, dueItem{grid: grid, due: max(0, grid+int64(f.jitter())), agent: int32(i)})
	}
	heap.Init(&f.due)
	return f
}

// jitter moves a due time by up to ±Jitter/2 of the interval, at random.
func (f *fleet) jitter() time.Duration {
	if f.jitterOf == 0 {
		return 0
	}
	return time.Duration((f.rng.Float64() - 0.5) * f.jitterOf * float64(f.interval))
}

// head returns the earliest item (poolGot), or poolWait when no agent is due until a running cycle ends, or
// poolEmpty when every agent has run its tasks. changed is closed when the next cycle ends.
func (f *fleet) head() (it dueItem, changed <-chan struct{}, st poolState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(f.due) > 0:
		return f.due[0], f.changed, poolGot
	case f.busy == 0:
		return dueItem{}, nil, poolEmpty
	default:
		return dueItem{}, f.changed, poolWait
	}
}

// take removes it, which head returned, and returns the task index of its agent's cycle. It refuses (false) when
// it is no longer the earliest item: a cycle that finished while the scheduler waited for a worker may have pushed
// an item due earlier than it, and popping would then take that item off the heap and leave it there, so that its
// agent ran twice at once.
func (f *fleet) take(it dueItem) (task int, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.due) == 0 || f.due[0] != it {
		return 0, false
	}
	heap.Pop(&f.due)
	task = int(f.tasks[it.agent])
	f.tasks[it.agent]++
	f.busy++
	return task, true
}

// done is called when the cycle of it has ended: the agent is due again one interval further on its grid (plus
// new jitter) unless it has run all its tasks, and the scheduler is woken.
func (f *fleet) done(it dueItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.busy--
	if f.maxTasks == 0 || int(f.tasks[it.agent]) < f.maxTasks {
		grid := it.grid + int64(f.interval)
		heap.Push(&f.due, dueItem{grid: grid, due: grid + int64(f.jitter()), agent: it.agent})
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// time is the wall-clock time of a due time or grid point d (nanoseconds from base).
func (f *fleet) time(d int64) time.Time { return f.base.Add(time.Duration(d)) }

// dueItem is an agent's next slot: its grid point and its due time (the grid point plus jitter), in nanoseconds
// from the fleet's base.
type dueItem struct {
	grid, due int64
	agent     int32
}

type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
