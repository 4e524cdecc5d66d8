package client

import (
	"context"

	"github.com/attestload/attestload/attestation/record"
)

// Hooks lets tracing and metrics observe a cycle without this package importing them. Implementations must be
// safe for concurrent use: many agents run cycles at once.
type Hooks interface {
	// CycleStart is called before anything else in a cycle; the returned context (e.g. carrying a span) is the
	// parent of every phase.
	CycleStart(ctx context.Context, a *Agent, task int) context.Context
	// PhaseStart is called when a phase begins; HTTP requests of the phase are made with the returned context, so
	// a wrapping transport can create child spans. The returned func is called once when the phase ends.
	PhaseStart(ctx context.Context, phase record.Phase) (context.Context, func(ok bool))
	// Request is called after each HTTP attempt, with the attempt as it will appear in the Record.
	Request(ctx context.Context, att *record.Attempt)
	// CycleEnd is called with the finished Record before Cycle returns it; it may set r.TraceID.
	CycleEnd(ctx context.Context, r *record.Record)
}

type nopHooks struct{}

func (nopHooks) CycleStart(ctx context.Context, _ *Agent, _ int) context.Context { return ctx }
func (nopHooks) PhaseStart(ctx context.Context, _ record.Phase) (context.Context, func(bool)) {
	return ctx, func(bool) {}
}
func (nopHooks) Request(context.Context, *record.Attempt) {}
func (nopHooks) CycleEnd(context.Context, *record.Record) {}
