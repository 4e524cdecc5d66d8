package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// database puts the verifier's database activity beside the verifier's throughput, to answer "is the database
// the bottleneck": when attestations per second flatten while backends wait on locks or I/O, it is.
func database() *dashboard.DashboardBuilder {
	return withPostgres(newDashboard(UIDDatabase, "attestload / Database",
		"The verifier's PostgreSQL activity, sampled by attestload, beside the verifier's throughput and latency.").
		WithRow(row("Verifier throughput")).
		WithPanel(graph("Accepted attestations/s", "Cycles whose evidence the verifier accepted, per second: each "+
			"one is a few rows written by the verifier.", "cps", 8, 8,
			query("A", sum("", rate(mCycles, `outcome="success"`)), "accepted"),
			query("B", sum("", rate(mCycles, `outcome="fail"`)), "failed"))).
		WithPanel(graph("Negotiate and evidence p99", "The verifier's answer time for the attestation POST and "+
			"PATCH; both read and write the attestations table. Exemplar dots link to traces.", "s", 8, 8,
			withExemplars(query("A", quantile(0.99, mPhaseDuration, "phase", `phase=~"negotiate|evidence"`),
				"{{phase}} p99")))).
		WithPanel(graph("Time to verdict p99", "From the evidence being accepted to its verdict being visible: the "+
			"verifier's verification and its database writes. Exemplar dots link to traces.", "s", 8, 8,
			withExemplars(query("A", quantile(0.99, mPhaseDuration, "", `phase="verdict"`), "verdict p99")))).
		WithPanel(graph("Server errors and conflicts/s", "5xx answers, and the 409/503 answers a verifier gives "+
			"when concurrent requests for one agent collide or verification is still running.", "reqps", 24, 7,
			query("A", sum("phase", rate(mRequests, `status_class="5xx"`)), "5xx {{phase}}"),
			query("B", sum("phase, error", rate(mRequestErrors, `error=~"conflict|unavailable"`)),
				"{{error}} {{phase}}"))))
}
