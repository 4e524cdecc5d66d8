package tracing

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/attestload/attestload/attestation/record"
)

// seededIDs makes trace ids reproducible so the ratio test always sees the same draw.
type seededIDs struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (g *seededIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var t trace.TraceID
	var s trace.SpanID
	for i := range t {
		t[i] = byte(g.r.Uint32())
	}
	for i := range s {
		s[i] = byte(g.r.Uint32())
	}
	return t, s
}

func (g *seededIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s trace.SpanID
	for i := range s {
		s[i] = byte(g.r.Uint32())
	}
	return s
}

func newTestProvider(t *testing.T, mod func(*Options)) (*Provider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	o := Options{Settings: Settings{Enabled: true, SlowThreshold: 5 * time.Second},
		Exporter: exp, ServiceName: "attestload", InstanceID: "inst-1", RunID: "run-7",
		idGenerator: &seededIDs{r: rand.New(rand.NewPCG(1, 2))}}
	if mod != nil {
		mod(&o)
	}
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, exp
}

func ptr[T any](v T) *T { return &v }

func attr(kvs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// runCycle drives the hooks the way the client does: a root, phases, one HTTP request per phase through the
// wrapped transport, then CycleEnd with a record of the given outcome and duration.
func runCycle(t *testing.T, p *Provider, url string, outcome record.Outcome, dur float64) *record.Record {
	t.Helper()
	h := p.Hooks()
	ctx := h.StartCycle(context.Background(), "lt-agent-1", 1, 3)
	client := &http.Client{Transport: p.WrapTransport(http.DefaultTransport)}
	for i, phase := range record.RequestPhases() {
		pctx, end := h.PhaseStart(ctx, phase)
		if url != "" {
			req, _ := http.NewRequestWithContext(pctx, http.MethodPost, url, nil)
			req.Header.Set("X-Request-ID", "req-"+string(phase))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		h.Request(pctx, &record.Attempt{Action: record.Action(phase), RequestID: "req-" + string(phase), Status: ptr(200)})
		end(!(outcome == record.OutcomeFail && i == 2))
	}
	r := &record.Record{Outcome: outcome, StartTime: 1000, EndTime: 1000 + dur, AttestationIndex: ptr(4),
		UpdateSuccessful: outcome == record.OutcomeSuccess,
		UpdateAttempts:   []record.Attempt{{EndTime: 1000 + dur}}}
	if outcome == record.OutcomeFail {
		r.Error = ptr(record.ClassTimeout)
	}
	h.CycleEnd(ctx, r)
	return r
}

func TestFailedCycleTraceShape(t *testing.T) {
	var mu sync.Mutex
	var parents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("traceparent"))
		mu.Unlock()
		w.Header().Set("X-Request-Id", strings.ReplaceAll(r.Header.Get("X-Request-ID"), "-", ""))
	}))
	defer srv.Close()
	p, exp := newTestProvider(t, nil)
	r := runCycle(t, p, srv.URL, record.OutcomeFail, 0.5)
	if r.TraceID == nil {
		t.Fatal("failed cycle: no trace id on the record")
	}
	spans := exp.GetSpans()
	if len(spans) != 7 {
		t.Fatalf("exported %d spans, want 7 (root, 3 phases, 3 HTTP)", len(spans))
	}
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		if s.SpanContext.TraceID().String() != *r.TraceID {
			t.Errorf("span %s in trace %s, record says %s", s.Name, s.SpanContext.TraceID(), *r.TraceID)
		}
	}
	root := byName[SpanCycle]
	if len(root) != 1 || root[0].Parent.IsValid() {
		t.Fatalf("want one parentless root, got %+v", root)
	}
	if v, _ := attr(root[0].Attributes, attrDecision); v.AsString() != ReasonFailed {
		t.Errorf("root sampling reason %q, want %q", v.AsString(), ReasonFailed)
	}
	if v, _ := attr(root[0].Attributes, "attestload.agent.id"); v.AsString() != "lt-agent-1" {
		t.Errorf("root agent id %q", v.AsString())
	}
	if root[0].Status.Code != codes.Error {
		t.Errorf("failed root status %v", root[0].Status)
	}
	for _, k := range []string{"service.name", "service.instance.id", "attestload.run_id"} {
		if _, ok := attr(root[0].Resource.Attributes(), k); !ok {
			t.Errorf("resource lacks %s", k)
		}
	}
	phaseIDs := map[trace.SpanID]string{}
	for _, ph := range record.RequestPhases() {
		s := byName[PhaseSpanName(ph)]
		if len(s) != 1 || s[0].Parent.SpanID() != root[0].SpanContext.SpanID() {
			t.Fatalf("phase %s: want one child of the root, got %+v", ph, s)
		}
		phaseIDs[s[0].SpanContext.SpanID()] = string(ph)
		if len(s[0].Events) != 1 || s[0].Events[0].Name != "attestation.request" {
			t.Errorf("phase %s events %+v", ph, s[0].Events)
		}
	}
	if byName[PhaseSpanName("evidence")][0].Status.Code != codes.Error {
		t.Error("failed evidence phase not marked as error")
	}
	var http int
	for _, s := range spans {
		if s.SpanKind != trace.SpanKindClient {
			continue
		}
		http++
		ph, ok := phaseIDs[s.Parent.SpanID()]
		if !ok {
			t.Errorf("HTTP span %s is not a child of a phase", s.Name)
			continue
		}
		v, _ := attr(s.Attributes, "http.request.header.x-request-id")
		if got := v.AsStringSlice(); len(got) != 1 || got[0] != "req-"+ph {
			t.Errorf("HTTP span under %s: x-request-id %v", ph, got)
		}
		if v, _ := attr(s.Attributes, "http.response.header.x-request-id"); len(v.AsStringSlice()) != 1 {
			t.Errorf("HTTP span under %s lacks the echoed request id", ph)
		}
		if v, _ := attr(s.Attributes, "http.request.method"); v.AsString() != "POST" {
			t.Errorf("HTTP span lacks semconv http.request.method: %v", s.Attributes)
		}
	}
	if http != 3 {
		t.Errorf("%d HTTP client spans, want 3", http)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, tp := range parents {
		if !strings.Contains(tp, *r.TraceID) {
			t.Errorf("verifier got traceparent %q, not in trace %s", tp, *r.TraceID)
		}
	}
}

