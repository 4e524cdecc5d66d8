package metrics

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/attestload/attestload/attestation/record"
)

func ptr[T any](v T) *T { return &v }

func attempt(action record.Action, status int, ok bool, dur float64, retryAfter int, errClass record.ErrorClass) record.Attempt {
	a := record.Attempt{Action: action, Duration: ptr(dur), OK: ptr(ok), RetryAfter: ptr(retryAfter),
		BytesSent: 100, BytesRecv: 10}
	if status != 0 {
		a.Status = ptr(status)
	}
	if errClass != "" {
		a.Error = ptr(errClass)
	}
	return a
}

const traceA = "0af7651916cd43dd8448eb211c80319c"

// knownRecords: one successful cycle with a session, a 429 retry and a passing verdict (traced); one failed
// cycle whose negotiation timed out; one aborted cycle with a second session for the first agent and a failed
// verdict with an unlisted reason.
func knownRecords() []*record.Record {
	return []*record.Record{
		{
			AgentID: "lt-agent-1", Outcome: record.OutcomeSuccess, StartTime: 100, EndTime: 100.75,
			SessionAttempts: []record.Attempt{
				attempt(record.ActionSessionCreate, 200, true, 0.2, 0, ""),
				attempt(record.ActionSessionPoP, 200, true, 0.05, 0, ""),
			},
			SessionDuration:  0.25,
			CreateSuccessful: true, CreateDuration: 0.3,
			CreateAttempts: []record.Attempt{
				attempt(record.ActionCreate, 429, false, 0.1, 2, record.ClassRateLimited),
				attempt(record.ActionCreate, 201, true, 0.2, 0, ""),
			},
			UpdateSuccessful: true, UpdateDuration: 0.2,
			UpdateAttempts: []record.Attempt{attempt(record.ActionUpdate, 202, true, 0.2, 0, "")},
			Verdict:        record.Verdict{Evaluation: record.EvaluationPass, Seconds: ptr(0.04)},
			TraceID:        ptr(traceA),
		},
		{
			AgentID: "lt-agent-2", Outcome: record.OutcomeFail, StartTime: 200, EndTime: 230,
			CreateDuration: 30,
			CreateAttempts: []record.Attempt{{Action: record.ActionCreate, Duration: ptr(30.0), OK: ptr(false),
				RetryAfter: ptr(0), Error: ptr(record.ClassTimeout)}},
			Verdict: record.Verdict{Evaluation: record.EvaluationUnknown},
			TraceID: ptr("not-a-trace-id"),
		},
		{
			AgentID: "lt-agent-1", Outcome: record.OutcomeAborted, StartTime: 300, EndTime: 301,
			SessionAttempts: []record.Attempt{
				attempt(record.ActionSessionCreate, 200, true, 0.3, 0, ""),
				attempt(record.ActionSessionPoP, 200, true, 0.1, 0, ""),
			},
			SessionDuration:  0.4,
			CreateSuccessful: true, CreateDuration: 0.1,
			CreateAttempts:   []record.Attempt{attempt(record.ActionCreate, 201, true, 0.1, 0, "")},
			UpdateSuccessful: true, UpdateDuration: 0.5,
			UpdateAttempts: []record.Attempt{attempt(record.ActionUpdate, 202, true, 0.5, 0, "")},
			Verdict: record.Verdict{Evaluation: record.EvaluationFail, FailureReason: ptr("strange_reason"),
				Seconds: ptr(2.0)},
		},
	}
}

