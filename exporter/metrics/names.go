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
)

// Names returns every metric name this package can register, in a stable order. Histograms are listed by their
// family name (without _bucket, _sum, _count).
func Names() []string {
	return []string{
		NameBuildInfo, NameRunInfo,
		NameCycles, NameCycleDuration, NamePhaseDuration,
		NameRequests, NameRequestDuration, NameRequestErrors, NameRequestBytes, NameResponseBytes,
		NameRetries, NameRetryAfter, NameSessions, NameVerdicts,
		NameCyclesInFlight, NameCyclesStarted, NameCyclesLate, NameCycleLateness, NameCyclesDropped,
		NameAgents, NameTargetRate, NameScheduleLag,
	}
}
