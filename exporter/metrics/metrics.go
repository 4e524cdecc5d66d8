package metrics

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/attestload/attestload/attestation/record"
)

// Buckets are the classic histogram bounds of every duration histogram: from a millisecond to five minutes,
// because the verifier's tails under load reach tens of seconds and verdict timeouts reach minutes.
var Buckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Request result label values, with the old report's classification of an attempt.
const (
	ResultOK    = "ok"
	ResultRetry = "retry"
	ResultFail  = "fail"
)

// Other is the label value every value outside a closed set collapses to.
const Other = "other"

// Reasons is the closed set of verdict failure reasons that get their own label value; "none" is used when the
// verdict carries no reason and Other for anything else.
var Reasons = []string{"broken_evidence_chain", "policy_violation"}

// Options describe the process for build_info and run_info.
type Options struct {
	Version  string // attestload version; "unknown" when empty
	Revision string // VCS revision; "unknown" when empty
	RunID    string // this run's id, a label on run_info only
	Instance string // this instance's name, a label on run_info only
	// MaxSessionAgents bounds the set of agents remembered to tell a created session from a refreshed one. Past
	// the bound every further first session counts as created without being remembered. 0 means 1,000,000.
	MaxSessionAgents int
}

// Metrics holds every attestload series. It implements the engine's Sink (Observe, Close) and Observer
// interfaces; all methods are safe for concurrent use and never block on I/O.
type Metrics struct {
	cycles        *prometheus.CounterVec
	cycleDuration *prometheus.HistogramVec
	phaseDuration *prometheus.HistogramVec
	requests      *prometheus.CounterVec
	reqDuration   *prometheus.HistogramVec
	reqErrors     *prometheus.CounterVec
	reqBytes      *prometheus.CounterVec
	respBytes     *prometheus.CounterVec
	retries       *prometheus.CounterVec
	retryAfter    *prometheus.CounterVec
	sessions      *prometheus.CounterVec
	verdicts      *prometheus.CounterVec

	inFlight    prometheus.Gauge
	started     prometheus.Counter
	late        prometheus.Counter
	lateness    prometheus.Histogram
	dropped     prometheus.Counter
	agents      *prometheus.GaugeVec
	targetRate  prometheus.Gauge
	scheduleLag prometheus.Gauge
	verifierUp  prometheus.Gauge
	backingOff  prometheus.Gauge
	outages     prometheus.Counter
	reasons     map[string]bool

	mu          sync.Mutex
	seenAgents  map[string]struct{}
	maxSessions int
}

func histogramOpts(name, help string) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name:    name,
		Help:    help,
		Buckets: Buckets,
		// Native histograms next to the classic ones: fine-grained quantiles for servers that ingest them, the
		// classic buckets for everyone else. The bucket count is bounded so a multi-day run cannot grow them.
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  160,
		NativeHistogramMinResetDuration: time.Hour,
	}
}

