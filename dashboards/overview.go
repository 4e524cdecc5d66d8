package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// The metric families the dashboards query. The tests check each against exporter/metrics.Names().
const (
	mCycles          = "attestload_cycles_total"
	mCyclesStarted   = "attestload_cycles_started_total"
	mCycleDuration   = "attestload_cycle_duration_seconds"
	mPhaseDuration   = "attestload_phase_duration_seconds"
	mRequests        = "attestload_requests_total"
	mRequestDuration = "attestload_request_duration_seconds"
	mRequestErrors   = "attestload_request_errors_total"
	mRetries         = "attestload_retries_total"
	mRetryAfter      = "attestload_retry_after_seconds_total"
	mSessions        = "attestload_sessions_total"
	mVerdicts        = "attestload_verdicts_total"
	mInFlight        = "attestload_cycles_in_flight"
	mLate            = "attestload_cycles_late_total"
	mLateness        = "attestload_cycle_lateness_seconds"
	mDropped         = "attestload_cycles_dropped_total"
	mAgents          = "attestload_agents"
	mTargetRate      = "attestload_target_cycles_per_second"
	mScheduleLag     = "attestload_schedule_lag_seconds"
	mRequestBytes    = "attestload_request_body_bytes_total"
	mResponseBytes   = "attestload_response_body_bytes_total"
)