func newTest(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, Options{Version: "1.2.3", Revision: "abc", RunID: "run-1", Instance: "host-a"})
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestObserveCountersByValue(t *testing.T) {
	m, reg := newTest(t)
	for _, r := range knownRecords() {
		m.Observe(r)
	}
	m.Observe(nil)
	m.Observe(&record.Record{Outcome: "weird"})

	want := `
# HELP attestload_cycles_total Attestation cycles emitted, by final outcome (one per JSONL line).
# TYPE attestload_cycles_total counter
attestload_cycles_total{outcome="aborted"} 1
attestload_cycles_total{outcome="fail"} 1
attestload_cycles_total{outcome="other"} 1
attestload_cycles_total{outcome="success"} 1
# HELP attestload_requests_total HTTP requests made to the verifier, by phase, status class and result.
# TYPE attestload_requests_total counter
attestload_requests_total{phase="evidence",result="ok",status_class="2xx"} 2
attestload_requests_total{phase="negotiate",result="fail",status_class="none"} 1
attestload_requests_total{phase="negotiate",result="ok",status_class="2xx"} 2
attestload_requests_total{phase="negotiate",result="retry",status_class="4xx"} 1
attestload_requests_total{phase="session",result="ok",status_class="2xx"} 4
` + zeroFilled(map[string]float64{
		`attestload_request_errors_total{error="rate_limited",phase="negotiate"}`: 1,
		`attestload_request_errors_total{error="timeout",phase="negotiate"}`:      1,
		`attestload_retries_total{phase="negotiate"}`:                             1,
		`attestload_retry_after_seconds_total{phase="negotiate"}`:                 2,
	}) + `# HELP attestload_sessions_total PoP sessions established: an agent's first in this run (created) or a later one (refreshed).
# TYPE attestload_sessions_total counter
attestload_sessions_total{kind="created"} 1
attestload_sessions_total{kind="refreshed"} 1
# HELP attestload_verdicts_total Verifier verdicts of emitted cycles with accepted evidence, by evaluation and failure reason.
# TYPE attestload_verdicts_total counter
attestload_verdicts_total{evaluation="fail",reason="other"} 1
attestload_verdicts_total{evaluation="pass",reason="none"} 1
# HELP attestload_request_body_bytes_total Request body bytes sent to the verifier, by phase.
# TYPE attestload_request_body_bytes_total counter
attestload_request_body_bytes_total{phase="evidence"} 200
attestload_request_body_bytes_total{phase="negotiate"} 300
attestload_request_body_bytes_total{phase="session"} 400
# HELP attestload_build_info Always 1; labels carry the attestload build.
# TYPE attestload_build_info gauge
attestload_build_info{goversion="` + goVersion() + `",revision="abc",version="1.2.3"} 1
# HELP attestload_run_info Always 1; labels carry this run's id and instance (the only series with them).
# TYPE attestload_run_info gauge
attestload_run_info{instance="host-a",run_id="run-1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		NameCycles, NameRequests, NameRequestErrors, NameRetries, NameRetryAfter, NameSessions, NameVerdicts,
		NameRequestBytes, NameBuildInfo, NameRunInfo); err != nil {
		t.Fatal(err)
	}
}

func TestObservePhaseHistogramByValue(t *testing.T) {
	m, reg := newTest(t)
	for _, r := range knownRecords() {
		m.Observe(r)
	}
	// Only the verdict phase is compared in full; its two observations land in distinct buckets, and the
	// failed-verdict cycle without a trace proves observations without exemplars work the same way.
	want := `
# HELP attestload_phase_duration_seconds Duration of cycle phases (sum of their attempts; verdict: evidence accepted to verdict observed).
# TYPE attestload_phase_duration_seconds histogram
` + histLines("attestload_phase_duration_seconds", `phase="evidence",result="ok"`, []float64{0.2, 0.5}) +
		histLines("attestload_phase_duration_seconds", `phase="negotiate",result="fail"`, []float64{30}) +
		histLines("attestload_phase_duration_seconds", `phase="negotiate",result="ok"`, []float64{0.3, 0.1}) +
		histLines("attestload_phase_duration_seconds", `phase="session",result="ok"`, []float64{0.25, 0.4}) +
		histLines("attestload_phase_duration_seconds", `phase="verdict",result="ok"`, []float64{0.04, 2})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), NamePhaseDuration); err != nil {
		t.Fatal(err)
	}
}

// histLines writes the expected classic-bucket exposition for the observations vs. It computes cumulative
// counts from Buckets independently of client_golang, so a wrong bucket layout or a lost observation shows up.
func histLines(name, labels string, vs []float64) string {
	var b strings.Builder
	sep, braces := ",", "{"+labels+"}"
	if labels == "" {
		sep, braces = "", ""
	}
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	for _, ub := range Buckets {
		n := 0
		for _, v := range vs {
			if v <= ub {
				n++
			}
		}
		b.WriteString(name + "_bucket{" + labels + sep + `le="` + formatFloat(ub) + `"} ` + strconv.Itoa(n) + "\n")
	}
	b.WriteString(name + "_bucket{" + labels + sep + `le="+Inf"} ` + strconv.Itoa(len(vs)) + "\n")
	b.WriteString(name + "_sum" + braces + " " + formatFloat(sum) + "\n")
	b.WriteString(name + "_count" + braces + " " + strconv.Itoa(len(vs)) + "\n")
	return b.String()
}

func TestExemplarOnlyWithValidTraceID(t *testing.T) {
	m, reg := newTest(t)
	for _, r := range knownRecords() {
		m.Observe(r)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, mf := range mfs {
		if mf.GetName() != NameCycles {
			continue
		}
		for _, mm := range mf.GetMetric() {
			ex := mm.GetCounter().GetExemplar()
			if ex == nil {
				continue
			}
			for _, lp := range ex.GetLabel() {
				found = append(found, mm.GetLabel()[0].GetValue()+"="+lp.GetName()+":"+lp.GetValue())
			}
		}
	}
	want := []string{"success=trace_id:" + traceA}
	if !slices.Equal(found, want) {
		t.Fatalf("exemplars on %s = %v, want %v (the malformed id of the failed cycle must not appear)",
			NameCycles, found, want)
	}
}

func TestEngineObserver(t *testing.T) {
	m, reg := newTest(t)
	m.CycleStarted()
	m.CycleStarted()
	m.CycleFinished()
	m.CycleDropped()
	m.CycleLate(1500 * time.Millisecond)
	m.CycleLate(-time.Second) // nonsense from a caller is ignored, not counted
	m.SetTargetRate(12.5)
	m.SetScheduleLag(250 * time.Millisecond)
	m.SetAgents(3, 2, 1)
	want := `
