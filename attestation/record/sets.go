package record

// The closed sets of the results file. Each is a named string type, so the compiler keeps a value of one set out
// of another, and each has Known for readers of files (or of code) that may carry a value outside the set.

// Outcome is how a cycle ended.
type Outcome string

// Outcomes of a cycle.
const (
	OutcomeSuccess Outcome = "success" // evidence was accepted (202); the verdict is separate
	OutcomeFail    Outcome = "fail"    // the cycle gave up (a phase failed after its bounded retries)
	OutcomeAborted Outcome = "aborted" // interrupted by shutdown before it finished
)

// Outcomes lists every outcome, in a fixed order.
func Outcomes() []Outcome { return []Outcome{OutcomeSuccess, OutcomeFail, OutcomeAborted} }

func (o Outcome) String() string { return string(o) }

// Known reports whether o is one of Outcomes.
func (o Outcome) Known() bool {
	switch o {
	case OutcomeSuccess, OutcomeFail, OutcomeAborted:
		return true
	}
	return false
}

// ErrorClass says why an attempt or a cycle failed. The classes form a small closed set so that they can be
// counted; details go to logs.
type ErrorClass string

// Error classes of Attempt.Error and Record.Error.
const (
	ClassTimeout       ErrorClass = "timeout"        // the per-request deadline passed
	ClassConnRefused   ErrorClass = "conn_refused"   // nothing listening
	ClassConnReset     ErrorClass = "conn_reset"     // connection reset or closed mid-exchange
	ClassTLS           ErrorClass = "tls"            // handshake or certificate failure
	ClassDNS           ErrorClass = "dns"            // name resolution
	ClassNetwork       ErrorClass = "network"        // any other transport error
	ClassCanceled      ErrorClass = "canceled"       // the run was shut down while the request was in flight
	ClassHTTPStatus    ErrorClass = "http_status"    // an unexpected HTTP status (see Status and Code)
	ClassBadResponse   ErrorClass = "bad_response"   // the body could not be understood (invalid JSON, missing fields, too large)
	ClassAuth          ErrorClass = "auth"           // 401: token missing, invalid or expired
	ClassPoPRejected   ErrorClass = "pop_rejected"   // the session PATCH answered evaluation "fail"
	ClassRateLimited   ErrorClass = "rate_limited"   // 429 (Retry-After honoured)
	ClassUnavailable   ErrorClass = "unavailable"    // 503 (Retry-After honoured)
	ClassConflict      ErrorClass = "conflict"       // 409
	ClassEvidenceOrder ErrorClass = "evidence_order" // 422 "same order as the evidence requested": a verifier bug (spec §12)
	ClassInvalidData   ErrorClass = "invalid_data"   // any other 422
	ClassForbidden     ErrorClass = "forbidden"      // 403 (code in Code)
	ClassNotFound      ErrorClass = "not_found"      // 404
	ClassLocal         ErrorClass = "local"          // the client itself failed (e.g. building evidence)
)

// ErrorClasses lists every error class, in a fixed order.
func ErrorClasses() []ErrorClass {
	return []ErrorClass{
		ClassTimeout, ClassConnRefused, ClassConnReset, ClassTLS, ClassDNS, ClassNetwork, ClassCanceled,
		ClassHTTPStatus, ClassBadResponse, ClassAuth, ClassPoPRejected, ClassRateLimited, ClassUnavailable,
		ClassConflict, ClassEvidenceOrder, ClassInvalidData, ClassForbidden, ClassNotFound, ClassLocal,
	}
}

func (c ErrorClass) String() string { return string(c) }

// Known reports whether c is one of ErrorClasses.
func (c ErrorClass) Known() bool {
	switch c {
	case ClassTimeout, ClassConnRefused, ClassConnReset, ClassTLS, ClassDNS, ClassNetwork, ClassCanceled,
		ClassHTTPStatus, ClassBadResponse, ClassAuth, ClassPoPRejected, ClassRateLimited, ClassUnavailable,
		ClassConflict, ClassEvidenceOrder, ClassInvalidData, ClassForbidden, ClassNotFound, ClassLocal:
		return true
	}
	return false
}

// Phase is a part of a cycle: the requests of one purpose, timed together.
type Phase string

// Phases of a cycle. The first three are made of requests (see Action.Phase); the verdict is learned after the
// cycle, from the verifier's database.
const (
	PhaseSession   Phase = "session"   // the PoP session: ActionSessionCreate, ActionSessionPoP
	PhaseNegotiate Phase = "negotiate" // the attestation POST: ActionCreate
	PhaseEvidence  Phase = "evidence"  // the evidence PATCH: ActionUpdate
	PhaseVerdict   Phase = "verdict"   // from evidence accepted to verdict observed
)

// RequestPhases lists the phases made of requests, in the order a cycle runs them.
func RequestPhases() []Phase { return []Phase{PhaseSession, PhaseNegotiate, PhaseEvidence} }

func (p Phase) String() string { return string(p) }

// Action names the kind of an HTTP attempt. "create" and "update" are the v0 names for the attestation POST and
// PATCH, kept in the file for the old readers; Phase maps them to the phase names negotiate and evidence. The
// session actions are new and only ever appear in SessionAttempts.
type Action string

// Actions of an attempt.
const (
	ActionSessionCreate Action = "session_create" // POST /v3/sessions
	ActionSessionPoP    Action = "session_pop"    // PATCH /v3/sessions/{id}
	ActionCreate        Action = "create"         // POST /v3/agents/{id}/attestations (negotiation)
	ActionUpdate        Action = "update"         // PATCH /v3/agents/{id}/attestations/{latest|n} (evidence)
)

func (a Action) String() string { return string(a) }

// Phase is the phase an attempt of action a belongs to; "" for an action outside the set.
func (a Action) Phase() Phase {
	switch a {
	case ActionSessionCreate, ActionSessionPoP:
		return PhaseSession
	case ActionCreate:
		return PhaseNegotiate
	case ActionUpdate:
		return PhaseEvidence
	}
	return ""
}

// Attempts returns the attempts of phase p (nil for the verdict phase): SessionAttempts, CreateAttempts or
// UpdateAttempts.
func (r *Record) Attempts(p Phase) []Attempt {
	switch p {
	case PhaseSession:
		return r.SessionAttempts
	case PhaseNegotiate:
		return r.CreateAttempts
	case PhaseEvidence:
		return r.UpdateAttempts
	}
	return nil
}
