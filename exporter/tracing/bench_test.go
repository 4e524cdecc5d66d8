package tracing

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/exporter/metrics"
)

// BenchmarkHooksAndObserve is this layer's own cost per cycle, without HTTP: root, three phases, four request
// events, the sampling decision and the metrics update of one record. "off" is a disabled provider and no
// metrics (what a run without observability pays).
func BenchmarkHooksAndObserve(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "metrics+tracing-0.01"
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{Settings: Settings{Enabled: on, SampleRatio: 0.01}, Exporter: tracetest.NewNoopExporter()}
			p, err := New(context.Background(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			observe := func(*record.Record) {}
			if on {
				m, err := metrics.New(prometheus.NewRegistry(), metrics.Options{})
				if err != nil {
					b.Fatal(err)
				}
				observe = m.Observe
			}
			h := p.Hooks()
			d, ok, ra := 0.01, true, 0
			att := record.Attempt{Action: record.ActionCreate, Duration: &d, OK: &ok, RetryAfter: &ra,
				RequestID: "0123456789abcdef0123456789abcdef", BytesSent: 500, BytesRecv: 300}
			now := float64(time.Now().UnixNano()) / 1e9
			b.ReportAllocs()
			for b.Loop() {
				ctx := h.StartCycle(context.Background(), "lt-agent-1", 1, 1)
				r := &record.Record{Outcome: record.OutcomeSuccess, StartTime: now, EndTime: now + 0.05,
					CreateSuccessful: true, UpdateSuccessful: true}
				for _, ph := range record.RequestPhases() {
					pctx, end := h.PhaseStart(ctx, ph)
					h.Request(pctx, &att)
					end(true)
				}
				r.SessionAttempts = []record.Attempt{att, att}
				r.CreateAttempts = []record.Attempt{att}
				r.UpdateAttempts = []record.Attempt{att}
				h.CycleEnd(ctx, r)
				observe(r)
			}
		})
	}
}
