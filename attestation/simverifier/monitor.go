package simverifier

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// timeoutMultiplier is the real push-agent monitor's: an agent that has not attested for 5 × quote_interval
// since its last verification is marked timed out.
const timeoutMultiplier = 5

// TimeoutWindow is how long after a verification the push-agent timeout monitor of a verifier with this quote
// interval (seconds) marks an agent timed out unless it attested again; 0 when the interval is 0.
func TimeoutWindow(quoteInterval int) time.Duration {
	return time.Duration(quoteInterval*timeoutMultiplier) * time.Second
}

// scheduleTimeout is the real monitor's schedule_agent_timeout, run after each verification: it replaces the
// agent's timer in the process that verified (only there: the real timers live in each worker's IOLoop, so a
// timer of another process, set by an earlier attestation there, still fires). p nil is the single monitor of a
// verifier without the process model.
func (v *Verifier) scheduleTimeout(p *process, agentID string) {
	if !v.cfg.TimeoutMonitor || v.cfg.QuoteInterval <= 0 {
		return
	}
	if p == nil {
		p = v.monitor
	}
	window := TimeoutWindow(v.cfg.QuoteInterval)
	if v.timeoutWindow > 0 {
		window = v.timeoutWindow
	}
	v.timerMu.Lock()
	defer v.timerMu.Unlock()
	if v.timersStopped {
		return
	}
	if old := p.timers[agentID]; old != nil {
		old.t.Stop()
	}
	h := &timeoutHandle{}
	h.t = time.AfterFunc(window, func() { v.timeoutFired(p, agentID, h) })
	p.timers[agentID] = h
}

// timeoutHandle is one scheduled timeout; the callback compares its own handle with the current one (under
// timerMu), as the real monitor does, because a stopped timer may already have fired.
type timeoutHandle struct{ t *time.Timer }

// timeoutFired marks the agent timed out (accept_attestations false) if h is still its timer in p. The work runs
// inside the process, after the request it may be busy with, as the real callback runs in the worker's IOLoop.
func (v *Verifier) timeoutFired(p *process, agentID string, h *timeoutHandle) {
	v.timerMu.Lock()
	if p.timers[agentID] != h || v.timersStopped {
		v.timerMu.Unlock()
		return
	}
	delete(p.timers, agentID)
	v.timerMu.Unlock()
	if v.procs != nil && p != v.monitor {
		if !v.procs.acquire(context.Background(), p) {
			return
		}
		defer v.procs.release(p)
	}
	spendCPU(v.cfg.Costs.Timeout)
	a := v.agentMem(agentID)
	if a == nil {
		return
	}
	a.mu.Lock()
	marked := a.accept
	a.accept = false
	a.mu.Unlock()
	if !marked {
		return
	}
	v.timeouts.Add(1)
	v.log.Debug("agent timed out (no attestation within 5 × quote_interval)", "agent_id", agentID,
		"window", TimeoutWindow(v.cfg.QuoteInterval))
	if v.db != nil {
		v.db.exec(context.Background(), "agent timeout", func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE verifiermain SET accept_attestations = false
				WHERE agent_id = $1 AND accept_attestations`, agentID)
			return err
		})
	}
}

// stopTimeouts stops every pending timeout timer (at shutdown); none is set afterwards.
func (v *Verifier) stopTimeouts() {
	v.timerMu.Lock()
	defer v.timerMu.Unlock()
	v.timersStopped = true
	all := []*process{v.monitor}
	if v.procs != nil {
		all = append(all, v.procs.procs...)
	}
	for _, p := range all {
		for id, h := range p.timers {
			h.t.Stop()
			delete(p.timers, id)
		}
	}
}

// Timeouts is how many times the push-agent timeout monitor marked an agent timed out.
func (v *Verifier) Timeouts() int64 { return v.timeouts.Load() }
