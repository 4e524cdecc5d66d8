package engine

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// Backoff is how long an agent waits after a failed cycle before its next one, as a real agent waits for its next
// attempt when it cannot reach its verifier: Initial after the first failure, doubling with every further one up
// to Max, each wait drawn at random from its upper half so that a fleet that failed together does not come back
// together. A successful cycle resets it. Max 0 turns backoff off (the old tool's back-to-back retries).
type Backoff struct {
	Initial time.Duration `key:"initial"`
	Max     time.Duration `key:"max"`
}

// agentBackoff is one agent's backoff state.
type agentBackoff struct {
	until atomic.Int64 // Unix nanoseconds before which the agent does not start; 0: free
	fails atomic.Int32 // consecutive failed cycles
}

// backoffs holds every agent's state; an agent's cycle is the only writer of its entry.
type backoffs struct {
	cfg     Backoff
	agents  []agentBackoff
	backing atomic.Int64 // agents with fails > 0
	mu      sync.Mutex   // guards rng
	rng     *rand.Rand
}

func newBackoffs(n int, cfg Backoff, seed uint64) *backoffs {
	if cfg.Max <= 0 {
		return nil
	}
	if cfg.Initial <= 0 || cfg.Initial > cfg.Max {
		cfg.Initial = min(time.Second, cfg.Max)
	}
	return &backoffs{cfg: cfg, agents: make([]agentBackoff, n), rng: rand.New(rand.NewPCG(seed, 0xbac0ff))}
}

// note records a finished cycle of agent and reports the new number of agents backing off, and whether it changed.
func (b *backoffs) note(agent int, outcome record.Outcome, now time.Time) (int, bool) {
	a := &b.agents[agent]
	switch outcome {
	case record.OutcomeSuccess:
		a.until.Store(0)
		if a.fails.Swap(0) > 0 {
			return int(b.backing.Add(-1)), true
		}
	case record.OutcomeFail:
		n := a.fails.Add(1)
		d := b.cfg.Initial << min(n-1, 30)
		if d > b.cfg.Max || d <= 0 {
			d = b.cfg.Max
		}
		b.mu.Lock()
		d = d/2 + time.Duration(b.rng.Int64N(int64(d/2)+1))
		b.mu.Unlock()
		a.until.Store(now.Add(d).UnixNano())
		if n == 1 {
			return int(b.backing.Add(1)), true
		}
	}
	// Aborted cycles say nothing about the verifier.
	return int(b.backing.Load()), false
}

// notBefore is when the agent may start again; the zero time when it is not backing off.
func (b *backoffs) notBefore(agent int) time.Time {
	if b == nil {
		return time.Time{}
	}
	if u := b.agents[agent].until.Load(); u != 0 {
		return time.Unix(0, u)
	}
	return time.Time{}
}