func TestOrdinaryCycleDroppedSlowKept(t *testing.T) {
	p, exp := newTestProvider(t, nil) // ratio 0
	r := runCycle(t, p, "", record.OutcomeSuccess, 0.2)
	if r.TraceID != nil || len(exp.GetSpans()) != 0 {
		t.Fatalf("ordinary cycle at ratio 0: trace id %v, %d spans exported", r.TraceID, len(exp.GetSpans()))
	}
	r = runCycle(t, p, "", record.OutcomeSuccess, 6)
	if r.TraceID == nil || len(exp.GetSpans()) != 4 {
		t.Fatalf("slow cycle: trace id %v, %d spans exported, want 4", r.TraceID, len(exp.GetSpans()))
	}
	st := p.Stats()
	if st.TracesKept != 1 || st.TracesDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRatioStatistical(t *testing.T) {
	p, _ := newTestProvider(t, func(o *Options) { o.SampleRatio = 0.01 })
	h := p.Hooks()
	const n = 20000
	kept := 0
	for range n {
		ctx := h.StartCycle(context.Background(), "a", 0, 0)
		r := &record.Record{Outcome: record.OutcomeSuccess, StartTime: 1, EndTime: 1.1}
		h.CycleEnd(ctx, r)
		if r.TraceID != nil {
			kept++
		}
	}
	// Binomial(20000, 0.01): mean 200, sd 14; ±5 sd with a fixed seed never flakes and still catches a
	// ratio that is off by a factor.
	if kept < 130 || kept > 270 {
		t.Fatalf("kept %d of %d at ratio 0.01", kept, n)
	}
	if st := p.Stats(); st.TracesKept != uint64(kept) || st.TracesDropped != uint64(n-kept) {
		t.Fatalf("stats %+v, kept %d", st, kept)
	}
}

func TestBounds(t *testing.T) {
	p, exp := newTestProvider(t, func(o *Options) { o.MaxTraces = 2; o.MaxSpansPerTrace = 2 })
	h := p.Hooks()
	var ctxs []context.Context
	for range 3 {
		ctxs = append(ctxs, h.StartCycle(context.Background(), "a", 0, 0))
	}
	for _, ph := range record.RequestPhases() {
		_, end := h.PhaseStart(ctxs[0], ph)
		end(true)
	}
	var recs []*record.Record
	for _, ctx := range ctxs {
		r := &record.Record{Outcome: record.OutcomeFail}
		h.CycleEnd(ctx, r)
		recs = append(recs, r)
	}
	if recs[0].TraceID == nil || recs[1].TraceID == nil {
		t.Fatal("buffered failed cycles lost their traces")
	}
	if recs[2].TraceID != nil {
		t.Fatal("the cycle over the trace bound got a trace id, but its trace was never exported")
	}
	st := p.Stats()
	if st.TracesOverflowed != 1 || st.SpansOverflowed != 1 {
		t.Fatalf("stats %+v, want 1 trace and 1 span overflowed", st)
	}
	if got := len(exp.GetSpans()); got != 4 { // trace 0: root + 2 phases; trace 1: root
		t.Fatalf("%d spans exported, want 4", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Collector())
	want := `
# HELP attestload_trace_spans_dropped_total Spans not exported: overflow (trace over its span bound), orphaned (ended after their trace), verdict_lost.
# TYPE attestload_trace_spans_dropped_total counter
attestload_trace_spans_dropped_total{reason="orphaned"} 0
attestload_trace_spans_dropped_total{reason="overflow"} 1
attestload_trace_spans_dropped_total{reason="verdict_lost"} 0
# HELP attestload_traces_total Cycle traces by tail-sampling decision: kept (exported), dropped, overflow (buffer full, never exported).
# TYPE attestload_traces_total counter
attestload_traces_total{decision="dropped"} 0
attestload_traces_total{decision="kept"} 2
attestload_traces_total{decision="overflow"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if problems, _ := testutil.GatherAndLint(reg); len(problems) > 0 {
		t.Fatalf("promlint: %+v", problems)
	}
	p.tail.mu.Lock()
	left := len(p.tail.pending)
	p.tail.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d traces still pending after all roots ended", left)
	}
}

func TestVerdictSpan(t *testing.T) {
	p, exp := newTestProvider(t, nil)
	r := runCycle(t, p, "", record.OutcomeSuccess, 7)
	if r.TraceID == nil {
		t.Fatal("slow cycle not kept")
	}
	r.Verdict = record.Verdict{Evaluation: record.EvaluationFail, FailureReason: ptr("policy_violation"),
		Seconds: ptr(1.5)}
	vs := p.VerdictSink()
	vs.Observe(r)
	vs.Observe(r) // a second observation has no parent left and adds nothing
	var root, verdict *tracetest.SpanStub
	spans := exp.GetSpans()
	for i := range spans {
		switch spans[i].Name {
		case SpanCycle:
			root = &spans[i]
		case SpanVerdict:
			if verdict != nil {
				t.Fatal("two verdict spans")
			}
			verdict = &spans[i]
		}
	}
	if verdict == nil || root == nil {
		t.Fatalf("verdict span not exported: %d spans", len(spans))
	}
	if verdict.Parent.SpanID() != root.SpanContext.SpanID() || verdict.SpanContext.TraceID() != root.SpanContext.TraceID() {
		t.Error("verdict span is not a child of the cycle root")
	}
	if d := verdict.EndTime.Sub(verdict.StartTime); d != 1500*time.Millisecond {
		t.Errorf("verdict span lasts %v, want 1.5s", d)
	}
	if v, _ := attr(verdict.Attributes, "attestload.verdict.failure_reason"); v.AsString() != "policy_violation" {
		t.Errorf("verdict attributes %v", verdict.Attributes)
	}
	if err := vs.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDisabled(t *testing.T) {
	p, err := New(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Hooks()
	ctx := context.Background()
	if got := h.StartCycle(ctx, "a", 0, 0); got != ctx {
		t.Error("disabled StartCycle changed the context")
	}
	r := &record.Record{Outcome: record.OutcomeFail}
	h.CycleEnd(ctx, r)
	if r.TraceID != nil {
		t.Error("disabled tracing set a trace id")
	}
	rt := http.DefaultTransport
	if p.WrapTransport(rt) != rt {
		t.Error("disabled WrapTransport wrapped")
	}
	p.VerdictSink().Observe(r)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOptionErrors(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Settings: Settings{Enabled: true, SampleRatio: 1.5, Endpoint: "x:1"}}, "tracing.sample_ratio"},
		{Options{Settings: Settings{Enabled: true, SlowThreshold: -1, Endpoint: "x:1"}}, "tracing.slow_threshold"},
		{Options{Settings: Settings{Enabled: true}}, "tracing.endpoint: required"},
		{Options{Settings: Settings{Enabled: true, Endpoint: "x:1", Protocol: "udp"}}, `tracing.protocol: "udp"`},
		{Options{Settings: Settings{Enabled: true, Endpoint: "x:1", Insecure: true, CAFile: "ca.pem"}},
			"tracing.ca_file: cannot be combined"},
		{Options{Settings: Settings{Enabled: true, Endpoint: "x:1", CAFile: "does-not-exist.pem"}}, "tracing.ca_file"},
		{Options{Settings: Settings{Enabled: true, Endpoint: "x:1", Headers: map[string]string{" ": "v"}}},
			"tracing.headers"},
	} {
		_, err := New(context.Background(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to contain %q", c.o, err, c.want)
		}
	}
}

// exportOneFailedCycle starts a loopback OTLP/HTTP collector stand-in, lets opts (with the collector's URL given
// to setup) export one failed cycle, shuts the provider down and returns the export request, or nil if none came.
func exportOneFailedCycle(t *testing.T, setup func(url string) Options) *http.Request {
	t.Helper()
	got := make(chan *http.Request, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	p, err := New(context.Background(), setup(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	h := p.Hooks()
	ctx := h.StartCycle(context.Background(), "a", 0, 0)
	h.CycleEnd(ctx, &record.Record{Outcome: record.OutcomeFail})
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		return r
	default:
		return nil
	}
}

// TestOTLPHTTPExport sends a kept trace through the real OTLP/HTTP exporter to a loopback collector stand-in and
// checks the path and the configured header arrive.
func TestOTLPHTTPExport(t *testing.T) {
	r := exportOneFailedCycle(t, func(url string) Options {
		return Options{Settings: Settings{Enabled: true, Protocol: ProtocolHTTP, Endpoint: url,
			Headers: map[string]string{"X-Scope-OrgID": "tenant-1"}}}
	})
	if r == nil {
		t.Fatal("nothing was exported")
	}
	if r.URL.Path != "/v1/traces" || r.Header.Get("X-Scope-OrgID") != "tenant-1" {
		t.Fatalf("export went to %s with header %q", r.URL.Path, r.Header.Get("X-Scope-OrgID"))
	}
}

// TestOTLPEndpointFromEnv: with no endpoint configured, the standard OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_EXPORTER_OTLP_HEADERS decide where traces go (the compose deployment sets them).
func TestOTLPEndpointFromEnv(t *testing.T) {
	r := exportOneFailedCycle(t, func(url string) Options {
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
		t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=tenant-env")
		return Options{Settings: Settings{Enabled: true, Protocol: ProtocolHTTP}}
	})
	if r == nil {
		t.Fatal("nothing was exported to the OTEL_EXPORTER_OTLP_ENDPOINT collector")
	}
	if r.URL.Path != "/v1/traces" || r.Header.Get("X-Scope-OrgID") != "tenant-env" {
		t.Fatalf("export went to %s with header %q", r.URL.Path, r.Header.Get("X-Scope-OrgID"))
	}
}
