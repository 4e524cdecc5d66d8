package engine

import (
	"context"
	"time"

	"github.com/attestload/attestload/attestation/record"
)

// Sink receives every finished record. Observe must not block (buffer, and count drops if it must).
//
// The one exception is the results writer added with WithResultsSink: it may block the fan-out goroutine (never a
// cycle directly) because losing a results line is worse than slowing the run; see Fanout.
type Sink interface {
	Observe(r *record.Record)
	Close() error
}

// Observer receives scheduler events for live metrics. All methods must be cheap and non-blocking.
type Observer interface {
	CycleStarted()                     // in-flight gauge: one more cycle running
	CycleFinished()                    // in-flight gauge: one cycle fewer
	CycleDropped()                     // rate model: tick found no idle agent (never queued)
	CycleLate(late time.Duration)      // fleet/rate: started after its due time
	SetTargetRate(perSecond float64)   // rate model stages; fleet: agents/interval
	SetScheduleLag(d time.Duration)    // how far behind schedule the engine currently is
	SetAgents(idle, busy, waiting int) // agents by state (waiting = blocked by NotBefore/Retry-After)
	SetBackingOff(agents int)          // agents whose last cycle failed and who wait before the next one
	SetVerifierUp(up bool)             // false while the verifier cannot be reached at all
	OutageStarted()                    // the verifier became unreachable
}

// Runner performs attestation cycles for the engine. It is the seam between scheduling and the protocol: the
// assembly adapts the attestation client to it, and scheduler tests use a fake.
type Runner interface {
	// Cycle runs one attestation cycle of the agent with the given index and returns its record. It never fails:
	// failures are recorded in the record. When ctx is cancelled the cycle must return promptly (aborted).
	Cycle(ctx context.Context, agent, task, worker int) *record.Record
	// NotBefore is the earliest time the verifier allows the agent's next cycle to start (its quote_interval or
	// Retry-After); the zero time means now.
	NotBefore(agent int) time.Time
}

// nopObserver lets the engine call observer methods unconditionally.
type nopObserver struct{}

func (nopObserver) CycleStarted()                {}
func (nopObserver) CycleFinished()               {}
func (nopObserver) CycleDropped()                {}
func (nopObserver) CycleLate(time.Duration)      {}
func (nopObserver) SetTargetRate(float64)        {}
func (nopObserver) SetScheduleLag(time.Duration) {}
func (nopObserver) SetAgents(int, int, int)      {}
func (nopObserver) SetBackingOff(int)            {}
func (nopObserver) SetVerifierUp(bool)           {}
func (nopObserver) OutageStarted()               {}