// New registers every attestload series on reg and returns the Metrics that update them. It fails when reg
// already holds a series of the same name.
func New(reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("metrics: nil registerer")
	}
	m := &Metrics{reasons: map[string]bool{}, seenAgents: map[string]struct{}{}, maxSessions: opts.MaxSessionAgents}
	if m.maxSessions <= 0 {
		m.maxSessions = 1_000_000
	}
	for _, r := range Reasons {
		m.reasons[r] = true
	}
	m.newRecordSeries()
	m.newEngineSeries()
	buildInfo, runInfo := infoSeries(opts)
	m.precreate()
	for _, c := range []prometheus.Collector{
		buildInfo, runInfo, m.cycles, m.cycleDuration, m.phaseDuration, m.requests, m.reqDuration, m.reqErrors,
		m.reqBytes, m.respBytes, m.retries, m.retryAfter, m.sessions, m.verdicts, m.inFlight, m.started,
		m.late, m.lateness, m.dropped, m.agents, m.targetRate, m.scheduleLag, m.verifierUp, m.backingOff, m.outages,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// newRecordSeries builds the series Observe updates from records: cycles, phases, requests, sessions, verdicts.
func (m *Metrics) newRecordSeries() {
	m.cycles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameCycles, Help: "Attestation cycles emitted, by final outcome (one per JSONL line).",
	}, []string{"outcome"})
	m.cycleDuration = prometheus.NewHistogramVec(histogramOpts(NameCycleDuration,
		"Duration of whole attestation cycles from start to end, session phase included, by outcome."),
		[]string{"outcome"})
	m.phaseDuration = prometheus.NewHistogramVec(histogramOpts(NamePhaseDuration,
		"Duration of cycle phases (sum of their attempts; verdict: evidence accepted to verdict observed)."),
		[]string{"phase", "result"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameRequests, Help: "HTTP requests made to the verifier, by phase, status class and result.",
	}, []string{"phase", "status_class", "result"})
	m.reqDuration = prometheus.NewHistogramVec(histogramOpts(NameRequestDuration,
		"Duration of single HTTP requests to the verifier, by phase and result."), []string{"phase", "result"})
	m.reqErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameRequestErrors, Help: "HTTP requests that did not succeed, by phase and error class.",
	}, []string{"phase", "error"})
	m.reqBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameRequestBytes, Help: "Request body bytes sent to the verifier, by phase.",
	}, []string{"phase"})
	m.respBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameResponseBytes, Help: "Response body bytes read from the verifier, by phase.",
	}, []string{"phase"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameRetries, Help: "HTTP requests that were retried, by phase.",
	}, []string{"phase"})
	m.retryAfter = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameRetryAfter, Help: "Seconds waited before retrying (the Retry-After value when the verifier sent one), by phase.",
	}, []string{"phase"})
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameSessions, Help: "PoP sessions established: an agent's first in this run (created) or a later one (refreshed).",
	}, []string{"kind"})
	m.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: NameVerdicts, Help: "Verifier verdicts of emitted cycles with accepted evidence, by evaluation and failure reason.",
	}, []string{"evaluation", "reason"})
}

// newEngineSeries builds the series the engine sets as it runs: in flight, started, late, dropped, agents, the
// target rate and the verifier's reachability.
func (m *Metrics) newEngineSeries() {
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: NameCyclesInFlight, Help: "Attestation cycles currently running.",
	})
	m.started = prometheus.NewCounter(prometheus.CounterOpts{
		Name: NameCyclesStarted, Help: "Attestation cycles started by the engine.",
	})
	m.late = prometheus.NewCounter(prometheus.CounterOpts{
		Name: NameCyclesLate, Help: "Attestation cycles that started more than 1 ms (the late tolerance) after their due time.",
	})
	m.lateness = prometheus.NewHistogram(histogramOpts(NameCycleLateness,
		"How late the late cycles (more than 1 ms after their due time) started (the tool's own queueing)."))
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: NameCyclesDropped, Help: "Scheduled cycles dropped because no agent or worker was free in time.",
	})
	m.agents = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: NameAgents, Help: "Impersonated agents by state.",
	}, []string{"state"})
	m.targetRate = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: NameTargetRate, Help: "Cycles per second the scheduler aims for (0 in the closed model).",
	})
	m.scheduleLag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: NameScheduleLag, Help: "How far the scheduler is behind its plan.",
	})
	m.verifierUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: NameVerifierUp, Help: "1 while the verifier answers requests; 0 before its first answer and while it cannot be reached.",
	})
	m.backingOff = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: NameBackingOff, Help: "Agents whose last cycle failed, waiting (backing off) before their next one.",
	})
	m.outages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: NameOutages, Help: "Times the verifier became unreachable (every cycle failing without an answer).",
	})
}

// infoSeries builds build_info and run_info, each one series set to 1.
func infoSeries(opts Options) (buildInfo, runInfo *prometheus.GaugeVec) {
	version, revision := opts.Version, opts.Revision
	if version == "" {
		version = "unknown"
	}
	if revision == "" {
		revision = "unknown"
	}
	buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: NameBuildInfo, Help: "Always 1; labels carry the attestload build.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	runInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: NameRunInfo, Help: "Always 1; labels carry this run's id and instance (the only series with them).",
	}, []string{"run_id", "instance"})
	runInfo.WithLabelValues(opts.RunID, opts.Instance).Set(1)
	return buildInfo, runInfo
}

// precreate makes the series that dashboards and alerts rely on exist (at 0) before anything is counted.
func (m *Metrics) precreate() {
	// Pre-create the series dashboards and alerts rely on so that rate() works from the first scrape and a
	// missing outcome reads as 0 rather than as absent.
	for _, o := range record.Outcomes() {
		m.cycles.WithLabelValues(string(o))
	}
	for _, s := range []string{"idle", "busy", "waiting"} {
		m.agents.WithLabelValues(s)
	}
	// The error and retry counters too, for every request phase and error class: in a clean run they would
	// otherwise never appear, and their dashboard panels read "No data" instead of 0.
	for _, phase := range record.RequestPhases() {
		for _, class := range record.ErrorClasses() {
			m.reqErrors.WithLabelValues(string(phase), string(class))
		}
		m.reqErrors.WithLabelValues(string(phase), Other)
		m.retries.WithLabelValues(string(phase))
		m.retryAfter.WithLabelValues(string(phase))
	}
}

