package engine

import (
	"context"
	"time"
)

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
