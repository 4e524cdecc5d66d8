package tracing

import (
	"context"
	"encoding/binary"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/attestload/attestload/attestation/record"
)

// Span names.
const (
	SpanCycle   = "attestation.cycle"
	SpanVerdict = "attestation.verdict"
)

// PhaseSpanName is the span name of a client phase ("session", "negotiate", "evidence").
func PhaseSpanName(phase record.Phase) string { return "attestation." + string(phase) }

// Sampling reasons, the value of attestload.sampling.reason on kept roots.
const (
	ReasonFailed = "failed"
	ReasonSlow   = "slow"
	ReasonRatio  = "ratio"
)

// Hooks builds one trace per attestation cycle. It implements the attestation client's Hooks interface; all
// methods are safe for concurrent use and do nothing when tracing is disabled.
type Hooks struct{ p *Provider }

type rootKey struct{}

// StartCycle opens the cycle's root span. It is CycleStart without the client's Agent type, so the hooks can be
// used (and benchmarked) without a client.
func (h *Hooks) StartCycle(ctx context.Context, agentID string, agentIndex, task int) context.Context {
	if !h.p.enabled {
		return ctx
	}
	ctx, span := h.p.tracer.Start(ctx, SpanCycle,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attribute.String("attestload.agent.id", agentID),
			attribute.Int("attestload.agent.index", agentIndex),
			attribute.Int("attestload.task", task),
		))
	// The root is kept in the context under its own key so CycleEnd finds it even when handed a phase's context.
	return context.WithValue(ctx, rootKey{}, span)
}

// PhaseStart opens a child span for a phase; the returned func ends it, marking it as an error when !ok.
func (h *Hooks) PhaseStart(ctx context.Context, phase record.Phase) (context.Context, func(ok bool)) {
	if !h.p.enabled {
		return ctx, func(bool) {}
	}
	ctx, span := h.p.tracer.Start(ctx, PhaseSpanName(phase), trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func(ok bool) {
		if !ok {
			span.SetStatus(codes.Error, string(phase)+" failed")
		}
		span.End()
	}
}

// Request adds the attempt as an event to the current (phase) span: the client's view of the request, with the
// retry wait and error class that the HTTP span cannot know.
func (h *Hooks) Request(ctx context.Context, att *record.Attempt) {
	if !h.p.enabled || att == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, attribute.String("attestload.action", att.Action.String()),
		attribute.String("attestload.request_id", att.RequestID))
	if att.Status != nil {
		attrs = append(attrs, attribute.Int("http.response.status_code", *att.Status))
	}
	if att.Error != nil {
		attrs = append(attrs, attribute.String("error.type", att.Error.String()))
	}
	if att.Code != "" {
		attrs = append(attrs, attribute.String("attestload.verifier_code", att.Code))
	}
	if att.RetryAfter != nil && *att.RetryAfter > 0 {
		attrs = append(attrs, attribute.Int("attestload.retry_after_seconds", *att.RetryAfter))
	}
	span.AddEvent("attestation.request", trace.WithAttributes(attrs...))
}

// CycleEnd ends the root span, decides whether the trace is kept, and sets r.TraceID only when it is.
func (h *Hooks) CycleEnd(ctx context.Context, r *record.Record) {
	if !h.p.enabled || r == nil {
		return
	}
	root, ok := ctx.Value(rootKey{}).(trace.Span)
	if !ok || !root.IsRecording() {
		return
	}
	sc := root.SpanContext()
	attrs := []attribute.KeyValue{attribute.String("attestload.outcome", r.Outcome.String())}
	if r.AttestationIndex != nil {
		attrs = append(attrs, attribute.Int("attestload.attestation_index", *r.AttestationIndex))
	}
	if r.Error != nil {
		attrs = append(attrs, attribute.String("error.type", r.Error.String()))
	}
	if r.Profile != "" {
		attrs = append(attrs, attribute.String("attestload.profile", r.Profile))
	}
	reason := h.p.decide(sc.TraceID(), r)
	attrs = append(attrs, attribute.String(attrDecision, reason))
	root.SetAttributes(attrs...)
	if r.Outcome != record.OutcomeSuccess {
		root.SetStatus(codes.Error, "cycle "+r.Outcome.String())
	}
	root.End()
	if !h.p.tail.takeDecision(sc.TraceID()) {
		return
	}
	id := sc.TraceID().String()
	r.TraceID = &id
	h.p.mu.Lock()
	if len(h.p.parents) < h.p.maxParent {
		h.p.parents[sc.TraceID()] = sc.SpanID()
	} else {
		h.p.lostVerdictSpans++
	}
	h.p.mu.Unlock()
}

// decide returns why a finished cycle's trace is kept, or "" to drop it.
func (p *Provider) decide(id trace.TraceID, r *record.Record) string {
	if r.Outcome == record.OutcomeFail {
		return ReasonFailed
	}
	if p.slow > 0 && r.EndTime > 0 && r.StartTime > 0 &&
		time.Duration((r.EndTime-r.StartTime)*float64(time.Second)) >= p.slow {
		return ReasonSlow
	}
	if p.ratio >= 1 {
		return ReasonRatio
	}
	// The same rule as TraceIDRatioBased: trace ids are random, so their low 63 bits are a uniform draw that
	// any later stage (a collector) can repeat.
	if binary.BigEndian.Uint64(id[8:16])>>1 < uint64(p.ratio*(1<<63)) {
		return ReasonRatio
	}
	return ""
}
