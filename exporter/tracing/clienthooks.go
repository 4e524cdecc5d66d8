package tracing

import (
	"context"

	"github.com/attestload/attestload/attestation/client"
)

var _ client.Hooks = (*Hooks)(nil)

// CycleStart implements client.Hooks: it opens the cycle's root span for agent a.
func (h *Hooks) CycleStart(ctx context.Context, a *client.Agent, task int) context.Context {
	if a == nil {
		return h.StartCycle(ctx, "", -1, task)
	}
	return h.StartCycle(ctx, a.ID, a.Index, task)
}
