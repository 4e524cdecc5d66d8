package tracing

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// attrDecision is set on a cycle's root span just before it ends; the tail sampler reads it to keep or drop the
// whole trace. Its value is the reason ("failed", "slow", "ratio") or "" for drop.
const attrDecision = "attestload.sampling.reason"

// Stats counts what the tail sampler did since start.
type Stats struct {
	TracesKept       uint64 // exported
	TracesDropped    uint64 // decided against (ordinary cycles outside the ratio)
	TracesOverflowed uint64 // not buffered because MaxTraces traces were pending; never exported
	SpansOverflowed  uint64 // dropped because their trace already held MaxSpansPerTrace spans
	SpansOrphaned    uint64 // ended when their trace was no longer (or never) pending
	VerdictSpansLost uint64 // kept traces whose verdict span could not be added (parent table full)
}

type pendingTrace struct {
	spans    []sdktrace.ReadOnlySpan
	overflow bool // this trace was refused at its start: drop everything of it
}

// tailSampler buffers the spans of each trace until the trace's root ends, then hands all of them to next or
// forgets them. It assumes roots end last (the client ends every phase before the cycle), and treats anything
// ending afterwards as orphaned.
type tailSampler struct {
	next        sdktrace.SpanProcessor
	maxTraces   int
	maxSpans    int
	mu          sync.Mutex
	pending     map[trace.TraceID]*pendingTrace
	decided     sync.Map // trace.TraceID -> bool, written at root end, consumed by Hooks.CycleEnd
	kept        atomic.Uint64
	dropped     atomic.Uint64
	traceOverfl atomic.Uint64
	spanOverfl  atomic.Uint64
	orphaned    atomic.Uint64
}

func newTailSampler(next sdktrace.SpanProcessor, maxTraces, maxSpans int) *tailSampler {
	return &tailSampler{next: next, maxTraces: maxTraces, maxSpans: maxSpans,
		pending: make(map[trace.TraceID]*pendingTrace)}
}

func (t *tailSampler) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	if s.Parent().IsValid() {
		return
	}
	id := s.SpanContext().TraceID()
	t.mu.Lock()
	if len(t.pending) >= t.maxTraces {
		t.pending[id] = &pendingTrace{overflow: true}
		t.traceOverfl.Add(1)
	} else {
		t.pending[id] = &pendingTrace{}
	}
	t.mu.Unlock()
	t.next.OnStart(parent, s)
}

func (t *tailSampler) OnEnd(s sdktrace.ReadOnlySpan) {
	id := s.SpanContext().TraceID()
	root := !s.Parent().IsValid()
	t.mu.Lock()
	p, ok := t.pending[id]
	if !ok {
		t.mu.Unlock()
		if isLate(s) {
			// A verdict span of a trace already exported: the decision was made, pass it on.
			t.next.OnEnd(s)
			return
		}
		t.orphaned.Add(1)
		return
	}
	if !root {
		switch {
		case p.overflow:
		case len(p.spans) >= t.maxSpans:
			t.spanOverfl.Add(1)
		default:
			p.spans = append(p.spans, s)
		}
		t.mu.Unlock()
		return
	}
	delete(t.pending, id)
	t.mu.Unlock()

	keep, marked := false, false
	for _, kv := range s.Attributes() {
		if kv.Key == attrDecision && kv.Value.Type() == attribute.STRING {
			marked = true
			keep = kv.Value.AsString() != ""
		}
	}
	if p.overflow {
		keep = false
	} else {
		if keep {
			for _, c := range p.spans {
				t.next.OnEnd(c)
			}
			t.next.OnEnd(s)
			t.kept.Add(1)
		} else {
			t.dropped.Add(1)
		}
	}
	// Only cycle roots (marked by Hooks.CycleEnd, which consumes the answer) leave a decision behind; any other
	// root, e.g. a request made outside a cycle, would otherwise leave an entry nobody collects.
	if marked {
		t.decided.Store(id, keep)
	}
}

// takeDecision reports whether the trace was exported and forgets the answer.
func (t *tailSampler) takeDecision(id trace.TraceID) bool {
	v, ok := t.decided.LoadAndDelete(id)
	return ok && v.(bool)
}

func (t *tailSampler) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	clear(t.pending)
	t.mu.Unlock()
	return t.next.Shutdown(ctx)
}

func (t *tailSampler) ForceFlush(ctx context.Context) error { return t.next.ForceFlush(ctx) }

func (t *tailSampler) stats() Stats {
	return Stats{TracesKept: t.kept.Load(), TracesDropped: t.dropped.Load(),
		TracesOverflowed: t.traceOverfl.Load(), SpansOverflowed: t.spanOverfl.Load(), SpansOrphaned: t.orphaned.Load()}
}

// attrLate marks spans added to an already exported trace (the verdict span).
const attrLate = "attestload.late_span"

func isLate(s sdktrace.ReadOnlySpan) bool {
	for _, kv := range s.Attributes() {
		if kv.Key == attrLate {
			return kv.Value.Type() == attribute.BOOL && kv.Value.AsBool()
		}
	}
	return false
}
