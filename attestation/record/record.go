// Package record defines the one value every attestation cycle produces: a Record, and the Attempts it is made of.
//
// The JSON layout is the results-file layout (one Record per JSONL line). It is a strict superset of the old
// keylime-perf-tests "v0" layout: every v0 key keeps its name, type and meaning, new keys are only added. Times are
// Unix-epoch seconds as float64, durations are seconds as float64.
//
// It is the one home of the results-file contract: the Record and its Attempts, the closed sets (Outcome,
// ErrorClass, Phase, Action), the run sidecar (RunInfo), the line Encoder and the fast Decoder that readers use.
// exporter/results handles the files themselves (rotation, compression, the disk guard).
//
// This package knows nothing of HTTP clients, Prometheus, OpenTelemetry or configuration; everything else in
// attestload observes Records.
package record

import "time"

// SchemaVersion is written into the "schema" key of every record attestload writes. Old (v0) files have no
// "schema" key; a decoder reports them as schema 0.
const SchemaVersion = 1

// Verdict evaluations.
const (
	EvaluationPass    = "pass"
	EvaluationFail    = "fail"
	EvaluationUnknown = "unknown"
)

// Attempt is one HTTP request of a cycle.
//
// v0 keys: action, method, url, start_time, end_time, duration, ok, conflicts, retry_after. The v0 reader classifies
// an attempt as ok when OK is true, as a retry when RetryAfter > 0, otherwise as a fail; attestload sets RetryAfter
// to the seconds it waited before the next attempt whenever it retried (so a 409 retried after 1 s has
// retry_after 1), keeping that classification meaningful.
type Attempt struct {
	Action     Action   `json:"action"`
	Method     string   `json:"method"`
	URL        string   `json:"url"`
	StartTime  float64  `json:"start_time"`
	EndTime    float64  `json:"end_time"`
	Duration   *float64 `json:"duration"`
	OK         *bool    `json:"ok"`
	Conflicts  *bool    `json:"conflicts"`
	RetryAfter *int     `json:"retry_after"`

	// New in schema 1.
	Status    *int        `json:"status"`         // HTTP status, nil when no response arrived
	Error     *ErrorClass `json:"error"`          // error class, nil when ok
	Code      string      `json:"code,omitempty"` // the verifier's errors[].code, e.g. "premature_attestation"
	RequestID string      `json:"request_id"`     // the X-Request-ID sent
	BytesSent int64       `json:"bytes_sent"`     // request body bytes
	BytesRecv int64       `json:"bytes_received"` // response body bytes read
	// ServerRetryAfter is the Retry-After the verifier sent with this answer, in whole seconds (absent when it sent
	// none), whether or not the client waited it: retry_after is what the client waited.
	ServerRetryAfter *int `json:"server_retry_after,omitempty"`
}

// Verdict is the verifier's judgement of a cycle's evidence, learned after the fact (the agent never sees it).
type Verdict struct {
	Evaluation    string   `json:"evaluation"`     // pass, fail or unknown
	FailureReason *string  `json:"failure_reason"` // e.g. broken_evidence_chain, policy_violation
	Seconds       *float64 `json:"seconds"`        // from the evidence being accepted to the verdict being observed
}

// Record is one attestation cycle: optional PoP session, negotiation (create) and evidence (update).
type Record struct {
	// v0 keys.
	AgentIndex       int       `json:"agent_index"`
	TaskIndex        int       `json:"task_index"`
	WorkerIndex      int       `json:"worker_index"`
	CreateSuccessful bool      `json:"create_successful"`
	UpdateSuccessful bool      `json:"update_successful"`
	CreateDuration   float64   `json:"create_duration"`
	UpdateDuration   float64   `json:"update_duration"`
	CreateAttempts   []Attempt `json:"create_attempts"`
	UpdateAttempts   []Attempt `json:"update_attempts"`

	// Schema 1 keys.
	Schema           int         `json:"schema"`
	RunID            string      `json:"run_id"`
	Instance         string      `json:"instance"`
	AgentID          string      `json:"agent_id"`
	Outcome          Outcome     `json:"outcome"`
	Verdict          Verdict     `json:"verdict"`
	SessionAttempts  []Attempt   `json:"session_attempts"`
	SessionDuration  float64     `json:"session_duration"` // sum of the session attempts' durations
	TraceID          *string     `json:"trace_id"`
	AttestationIndex *int        `json:"attestation_index"`  // server-assigned index from the 201's Location
	StartTime        float64     `json:"start_time"`         // cycle start (Unix s), including any session phase
	EndTime          float64     `json:"end_time"`           // cycle end (Unix s)
	Error            *ErrorClass `json:"error"`              // why the cycle failed or was aborted (class), nil on success
	Profile          string      `json:"profile,omitempty"`  // evidence profile: ima, quote-only, captured
	IMAOffset        *int        `json:"ima_offset"`         // starting_offset the verifier chose, nil without IMA
	IMAEntriesSent   *int        `json:"ima_entries_sent"`   // IMA lines sent in the PATCH
	Rebooted         bool        `json:"rebooted,omitempty"` // the agent simulated a reboot just before this cycle
	// Scheduling: when the cycle was due (fleet and rate models) and how late it started. Lateness is the tool's
	// own queueing and is never part of any phase duration.
	ScheduledTime *float64 `json:"scheduled_time"`
	LateSeconds   *float64 `json:"late_seconds"`
}

// LateTolerance is how late a fleet or rate cycle may start before it counts as late: the one definition the
// engine's counter, the run's sidecar (late_cycles), the metrics (attestload_cycles_late_total) and the report use.
// Timer wake-ups are never exact; counting microseconds of timer slop as lateness would make every cycle of an
// open model late. The exact lateness is still written to every record (late_seconds).
const LateTolerance = time.Millisecond

// IsLate reports whether a cycle that started lateSeconds after its due time counts as late: more than
// LateTolerance. Callers compare the same float64 that is written to the record, so that every reader of the
// record agrees with the counters.
func IsLate(lateSeconds float64) bool { return lateSeconds > LateTolerance.Seconds() }
