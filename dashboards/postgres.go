package dashboards

import "github.com/grafana/grafana-foundation-sdk/go/dashboard"

// The PostgreSQL activity metrics (exporter/pgactivity). The tests check each against pgactivity.Names().
const (
	mPgBackends       = "attestload_pg_backends"
	mPgWaiting        = "attestload_pg_backends_waiting"
	mPgWaitEvents     = "attestload_pg_wait_event_backends"
	mPgOldestXactAge  = "attestload_pg_oldest_transaction_age_seconds"
	mPgOldestQueryAge = "attestload_pg_oldest_query_age_seconds"
	mPgTopQueries     = "attestload_pg_top_query_backends"
	mPgCommits        = "attestload_pg_transactions_committed_total"
	mPgRollbacks      = "attestload_pg_transactions_rolled_back_total"
	mPgDeadlocks      = "attestload_pg_deadlocks_total"
	mPgTuples         = "attestload_pg_tuples_total"
	mPgBlocks         = "attestload_pg_blocks_total"
	mPgTempBytes      = "attestload_pg_temp_bytes_total"
	mPgLocks          = "attestload_pg_locks"
	mPgUp             = "attestload_pg_up"
	mPgScrapeErrors   = "attestload_pg_scrape_errors_total"
	mPgSampleDuration = "attestload_pg_sample_duration_seconds"
)

// pgMax aggregates a PostgreSQL series over the chosen instances with max, not sum: in a multi-host run every
// instance that samples the verifier's database sees the same database, and adding their views up would count
// each backend, lock and transaction once per sampler.
func pgMax(by, v string) string { return agg("max", by, v) }

// withPostgres adds the verifier database's activity, as sampled by attestload, to the Database dashboard.
func withPostgres(b *dashboard.DashboardBuilder) *dashboard.DashboardBuilder {
	hits := pgMax("", rate(mPgBlocks, `source="hit"`))
	allBlocks := pgMax("", sum("instance", rate(mPgBlocks)))
	return b.
		WithRow(row("PostgreSQL activity")).
		WithPanel(graph("Backends by state", "Connections to the verifier's database by state. Many "+
			"idle_in_transaction backends hold locks and snapshots while doing nothing.", "short", 8, 8,
			query("A", pgMax("state", gauge(mPgBackends)), "{{state}}"))).
		WithPanel(graph("Waiting backends by wait event type", "Backends waiting, by what they wait for: Lock and "+
			"LWLock point at contention, IO at the disk, Client at the verifier itself.", "short", 8, 8,
			query("A", pgMax("wait_event_type", gauge(mPgWaiting)), "{{wait_event_type}}"))).
		WithPanel(graph("Top wait events", "The most frequent wait events of the database's backends.", "short",
			8, 8,
			query("A", pgMax("wait_event_type, wait_event", gauge(mPgWaitEvents)),
				"{{wait_event_type}} {{wait_event}}"))).
		WithPanel(graph("Transactions/s", "Commits and rollbacks per second in the verifier's database, and "+
			"deadlocks.", "ops", 8, 8,
			query("A", pgMax("", rate(mPgCommits)), "commits"),
			query("B", pgMax("", rate(mPgRollbacks)), "rollbacks"),
			query("C", pgMax("", rate(mPgDeadlocks)), "deadlocks"))).
		WithPanel(graph("Tuples/s by operation", "Rows returned, fetched, inserted, updated and deleted per "+
			"second.", "ops", 8, 8,
			query("A", pgMax("operation", rate(mPgTuples)), "{{operation}}"))).
		WithPanel(graph("Oldest transaction and query", "Age of the oldest open transaction and of the longest "+
			"running query; a growing age blocks vacuum and often holds locks the verifier waits for.", "s", 8, 8,
			query("A", pgMax("", gauge(mPgOldestXactAge)), "oldest transaction"),
			query("B", pgMax("", gauge(mPgOldestQueryAge)), "oldest query"))).
		WithPanel(graph("Locks by mode", "Locks held (granted) and awaited (not granted), by mode.", "short",
			8, 8,
			query("A", pgMax("mode, granted", gauge(mPgLocks)), "{{mode}} granted={{granted}}"))).
		WithPanel(graph("Buffer cache hit ratio and temp bytes", "Share of block reads served from shared "+
			"buffers; temporary files written by sorts and hashes that did not fit in work_mem.", "percentunit",
			8, 8,
			query("A", ratio(hits, allBlocks), "cache hit ratio"),
			query("B", pgMax("", rate(mPgTempBytes)), "temp bytes/s")).
			OverrideByName("temp bytes/s", []dashboard.DynamicConfigValue{{Id: "unit", Value: "Bps"}})).
		WithPanel(graph("Sampler health", "Whether attestload's last sample of the database succeeded, failed "+
			"samples per second, and how long a sample takes.", "short", 8, 8,
			query("A", agg("min", "instance", gauge(mPgUp)), "up {{instance}}"),
			query("B", sum("instance", rate(mPgScrapeErrors)), "errors/s {{instance}}"),
			query("C", agg("max", "instance", gauge(mPgSampleDuration)), "sample seconds {{instance}}"))).
		WithPanel(listing("Most frequent queries", "Backends whose current statement (active) or last statement "+
			"(idle) is each of the most frequent normalised query texts (literals stripped), at the last sample.", 24, 8,
			query("A", pgMax("rank, query", gauge(mPgTopQueries)), "")))
}
