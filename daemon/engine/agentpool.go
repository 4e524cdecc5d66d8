package engine

import (
	"container/heap"
	"sync"
	"time"
)

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
	obs      Observer
}

func newAgentPool(n, maxTasks int, obs Observer) *agentPool {
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

// slots hands out worker indexes to fleet and rate cycles and bounds how many run at once.
type slots chan int

func newSlots(n int) slots {
	s := make(slots, n)
	for i := range n {
		s <- i
	}
	return s
}