// Observe counts one emitted record by its final outcome. Call it exactly once per record, when the record is
// written (after the verdict stage), so the counters equal the JSONL.
func (m *Metrics) Observe(r *record.Record) {
	if r == nil {
		return
	}
	var exemplar prometheus.Labels
	if r.TraceID != nil && validTraceID(*r.TraceID) {
		exemplar = prometheus.Labels{"trace_id": *r.TraceID}
	}
	// A record read back from a file, or built by a test, may carry a value outside the set.
	outcome := string(r.Outcome)
	if !r.Outcome.Known() {
		outcome = Other
	}
	addCounter(m.cycles.WithLabelValues(outcome), 1, exemplar)
	if r.EndTime > 0 && r.StartTime > 0 && r.EndTime >= r.StartTime {
		observe(m.cycleDuration.WithLabelValues(outcome), r.EndTime-r.StartTime, exemplar)
	}

	m.observePhase(record.PhaseSession, r.SessionAttempts, r.SessionDuration, lastOK(r.SessionAttempts), exemplar)
	m.observePhase(record.PhaseNegotiate, r.CreateAttempts, r.CreateDuration, r.CreateSuccessful, exemplar)
	m.observePhase(record.PhaseEvidence, r.UpdateAttempts, r.UpdateDuration, r.UpdateSuccessful, exemplar)

	for i := range r.SessionAttempts {
		a := &r.SessionAttempts[i]
		if a.Action == record.ActionSessionPoP && a.OK != nil && *a.OK {
			m.countSession(r)
		}
	}

	// A verdict exists only for evidence the verifier accepted; cycles that never got there have nothing to
	// judge and would only inflate "unknown".
	if r.UpdateSuccessful {
		ev := r.Verdict.Evaluation
		switch ev {
		case record.EvaluationPass, record.EvaluationFail:
		case "":
			ev = record.EvaluationUnknown
		case record.EvaluationUnknown:
		default:
			ev = Other
		}
		reason := "none"
		if r.Verdict.FailureReason != nil && *r.Verdict.FailureReason != "" {
			reason = *r.Verdict.FailureReason
			if !m.reasons[reason] {
				reason = Other
			}
		}
		addCounter(m.verdicts.WithLabelValues(ev, reason), 1, exemplar)
		if r.Verdict.Seconds != nil && *r.Verdict.Seconds >= 0 {
			res := ResultOK
			if ev != record.EvaluationPass && ev != record.EvaluationFail {
				res = ResultFail
			}
			observe(m.phaseDuration.WithLabelValues(string(record.PhaseVerdict), res), *r.Verdict.Seconds, exemplar)
		}
	}
}

func (m *Metrics) observePhase(p record.Phase, attempts []record.Attempt, dur float64, ok bool, ex prometheus.Labels) {
	if len(attempts) == 0 {
		return
	}
	phase := string(p)
	res := ResultFail
	if ok {
		res = ResultOK
	}
	observe(m.phaseDuration.WithLabelValues(phase, res), dur, ex)
	for i := range attempts {
		m.observeAttempt(phase, &attempts[i])
	}
}

func (m *Metrics) observeAttempt(phase string, a *record.Attempt) {
	res := AttemptResult(a)
	m.requests.WithLabelValues(phase, StatusClass(a.Status), res).Inc()
	if a.Duration != nil && *a.Duration >= 0 {
		m.reqDuration.WithLabelValues(phase, res).Observe(*a.Duration)
	}
	if res != ResultOK {
		class := Other
		if a.Error != nil && a.Error.Known() {
			class = string(*a.Error)
		}
		m.reqErrors.WithLabelValues(phase, class).Inc()
	}
	if res == ResultRetry {
		m.retries.WithLabelValues(phase).Inc()
		m.retryAfter.WithLabelValues(phase).Add(float64(*a.RetryAfter))
	}
	if a.BytesSent > 0 {
		m.reqBytes.WithLabelValues(phase).Add(float64(a.BytesSent))
	}
	if a.BytesRecv > 0 {
		m.respBytes.WithLabelValues(phase).Add(float64(a.BytesRecv))
	}
}

