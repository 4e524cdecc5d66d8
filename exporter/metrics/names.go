package metrics

// Metric names, the single list the dashboards and alert rules are built from. Every series this package
// registers is named here; TestNamesMatchRegistry fails when the two drift apart.
const (
	NameBuildInfo = "attestload_build_info" // gauge 1{version,revision,goversion}
	NameRunInfo   = "attestload_run_info"   // gauge 1{run_id,instance}

	NameCycles          = "attestload_cycles_total"              // counter {outcome}; outcome success|fail|aborted|other
	NameCycleDuration   = "attestload_cycle_duration_seconds"    // histogram {outcome}
	NamePhaseDuration   = "attestload_phase_duration_seconds"    // histogram {phase,result}; phase session|negotiate|evidence|verdict
	NameRequests        = "attestload_requests_total"            // counter {phase,status_class,result}
	NameRequestDuration = "attestload_request_duration_seconds"  // histogram {phase,result}
	NameRequestErrors   = "attestload_request_errors_total"      // counter {phase,error}
	NameRequestBytes    = "attestload_request_body_bytes_total"  // counter {phase}
	NameResponseBytes   = "attestload_response_body_bytes_total" // counter {phase}
	NameRetries         = "attestload_retries_total"             // counter {phase}
	NameRetryAfter      = "attestload_retry_after_seconds_total" // counter {phase}: waits announced by Retry-After
	NameSessions        = "attestload_sessions_total"            // counter {kind}; kind created|refreshed
	NameVerdicts        = "attestload_verdicts_total"            // counter {evaluation,reason}
	NameCyclesInFlight  = "attestload_cycles_in_flight"          // gauge
	NameCyclesStarted   = "attestload_cycles_started_total"      // counter
	NameCyclesLate      = "attestload_cycles_late_total"         // counter
	NameCycleLateness   = "attestload_cycle_lateness_seconds"    // histogram
	NameCyclesDropped   = "attestload_cycles_dropped_total"      // counter
	NameAgents          = "attestload_agents"                    // gauge {state}; state idle|busy|waiting
	NameTargetRate      = "attestload_target_cycles_per_second"  // gauge
	NameScheduleLag     = "attestload_schedule_lag_seconds"      // gauge
	NameVerifierUp      = "attestload_verifier_up"               // gauge 1|0; 0 until the first answer and during outages
	NameBackingOff      = "attestload_agents_backing_off"        // gauge: agents waiting after a failed cycle
	NameOutages         = "attestload_verifier_outages_total"    // counter: times the verifier became unreachable
)

// Series exported by the other observability packages (tracing, verdict, pgactivity). They are named here so that
// this file is the one list of every attestload_* name; those packages take their names from these constants.
const (
	NameTraces              = "attestload_traces_total"                // counter {decision}; kept|dropped|overflow
	NameTraceSpansDropped   = "attestload_trace_spans_dropped_total"   // counter {reason}; overflow|orphaned|verdict_lost
	NameVerdictRecords      = "attestload_verdict_records_total"       // counter {result}; resolved|timeout|overflow|passthrough
	NameVerdictPending      = "attestload_verdict_pending_records"     // gauge
	NameVerdictLookupErrors = "attestload_verdict_lookup_errors_total" // counter

	NamePGBackends        = "attestload_pg_backends"                       // gauge {state}
	NamePGBackendsWaiting = "attestload_pg_backends_waiting"               // gauge {wait_event_type}
	NamePGWaitEvents      = "attestload_pg_wait_event_backends"            // gauge {wait_event_type,wait_event}, top 10
	NamePGOldestXactAge   = "attestload_pg_oldest_transaction_age_seconds" // gauge
	NamePGOldestQueryAge  = "attestload_pg_oldest_query_age_seconds"       // gauge
	NamePGTopQueries      = "attestload_pg_top_query_backends"             // gauge {rank,query}, top 10
	NamePGCommits         = "attestload_pg_transactions_committed_total"   // counter
	NamePGRollbacks       = "attestload_pg_transactions_rolled_back_total" // counter
	NamePGDeadlocks       = "attestload_pg_deadlocks_total"                // counter
	NamePGTuples          = "attestload_pg_tuples_total"                   // counter {operation}; returned|fetched|inserted|updated|deleted
	NamePGBlocks          = "attestload_pg_blocks_total"                   // counter {source}; read|hit
	NamePGTempBytes       = "attestload_pg_temp_bytes_total"               // counter
	NamePGLocks           = "attestload_pg_locks"                          // gauge {mode,granted}
	NamePGUp              = "attestload_pg_up"                             // gauge
	NamePGScrapeErrors    = "attestload_pg_scrape_errors_total"            // counter
	NamePGSampleDuration  = "attestload_pg_sample_duration_seconds"        // gauge
	NamePGLastSample      = "attestload_pg_last_sample_timestamp_seconds"  // gauge
)

// ownNames are the families New registers.
func ownNames() []string {
	return []string{
		NameBuildInfo, NameRunInfo,
		NameCycles, NameCycleDuration, NamePhaseDuration,
		NameRequests, NameRequestDuration, NameRequestErrors, NameRequestBytes, NameResponseBytes,
		NameRetries, NameRetryAfter, NameSessions, NameVerdicts,
		NameCyclesInFlight, NameCyclesStarted, NameCyclesLate, NameCycleLateness, NameCyclesDropped,
		NameAgents, NameTargetRate, NameScheduleLag, NameVerifierUp, NameBackingOff, NameOutages,
	}
}

// Names returns every attestload metric name: this package's, then those of tracing, verdict and pgactivity, in
// a stable order. Histograms are listed by their family name (without _bucket, _sum, _count).
func Names() []string {
	return append(ownNames(),
		NameTraces, NameTraceSpansDropped,
		NameVerdictRecords, NameVerdictPending, NameVerdictLookupErrors,
		NamePGBackends, NamePGBackendsWaiting, NamePGWaitEvents, NamePGOldestXactAge, NamePGOldestQueryAge,
		NamePGTopQueries, NamePGCommits, NamePGRollbacks, NamePGDeadlocks, NamePGTuples, NamePGBlocks,
		NamePGTempBytes, NamePGLocks, NamePGUp, NamePGScrapeErrors, NamePGSampleDuration, NamePGLastSample,
	)
}
