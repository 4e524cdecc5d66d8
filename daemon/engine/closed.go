package engine

import (
	"context"
	"sync"
	"time"
)

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