func (m *Metrics) countSession(r *record.Record) {
	key := r.AgentID
	if key == "" {
		key = "#" + strconv.Itoa(r.AgentIndex)
	}
	m.mu.Lock()
	_, seen := m.seenAgents[key]
	if !seen && len(m.seenAgents) < m.maxSessions {
		m.seenAgents[key] = struct{}{}
	}
	m.mu.Unlock()
	if seen {
		m.sessions.WithLabelValues("refreshed").Inc()
	} else {
		m.sessions.WithLabelValues("created").Inc()
	}
}

// Close releases nothing; it exists so Metrics is an engine Sink. Series stay readable after Close so the final
// scrape sees the final counts.
func (m *Metrics) Close() error { return nil }

// CycleStarted records that the engine started a cycle.
func (m *Metrics) CycleStarted() { m.started.Inc(); m.inFlight.Inc() }

// CycleFinished records that a started cycle finished (whatever its outcome).
func (m *Metrics) CycleFinished() { m.inFlight.Dec() }

// CycleDropped records a scheduled cycle that was never started.
func (m *Metrics) CycleDropped() { m.dropped.Inc() }

// CycleLate records a cycle that started late by the given amount.
func (m *Metrics) CycleLate(late time.Duration) {
	if late < 0 {
		return
	}
	m.late.Inc()
	m.lateness.Observe(late.Seconds())
}

// SetTargetRate sets the scheduler's target in cycles per second.
func (m *Metrics) SetTargetRate(perSecond float64) { m.targetRate.Set(perSecond) }

// SetScheduleLag sets how far the scheduler is behind its plan.
func (m *Metrics) SetScheduleLag(d time.Duration) { m.scheduleLag.Set(d.Seconds()) }

// SetBackingOff sets the number of agents backing off after a failed cycle.
func (m *Metrics) SetBackingOff(agents int) { m.backingOff.Set(float64(agents)) }

// SetVerifierUp sets whether the verifier answers.
func (m *Metrics) SetVerifierUp(up bool) {
	if up {
		m.verifierUp.Set(1)
	} else {
		m.verifierUp.Set(0)
	}
}

// OutageStarted counts the verifier becoming unreachable.
func (m *Metrics) OutageStarted() { m.outages.Inc() }

// SetAgents sets the number of agents in each state.
func (m *Metrics) SetAgents(idle, busy, waiting int) {
	m.agents.WithLabelValues("idle").Set(float64(idle))
	m.agents.WithLabelValues("busy").Set(float64(busy))
	m.agents.WithLabelValues("waiting").Set(float64(waiting))
}

// AttemptResult classifies an attempt the way the old report does: ok when OK is true, retry when it was
// followed by a wait (RetryAfter > 0), otherwise fail.
func AttemptResult(a *record.Attempt) string {
	switch {
	case a.OK != nil && *a.OK:
		return ResultOK
	case a.RetryAfter != nil && *a.RetryAfter > 0:
		return ResultRetry
	default:
		return ResultFail
	}
}

// StatusClass maps an HTTP status to "1xx".."5xx", or "none" when no response arrived or the code is out of
// range.
func StatusClass(status *int) string {
	if status == nil || *status < 100 || *status > 599 {
		return "none"
	}
	return strconv.Itoa(*status/100) + "xx"
}

func lastOK(as []record.Attempt) bool {
	if len(as) == 0 {
		return false
	}
	a := as[len(as)-1]
	return a.OK != nil && *a.OK
}

func observe(o prometheus.Observer, v float64, ex prometheus.Labels) {
	if ex != nil {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, ex)
			return
		}
	}
	o.Observe(v)
}

func addCounter(c prometheus.Counter, v float64, ex prometheus.Labels) {
	if ex != nil {
		if ea, ok := c.(prometheus.ExemplarAdder); ok {
			ea.AddWithExemplar(v, ex)
			return
		}
	}
	c.Add(v)
}

// validTraceID accepts the W3C form (32 lowercase hex digits, not all zero). Anything else is not attached as an
// exemplar: client_golang panics on over-long exemplar labels, and a malformed id could not be looked up anyway.
func validTraceID(s string) bool {
	if len(s) != 32 {
		return false
	}
	nonzero := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return false
		}
		if c != '0' {
			nonzero = true
		}
	}
	return nonzero
}
