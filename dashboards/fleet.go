package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

const (
	mBuildInfo = "attestload_build_info"
	mRunInfo   = "attestload_run_info"
)

// fleet compares the instances of a multi-host run side by side: an instance that lags behind the others points
// at its host or its network path, not at the verifier.
func fleet() *dashboard.DashboardBuilder {
	return newDashboard(UIDFleet, "attestload / Fleet",
		"Per-instance throughput, latency and errors of a run spread over several attestload instances.").
		WithRow(row("Instances")).
		WithPanel(single("Instances", "attestload instances reporting in the chosen runs.", "short", 6, 4,
			query("A", agg("count", "", gauge(mBuildInfo)), "instances"))).
		WithPanel(single("Attestations/s (all instances)", "Finished cycles per second, all instances together.",
			"cps", 6, 4, query("A", sum("", rate(mCycles)), "cycles/s"))).
		WithPanel(single("In flight (all instances)", "Cycles running now, all instances together.",
			"short", 6, 4, query("A", sum("", gauge(mInFlight)), "in flight"))).
		WithPanel(single("Failed cycles/s (all instances)", "Cycles that gave up, all instances together.",
			"cps", 6, 4, query("A", sum("", rate(mCycles, `outcome="fail"`)), "fail/s"))).
		WithPanel(graph("Attestations/s by instance", "Finished cycles per second of each instance.", "cps", 12, 8,
			query("A", sum("instance", rate(mCycles)), "{{instance}}"))).
		WithPanel(graph("Failed cycles/s by instance", "Cycles that gave up, per instance.", "cps", 12, 8,
			query("A", sum("instance", rate(mCycles, `outcome="fail"`)), "{{instance}}"))).
		WithPanel(graph("Cycle duration p99 by instance", "Whole-cycle p99 of each instance. Exemplar dots link "+
			"to traces.", "s", 12, 8,
			withExemplars(query("A", quantile(0.99, mCycleDuration, "instance"), "{{instance}} p99")))).
		WithPanel(graph("Evidence p99 by instance", "p99 of the evidence phase (quote signing and PATCH) per "+
			"instance.", "s", 12, 8,
			withExemplars(query("A", quantile(0.99, mPhaseDuration, "instance", `phase="evidence"`),
				"{{instance}} p99")))).
		WithPanel(graph("In flight by instance", "Cycles running now on each instance.", "short", 8, 8,
			query("A", sum("instance", gauge(mInFlight)), "{{instance}}"))).
		WithPanel(graph("Schedule lag by instance", "How far behind its schedule each instance is.", "s", 8, 8,
			query("A", agg("max", "instance", gauge(mScheduleLag)), "{{instance}}"))).
		WithPanel(graph("Rate limited (429)/s by instance", "429 answers per instance; an instance that sees "+
			"more of them than the others shares its source address with too many agents.", "reqps", 8, 8,
			query("A", sum("instance", rate(mRequestErrors, `error="rate_limited"`)), "{{instance}}"))).
		WithRow(row("Runs")).
		WithPanel(listing("Runs", "Which run each instance is running.", 12, 6,
			query("A", agg("max", "instance, run_id", gauge(mRunInfo)), ""))).
		WithPanel(listing("Versions", "Which attestload build each instance is running.", 12, 6,
			query("A", agg("max", "instance, version, revision, goversion", gauge(mBuildInfo)), "")))
}
