package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/attestload/attestload/attestation/record"
)

// VerdictSink adds a verdict span to each exported trace once the record's verdict is known. Put it after the
// verdict watcher in the sink chain; it implements the engine's Sink.
type VerdictSink struct{ p *Provider }

// VerdictSink returns the sink that completes exported traces with their verdict.
func (p *Provider) VerdictSink() *VerdictSink { return &VerdictSink{p: p} }

// Observe adds an "attestation.verdict" span under the cycle's root, from the evidence being accepted to the
// verdict being observed. Records without a trace id (not exported) are ignored. It never blocks on I/O.
func (s *VerdictSink) Observe(r *record.Record) {
	p := s.p
	if !p.enabled || r == nil || r.TraceID == nil {
		return
	}
	tid, err := trace.TraceIDFromHex(*r.TraceID)
	if err != nil {
		return
	}
	p.mu.Lock()
	sid, ok := p.parents[tid]
	delete(p.parents, tid)
	p.mu.Unlock()
	if !ok || !r.UpdateSuccessful || len(r.UpdateAttempts) == 0 {
		return
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.FlagsSampled, Remote: true})
	start := unix(r.UpdateAttempts[len(r.UpdateAttempts)-1].EndTime)
	end := start
	if r.Verdict.Seconds != nil {
		end = start.Add(time.Duration(*r.Verdict.Seconds * float64(time.Second)))
	}
	attrs := []attribute.KeyValue{
		attribute.Bool(attrLate, true),
		attribute.String("attestload.verdict.evaluation", r.Verdict.Evaluation),
	}
	if r.Verdict.FailureReason != nil {
		attrs = append(attrs, attribute.String("attestload.verdict.failure_reason", *r.Verdict.FailureReason))
	}
	_, span := p.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), SpanVerdict,
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	span.End(trace.WithTimestamp(end))
}

// Close forgets the verdict parents; the provider's Shutdown flushes the exporter.
func (s *VerdictSink) Close() error {
	s.p.mu.Lock()
	clear(s.p.parents)
	s.p.mu.Unlock()
	return nil
}

func unix(sec float64) time.Time {
	return time.Unix(0, int64(sec*float64(time.Second)))
}
