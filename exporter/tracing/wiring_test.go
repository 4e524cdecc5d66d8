package tracing_test

import (
	"context"
	"crypto/rand"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/attestload/attestload/attestation/client"
	"github.com/attestload/attestload/attestation/evidence"
	"github.com/attestload/attestload/attestation/record"
	"github.com/attestload/attestload/attestation/simverifier"
	"github.com/attestload/attestload/attestation/softtpm"
	"github.com/attestload/attestload/exporter/metrics"
	"github.com/attestload/attestload/exporter/tracing"
	"github.com/attestload/attestload/exporter/verdict"
)

type sim struct {
	v   *simverifier.Verifier
	url string
}

func startSim(t testing.TB) *sim {
	t.Helper()
	cfg := simverifier.DefaultConfig()
	cfg.QuoteInterval = 0
	cfg.SessionHashIterations = 0
	cfg.RateLimits = simverifier.RateLimits{}
	cfg.PlainHTTP = true
	v, err := simverifier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	srv := httptest.NewUnstartedServer(v.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return &sim{v: v, url: srv.URL}
}

func (s *sim) agent(t testing.TB, id string, index int, enrollKey *softtpm.Key) *client.Agent {
	t.Helper()
	key, err := softtpm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if enrollKey == nil {
		enrollKey = key
	}
	p := evidence.NewQuoteOnly()
	if err := s.v.EnrollAgent(simverifier.AgentSpec{ID: id, AKPublic: enrollKey.Public, TPMPolicy: p.TPMPolicy(),
		IMAPolicyJSON: p.PolicyJSON(), IMAGenerator: p.Generator()}); err != nil {
		t.Fatal(err)
	}
	return client.NewAgent(id, index, softtpm.NewTPM(key), p)
}

func (s *sim) client(t testing.TB, hooks client.Hooks, wrap func(http.RoundTripper) http.RoundTripper) *client.Client {
	t.Helper()
	tr, err := client.NewTransport(client.TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	if wrap != nil {
		rt = wrap(rt)
	}
	c, err := client.New(client.Config{BaseURL: s.url, Transport: rt, RequestTimeout: 10 * time.Second, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type tee []verdict.Sink

func (t tee) Observe(r *record.Record) {
	for _, s := range t {
		s.Observe(r)
	}
}
func (t tee) Close() error { return nil }

type keep struct {
	mu  sync.Mutex
	got []*record.Record
}

func (k *keep) Observe(r *record.Record) { k.mu.Lock(); k.got = append(k.got, r); k.mu.Unlock() }
func (k *keep) Close() error             { return nil }

// TestWiringWithClientAndSimulator runs real cycles against the simulated verifier with everything of this layer
// wired as the daemon will: hooks and transport from tracing, the verdict watcher on the simulator's Verdict,
// then metrics and the verdict span on emit.
func TestWiringWithClientAndSimulator(t *testing.T) {
	s := startSim(t)
	exp := tracetest.NewInMemoryExporter()
	p, err := tracing.New(context.Background(), tracing.Options{Settings: tracing.Settings{Enabled: true, SampleRatio: 1},
		Exporter: exp, RunID: "run-w", InstanceID: "i-1"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{RunID: "run-w"})
	if err != nil {
		t.Fatal(err)
	}
	out := &keep{}
	w := verdict.NewWatcher(verdict.SourceFunc(s.v.Verdict), verdict.Options{Settings: verdict.Settings{PollInterval: 10 * time.Millisecond, Timeout: 10 * time.Second}}, tee{m, p.VerdictSink(), out})
	c := s.client(t, p.Hooks(), p.WrapTransport)

	good := s.agent(t, "lt-good", 0, nil)
	other, err := softtpm.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	impostor := s.agent(t, "lt-impostor", 1, other) // enrolled with another AK: its PoP fails
	ctx := context.Background()
	for task := range 3 {
		w.Observe(c.Cycle(ctx, good, task, 0))
	}
	w.Observe(c.Cycle(ctx, impostor, 0, 0))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans() // before Shutdown, which empties the in-memory exporter
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	byTrace := map[string][]tracetest.SpanStub{}
	for _, sp := range spans {
		byTrace[sp.SpanContext.TraceID().String()] = append(byTrace[sp.SpanContext.TraceID().String()], sp)
	}
	var outcomes []string
	for _, r := range out.got {
		outcomes = append(outcomes, r.Outcome.String()+"/"+r.Verdict.Evaluation)
		if r.TraceID == nil {
			t.Fatalf("%s cycle %d: no trace id at ratio 1", r.AgentID, r.TaskIndex)
		}
		tr := byTrace[*r.TraceID]
		names := map[string]int{}
		var reqIDs []string
		for _, sp := range tr {
			names[sp.Name]++
			for _, kv := range sp.Attributes {
				if kv.Key == "attestload.request_id" {
					reqIDs = append(reqIDs, kv.Value.AsString())
				}
			}
		}
		var want []string
		for _, as := range [][]record.Attempt{r.SessionAttempts, r.CreateAttempts, r.UpdateAttempts} {
			for _, a := range as {
				want = append(want, a.RequestID)
			}
		}
		slices.Sort(reqIDs)
		slices.Sort(want)
		if !slices.Equal(reqIDs, want) {
			t.Errorf("%s: request ids on HTTP spans %v, in the record %v", r.AgentID, reqIDs, want)
		}
		if names[tracing.SpanCycle] != 1 {
			t.Errorf("%s: spans %v", r.AgentID, names)
		}
		if r.Outcome == record.OutcomeSuccess && names[tracing.SpanVerdict] != 1 {
			t.Errorf("%s: accepted evidence without a verdict span: %v", r.AgentID, names)
		}
	}
	slices.Sort(outcomes)
	if want := []string{"fail/unknown", "success/pass", "success/pass", "success/pass"}; !slices.Equal(outcomes, want) {
		t.Fatalf("outcomes/verdicts %v, want %v", outcomes, want)
	}
	want := `
# HELP attestload_cycles_total Attestation cycles emitted, by final outcome (one per JSONL line).
# TYPE attestload_cycles_total counter
attestload_cycles_total{outcome="aborted"} 0
attestload_cycles_total{outcome="fail"} 1
attestload_cycles_total{outcome="success"} 3
# HELP attestload_verdicts_total Verifier verdicts of emitted cycles with accepted evidence, by evaluation and failure reason.
# TYPE attestload_verdicts_total counter
attestload_verdicts_total{evaluation="pass",reason="none"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), metrics.NameCycles, metrics.NameVerdicts); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCycleSim is one quote-only cycle's client CPU against the in-process simulator (which shares the
// process, so the figure includes its verification), with this layer off and on (metrics plus tracing at ratio
// 0.01, exporting to a no-op exporter).
func BenchmarkCycleSim(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "metrics+tracing-0.01"
		}
		b.Run(name, func(b *testing.B) {
			s := startSim(b)
			var hooks client.Hooks
			var wrap func(http.RoundTripper) http.RoundTripper
			observe := func(*record.Record) {}
			if on {
				p, err := tracing.New(context.Background(),
					tracing.Options{Settings: tracing.Settings{Enabled: true, SampleRatio: 0.01},
						Exporter: tracetest.NewNoopExporter()})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
				m, err := metrics.New(prometheus.NewRegistry(), metrics.Options{})
				if err != nil {
					b.Fatal(err)
				}
				hooks, wrap, observe = p.Hooks(), p.WrapTransport, m.Observe
			}
			c := s.client(b, hooks, wrap)
			a := s.agent(b, "bench", 0, nil)
			ctx := context.Background()
			c.Cycle(ctx, a, 0, 0) // the session, outside the measurement
			b.ReportAllocs()
			task := 1
			for b.Loop() {
				r := c.Cycle(ctx, a, task, 0)
				if r.Outcome != record.OutcomeSuccess {
					b.Fatalf("cycle %s: %v", r.Outcome, r.Error)
				}
				observe(r)
				task++
			}
		})
	}
}