// overview answers the questions a verifier operator asks first: how many attestations per second does it
// sustain, do they pass, where does the time go, is it falling behind the fleet, and which request was slow.
func overview() *dashboard.DashboardBuilder {
	cyclesPerSecond := sum("", rate(mCycles))
	passRate := ratio(sum("", rate(mVerdicts, `evaluation="pass"`)), sum("", rate(mVerdicts)))

	return newDashboard(UIDOverview, "attestload / Overview",
		"Attestation throughput, verdicts, latency by phase, retries and schedule health of attestload runs.").
		WithRow(row("Throughput")).
		WithPanel(single("Attestations/s", "Attestation cycles finished per second, whatever their outcome.",
			"cps", 6, 4, query("A", cyclesPerSecond, "cycles/s"))).
		WithPanel(single("Verdict pass rate", "Share of verdicts that were pass. Verdicts arrive after the evidence is "+
			"accepted; unknown verdicts (no source, or timed out) count as not passing.",
			"percentunit", 6, 4, query("A", passRate, "pass rate"))).
		WithPanel(single("In flight", "Attestation cycles running now.",
			"short", 6, 4, query("A", sum("", gauge(mInFlight)), "in flight"))).
		WithPanel(single("Schedule lag", "How far behind its schedule the engine is now (fleet and rate models); "+
			"growing lag means the verifier does not keep up with the fleet.",
			"s", 6, 4, query("A", agg("max", "", gauge(mScheduleLag)), "lag"))).
		WithPanel(graph("Cycles/s by outcome", "Finished attestation cycles per second. success: the evidence was "+
			"accepted (the verdict is separate); fail: a phase gave up after its retries; aborted: cut by shutdown.",
			"cps", 12, 8,
			query("A", sum("outcome", rate(mCycles)), "{{outcome}}"))).
		WithPanel(graph("Target and achieved rate", "The rate the scheduler aims at beside the rate at which cycles "+
			"start; a gap means the verifier (or the number of agents) limits the run.",
			"cps", 12, 8,
			query("A", sum("", gauge(mTargetRate)), "target"),
			query("B", sum("", rate(mCyclesStarted)), "started"))).
		WithPanel(graph("Verdicts/s", "Verdicts by evaluation and failure reason.", "cps", 12, 8,
			query("A", sum("evaluation, reason", rate(mVerdicts)), "{{evaluation}} {{reason}}"))).
		WithPanel(graph("Agents by state", "idle: ready for a cycle; busy: in a cycle; waiting: held back by the "+
			"verifier (quote interval or Retry-After).", "short", 12, 8,
			query("A", sum("state", gauge(mAgents)), "{{state}}"))).
		WithRow(row("Latency")).
		WithPanel(heat("Cycle duration", "Distribution of whole-cycle durations. Exemplar dots link to the trace of "+
			"one sampled cycle in Jaeger.", 24, 9, mCycleDuration)).
		WithPanel(graph("Phase latency p50 / p90 / p99", "Duration of each phase of a cycle (session, negotiate, "+
			"evidence, verdict) including its retries. Exemplar dots link to traces.", "s", 12, 9,
			withExemplars(query("A", quantile(0.5, mPhaseDuration, "phase"), "{{phase}} p50")),
			withExemplars(query("B", quantile(0.9, mPhaseDuration, "phase"), "{{phase}} p90")),
			withExemplars(query("C", quantile(0.99, mPhaseDuration, "phase"), "{{phase}} p99")))).
		WithPanel(graph("Request latency p99 by phase and result", "Duration of single HTTP requests, split by "+
			"whether they were ok, retried or failed. Exemplar dots link to traces.", "s", 12, 9,
			withExemplars(query("A", quantile(0.99, mRequestDuration, "phase, result"), "{{phase}} {{result}} p99")))).
		WithRow(row("Retries and errors")).
		WithPanel(graph("Retries/s", "Requests repeated after a retryable answer (429, 503, 409, expired token), "+
			"by phase.", "reqps", 8, 8,
			query("A", sum("phase", rate(mRetries)), "{{phase}}"))).
		WithPanel(graph("Rate limited (429)/s", "Requests the verifier refused with 429, by phase: the quote "+
			"interval on negotiation, the per-IP or per-agent session limit on sessions.", "reqps", 8, 8,
			query("A", sum("phase", rate(mRequestErrors, `error="rate_limited"`)), "{{phase}}"))).
		WithPanel(graph("Retry-After waited", "Seconds of waiting per second that the verifier asked for with "+
			"Retry-After, by phase.", "s", 8, 8,
			query("A", sum("phase", rate(mRetryAfter)), "{{phase}}"))).
		WithPanel(graph("Requests/s by status class", "HTTP requests by status class; none: no response arrived.",
			"reqps", 8, 8,
			query("A", sum("status_class", rate(mRequests)), "{{status_class}}"))).
		WithPanel(graph("Errors/s by class", "Failed requests by error class (timeout, conn_refused, auth, "+
			"rate_limited, ...); details are in the logs, spans and results file.", "reqps", 8, 8,
			query("A", sum("error", rate(mRequestErrors)), "{{error}}"))).
		WithPanel(graph("Sessions/s", "PoP sessions created (first token of an agent) and refreshed (expired or "+
			"rejected token). Each costs the verifier a PBKDF2 run.", "ops", 8, 8,
			query("A", sum("kind", rate(mSessions)), "{{kind}}"))).
		WithRow(row("Schedule and traffic")).
		WithPanel(graph("Late and dropped cycles/s", "late: started after its due time (fleet, rate); dropped: a "+
			"tick of the rate model found no idle agent.", "cps", 8, 8,
			query("A", sum("", rate(mLate)), "late"),
			query("B", sum("", rate(mDropped)), "dropped"))).
		WithPanel(graph("Lateness p99 and schedule lag", "How late cycles start, and how far behind the engine is.",
			"s", 8, 8,
			query("A", quantile(0.99, mLateness, ""), "lateness p99"),
			query("B", agg("max", "", gauge(mScheduleLag)), "schedule lag"))).
		WithPanel(graph("Body bytes/s by phase", "Request bodies sent (evidence with its IMA log dominates) and "+
			"response bodies received, by phase.", "Bps", 8, 8,
			query("A", sum("phase", rate(mRequestBytes)), "sent {{phase}}"),
			query("B", sum("phase", rate(mResponseBytes)), "received {{phase}}")))
}