# HELP attestload_agents Impersonated agents by state.
# TYPE attestload_agents gauge
attestload_agents{state="busy"} 2
attestload_agents{state="idle"} 3
attestload_agents{state="waiting"} 1
# HELP attestload_cycles_dropped_total Scheduled cycles dropped because no agent or worker was free in time.
# TYPE attestload_cycles_dropped_total counter
attestload_cycles_dropped_total 1
# HELP attestload_cycles_in_flight Attestation cycles currently running.
# TYPE attestload_cycles_in_flight gauge
attestload_cycles_in_flight 1
# HELP attestload_cycles_late_total Attestation cycles that started more than 1 ms (the late tolerance) after their due time.
# TYPE attestload_cycles_late_total counter
attestload_cycles_late_total 1
# HELP attestload_cycles_started_total Attestation cycles started by the engine.
# TYPE attestload_cycles_started_total counter
attestload_cycles_started_total 2
# HELP attestload_schedule_lag_seconds How far the scheduler is behind its plan.
# TYPE attestload_schedule_lag_seconds gauge
attestload_schedule_lag_seconds 0.25
# HELP attestload_target_cycles_per_second Cycles per second the scheduler aims for (0 in the closed model).
# TYPE attestload_target_cycles_per_second gauge
attestload_target_cycles_per_second 12.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), NameAgents, NameCyclesDropped,
		NameCyclesInFlight, NameCyclesLate, NameCyclesStarted, NameScheduleLag, NameTargetRate); err != nil {
		t.Fatal(err)
	}
	wantLate := "# HELP attestload_cycle_lateness_seconds How late the late cycles (more than 1 ms after their due time) started (the tool's own queueing).\n" +
		"# TYPE attestload_cycle_lateness_seconds histogram\n" + histLines(NameCycleLateness, "", []float64{1.5})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantLate), NameCycleLateness); err != nil {
		t.Fatal(err)
	}
}

func TestLint(t *testing.T) {
	m, reg := newTest(t)
	for _, r := range knownRecords() {
		m.Observe(r)
	}
	m.CycleLate(time.Second)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestNamesMatchRegistry(t *testing.T) {
	m, reg := newTest(t)
	for _, r := range knownRecords() {
		m.Observe(r)
	}
	m.CycleLate(time.Second)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	want := ownNames()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("registered families %v\nNames() %v", got, want)
	}
	seen := map[string]bool{}
	for _, n := range Names() {
		if !strings.HasPrefix(n, "attestload_") || seen[n] {
			t.Errorf("%s: duplicate or not under attestload_", n)
		}
		seen[n] = true
	}
}

func TestNewRejectsDuplicateAndNil(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, Options{}); err == nil || !strings.Contains(err.Error(), "metrics: register") {
		t.Fatalf("second New on one registry: err = %v, want a register error", err)
	}
}

func TestStatusClassAndResult(t *testing.T) {
	for _, c := range []struct {
		status *int
		want   string
	}{{nil, "none"}, {ptr(99), "none"}, {ptr(100), "1xx"}, {ptr(202), "2xx"}, {ptr(429), "4xx"}, {ptr(599), "5xx"}, {ptr(600), "none"}} {
		if got := StatusClass(c.status); got != c.want {
			t.Errorf("StatusClass(%v) = %q, want %q", c.status, got, c.want)
		}
	}
	if got := AttemptResult(&record.Attempt{}); got != ResultFail {
		t.Errorf("empty attempt: %q", got)
	}
	if got := AttemptResult(&record.Attempt{OK: ptr(false), RetryAfter: ptr(1)}); got != ResultRetry {
		t.Errorf("retried attempt: %q", got)
	}
}

func TestSessionAgentBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Options{MaxSessionAgents: 1})
	if err != nil {
		t.Fatal(err)
	}
	pop := []record.Attempt{attempt(record.ActionSessionPoP, 200, true, 0.1, 0, "")}
	for _, id := range []string{"a", "b", "b", "a"} {
		m.Observe(&record.Record{AgentID: id, Outcome: record.OutcomeSuccess, SessionAttempts: pop})
	}
	// "a" is remembered; "b" is past the bound, so both of its sessions count as created.
	if c, r := testutil.ToFloat64(m.sessions.WithLabelValues("created")), testutil.ToFloat64(m.sessions.WithLabelValues("refreshed")); c != 3 || r != 1 {
		t.Fatalf("created=%v refreshed=%v, want 3 and 1", c, r)
	}
}

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Options{RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(knownRecords()[0])
	ready := false
	srv, err := NewServer("127.0.0.1:0", reg, func() bool { return ready })
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + srv.Addr()
	get := func(path, accept string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz", ""); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz", ""); code != 503 {
		t.Errorf("/readyz before running = %d, want 503", code)
	}
	ready = true
	if code, _ := get("/readyz", ""); code != 200 {
		t.Errorf("/readyz when running = %d, want 200", code)
	}
	code, body := get("/metrics", "application/openmetrics-text; version=1.0.0")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	if !strings.Contains(body, `attestload_cycles_total{outcome="success"} 1.0 # {trace_id="`+traceA+`"} 1.0`) {
		t.Errorf("OpenMetrics exposition lacks the exemplar:\n%s", grepLines(body, "attestload_cycles_total"))
	}
	if _, err := NewServer(srv.Addr(), reg, nil); err == nil || !strings.Contains(err.Error(), srv.Addr()) {
		t.Errorf("second server on a busy address: err = %v, want one naming the address", err)
	}
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func goVersion() string { return runtime.Version() }

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestWaitScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := NewServer("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	scrape := func() {
		resp, err := http.Get("http://" + srv.Addr() + "/metrics")
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	scrape() // before the wait: must not count
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := srv.WaitScrape(ctx); err == nil {
		t.Fatal("WaitScrape returned without a scrape after the call")
	}
	cancel()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.WaitScrape(ctx)
	}()
	// Scrape until the waiter returns: whenever it started, some scrape starts after it.
	for {
		scrape()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Profiles are served only when asked for, and then a CPU profile longer than the usual 30 s write timeout is
// accepted (net/http/pprof refuses one at least as long as the server's write timeout).
func TestServerPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, on := range []bool{false, true} {
		var opts []ServerOption
		if on {
			opts = append(opts, WithPprof())
		}
		srv, err := NewServer("127.0.0.1:0", reg, nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + srv.Addr() + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.StatusCode == 200 && strings.Contains(string(b), "goroutine profile:"); got != on {
			t.Errorf("pprof %v: /debug/pprof/goroutine answered %d %.80q", on, resp.StatusCode, b)
		}
		if on && srv.srv.WriteTimeout <= 60*time.Second {
			t.Errorf("write timeout %s leaves no room for a 60 s CPU profile", srv.srv.WriteTimeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		cancel()
	}
}

// zeroFilled is the exposition of the error and retry counters, which exist at 0 for every request phase and
// error class from the start, with the given series at their values.
func zeroFilled(values map[string]float64) string {
	var b strings.Builder
	line := func(series string) {
		b.WriteString(series + " " + strconv.FormatFloat(values[series], 'g', -1, 64) + "\n")
	}
	phases := []string{string(record.PhaseEvidence), string(record.PhaseNegotiate), string(record.PhaseSession)}
	classes := []string{Other}
	for _, c := range record.ErrorClasses() {
		classes = append(classes, string(c))
	}
	slices.Sort(classes)
	b.WriteString("# HELP attestload_request_errors_total HTTP requests that did not succeed, by phase and error class.\n" +
		"# TYPE attestload_request_errors_total counter\n")
	for _, c := range classes {
		for _, p := range phases {
			line(`attestload_request_errors_total{error="` + c + `",phase="` + p + `"}`)
		}
	}
	b.WriteString("# HELP attestload_retries_total HTTP requests that were retried, by phase.\n" +
		"# TYPE attestload_retries_total counter\n")
	for _, p := range phases {
		line(`attestload_retries_total{phase="` + p + `"}`)
	}
	b.WriteString("# HELP attestload_retry_after_seconds_total Seconds waited before retrying (the Retry-After value " +
		"when the verifier sent one), by phase.\n# TYPE attestload_retry_after_seconds_total counter\n")
	for _, p := range phases {
		line(`attestload_retry_after_seconds_total{phase="` + p + `"}`)
	}
	return b.String()
}

// A clean run's dashboards read 0, not "No data": the error and retry counters exist before their first event.
func TestErrorAndRetryCountersStartAtZero(t *testing.T) {
	_, reg := newTest(t)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(zeroFilled(nil)), NameRequestErrors, NameRetries,
		NameRetryAfter); err != nil {
		t.Fatal(err)
	}
}
